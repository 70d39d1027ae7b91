#!/bin/sh
# The default repository serves the shipped depth-aware pair: `cityserve serve` with no flags builds it from
# models/demo/ (or $CITYSERVE_DEMO_MODEL), then one label map of a held-out scene goes through
# label2depth2photo over gRPC and the answer is compared with the local torch render of the same pair.
# Run from the repository root:  sh models/demo/check_depth_serving.sh [OUT_DIR]
set -eu
PY=${PY:-.venv/bin/python}
OUT=${1:-/tmp/depth-serving-check}
DEMO=${CITYSERVE_DEMO_MODEL:-models/demo}
PORT=${PORT:-18001}
rm -rf "$OUT"; mkdir -p "$OUT"
$PY -m cityserve synth --seeds 10000 --size 128x256 --layout flat --out "$OUT/scene" > /dev/null
LABELS="$OUT/scene/synthetic_010000_000019_gtFine_color.png"
$PY -m cityserve serve --grpc-port $PORT --http-port $((PORT + 1)) --metrics-port $((PORT + 2)) > "$OUT/serve.log" 2>&1 &
SERVER=$!
trap 'kill -INT $SERVER 2>/dev/null || true; wait $SERVER || true' EXIT
i=0; until grep -q "gRPC" "$OUT/serve.log" && $PY -c "
import sys, tritonclient.grpc as g; sys.exit(0 if g.InferenceServerClient('127.0.0.1:$PORT').is_model_ready('label2depth2photo') else 1)
" 2>/dev/null; do
    i=$((i + 1)); [ $i -lt 600 ] || { cat "$OUT/serve.log"; exit 1; }; sleep 1
done
$PY -c "
import tritonclient.grpc as g
c = g.InferenceServerClient('127.0.0.1:$PORT')
names = ('label2depth', 'label2depth2photo', 'depth2photo', 'depth', 'render_from_depth', 'render', 'label2photo')
print('ready in the default repository:', ', '.join(f'{n} {c.is_model_ready(n)}' for n in names))
"
$PY -m cityserve render "$LABELS" --server 127.0.0.1:$PORT --depth-aware --out "$OUT/served.png" --depth-out "$OUT/served_depth.png"
P=$(ls "$DEMO"/*.card.json | xargs grep -l '"photo-from-depth"' | head -1)
S1=$(ls "$DEMO"/*.card.json | xargs grep -l '"stage": "depth"' | head -1)
$PY -m cityserve render "$LABELS" --model "$P" --depth-aware "$S1" --out "$OUT/local.png" --depth-out "$OUT/local_depth.png"
$PY - "$OUT" <<'PY'
import sys, cv2, numpy as np
o = sys.argv[1]
a, b = (cv2.imread(f"{o}/{n}.png").astype(int) for n in ("served", "local"))
da, db = (cv2.imread(f"{o}/{n}_depth.png", cv2.IMREAD_UNCHANGED).astype(int) for n in ("served", "local"))
print(f"served vs local torch: photo {a.shape[0]}x{a.shape[1]} (HxW), max |diff| {np.abs(a - b).max()} levels, "
      f"mean {np.abs(a - b).mean():.3f}; depth PNG max |diff| {np.abs(da - db).max()} mm")
PY

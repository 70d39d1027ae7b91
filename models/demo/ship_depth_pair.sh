#!/bin/sh
# Ship the depth-aware demo pair (models/demo/) and the single-stage SPADE of the same budget
# (models/baselines/spade128-demo/), evaluate all three on held-out seeds 10000-10049 at 128x256 with the
# demo segmenter, and write the figures into the cards. Rerun from the repository root:
#   RUNS=runs/demo sh models/demo/ship_depth_pair.sh
# RUNS holds the three runs of models/demo/README.md ("How the depth-aware pair was trained") and their logs.
set -eu
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # the figures do not depend on it; a shared CPU runs faster so
RUNS=${RUNS:-runs/demo}
PY=${PY:-.venv/bin/python}
SEG=models/demo/segmenter-demo.card.json
SEEDS=10000-10049
CHECK=10000-10004
D=models/demo
B=models/baselines/spade128-demo
mkdir -p "$D/logs" "$D/eval" "$B/eval"
for run in depth-stage1 depth-stage2 depth-single-photo; do cp "$RUNS/$run.log" "$D/logs/$run.log"; done

$PY $D/finalize.py ship "$RUNS/depth-stage1/depth-demo.card.json" $D --half --train-log "$RUNS/depth-stage1.log"
$PY $D/finalize.py ship "$RUNS/depth-stage2/depth2photo-demo.card.json" $D --half --train-log "$RUNS/depth-stage2.log"
$PY $D/finalize.py ship "$RUNS/depth-single-photo/spade128-demo.card.json" $B --half \
    --train-log "$RUNS/depth-single-photo.log"

# each evaluation on the 50 held-out seeds (the README table) and, for the test suite's cheap recomputation
# (tests/test_demo_models.py), the same command on the first 5 of them (metrics under *_check/)
run_eval() {  # CARD PREFIX COMMAND
    $PY -m $3 --no-progress  # "python -m cityserve eval ..."
    $PY $D/finalize.py metrics "$1" "$(echo "$3" | sed 's/.* --out //')" --command "$3" --prefix "$2"
}
evals() {  # SEEDS PREFIX SUFFIX
    run_eval $D/depth-demo.card.json "$2" \
        "cityserve eval depth $D/depth-demo.card.json --seeds $1 --out $D/eval/depth$3.json"
    run_eval $D/depth2photo-demo.card.json "$2" \
        "cityserve eval generator $D/depth2photo-demo.card.json --segmenter $SEG --depth-model $D/depth-demo.card.json --seeds $1 --out $D/eval/depth2photo$3.json"
    run_eval $D/depth2photo-demo.card.json "$(echo "$2" | sed 's/heldout/heldout_true_depth/')" \
        "cityserve eval generator $D/depth2photo-demo.card.json --segmenter $SEG --true-depth --seeds $1 --out $D/eval/depth2photo_true_depth$3.json"
    run_eval $B/spade128-demo.card.json "$2" \
        "cityserve eval generator $B/spade128-demo.card.json --segmenter $SEG --seeds $1 --out $B/eval/spade128$3.json"
    run_eval $B/spade128-demo.card.json "$(echo "$2" | sed 's/heldout/heldout_zero_latent/')" \
        "cityserve eval generator $B/spade128-demo.card.json --segmenter $SEG --zero-latent --seeds $1 --out $B/eval/spade128_zero_latent$3.json"
}
evals $SEEDS heldout/ ""
evals $CHECK heldout_check/ _check
$PY docs/make_depth_figure.py  # docs/img/depth_heldout.png

#!/usr/bin/env bash
# The GPU benchmark in one prepared command, for a GPU machine lent for a few minutes: it needs only
# torch with CUDA and numpy there (no install: the package is read from this working tree; TensorRT and
# onnxruntime-gpu are used where present). Stages and options: benchmarks/device_check.py --help.
#
#   benchmarks/device_check.sh              # on the GPU machine: results under benchmarks/results/<gpu>/
#   benchmarks/device_check.sh --dry-run    # on any CPU, tiny models: checks the script in seconds
#   OUT_RESULTS=$OUT benchmarks/device_check.sh   # results elsewhere (e.g. a folder that is copied back)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
py="${PYTHON:-}"
if [ -z "$py" ]; then
  if [ -x "$repo/.venv/bin/python" ]; then py="$repo/.venv/bin/python"; else py="python3"; fi
fi
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$py" "$here/device_check.py" "$@"

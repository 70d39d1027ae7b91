#!/bin/sh
# Build the TensorRT engines of this repository on the GPU that will serve it (engines are specific
# to the GPU and TensorRT version). Run it inside the NGC Triton container, with cityserve installed
# there (pip install 'cityserve[tensorrt]'). It uses cityserve's TensorRT builder, which keeps
# normalization layers and the layers a precision report flagged in FP32 (a bare trtexec --fp16 would
# not). CITYSERVE picks the command (default: cityserve); TIMING_CACHE names a TensorRT timing cache
# file to reuse across builds.
set -e
REPO="$(cd "$(dirname "$0")" && pwd)"
CITYSERVE="${CITYSERVE:-cityserve}"
if ! command -v "${CITYSERVE%% *}" >/dev/null 2>&1; then
    echo "build_engines.sh: $CITYSERVE not found; install cityserve in this container (pip install 'cityserve[tensorrt]')" >&2
    exit 3
fi
echo "building render ..."
$CITYSERVE export tensorrt \
    "$REPO"/render/1/model.onnx \
    --out "$REPO"/render/1/model.plan \
    --precision fp16 \
    --min-batch 1 --opt-batch 8 --max-batch 8 \
    ${TIMING_CACHE:+--timing-cache "$TIMING_CACHE"}
echo "building segment ..."
$CITYSERVE export tensorrt \
    "$REPO"/segment/1/model.onnx \
    --out "$REPO"/segment/1/model.plan \
    --precision fp16 \
    --min-batch 1 --opt-batch 8 --max-batch 8 \
    ${TIMING_CACHE:+--timing-cache "$TIMING_CACHE"}

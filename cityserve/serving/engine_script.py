"""``build_engines.sh``: the gpu-trt repository's TensorRT engines, built on the GPU that will serve them.

Engines are specific to a GPU and a TensorRT version, so the repository carries each graph
(``<model>/1/model.onnx``) and this script builds ``model.plan`` beside it with the project's own
builder, ``cityserve export tensorrt``: normalization layers and the layers a precision report
flagged (``model.precision.json``, copied in when the export wrote one) stay FP32, which a bare
``trtexec --fp16`` would drop. Every value in the script is a model name (``check_model_name``'s
charset) or a number, and paths are quoted.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
from pathlib import Path

ENGINE_SCRIPT = "build_engines.sh"
PRECISION_REPORT = "model.precision.json"

_PREAMBLE = """\
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
"""


@dataclasses.dataclass(frozen=True)
class EngineBuild:
    """One ``cityserve export tensorrt`` run: model ``name``'s graph -> its plan, with a batch profile."""

    name: str
    min_batch: int
    opt_batch: int
    max_batch: int
    precision: str = "fp16"
    precision_report: bool = False  # a model.precision.json sits beside the graph

    def command(self) -> str:
        version = f'"$REPO"/{shlex.quote(self.name)}/1'
        args = [
            "$CITYSERVE export tensorrt",
            f"{version}/model.onnx",
            f"--out {version}/model.plan",
            f"--precision {self.precision}",
            f"--min-batch {int(self.min_batch)} --opt-batch {int(self.opt_batch)} --max-batch {int(self.max_batch)}",
        ]
        if self.precision_report:
            args.append(f"--fp32-layers-from {version}/{PRECISION_REPORT}")
        args.append('${TIMING_CACHE:+--timing-cache "$TIMING_CACHE"}')
        return f'echo "building {self.name} ..."\n' + " \\\n    ".join(args)


def script_text(builds: list[EngineBuild]) -> str:
    return _PREAMBLE + "".join(b.command() + "\n" for b in builds)


def write_engine_script(root: Path, builds: list[EngineBuild]) -> Path:
    path = Path(root) / ENGINE_SCRIPT
    path.write_text(script_text(builds))
    os.chmod(path, 0o755)
    return path

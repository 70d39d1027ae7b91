"""Optional dependencies, by job: which ``pip install 'cityserve[EXTRA]'`` brings which module.

The core install (label sets, models, checkpoint import, render with torch or onnxruntime, ONNX export)
needs none of them. Code that needs one imports it through ``require``, so a missing extra is a
one-line ``error:`` naming the install command that fixes it (exit code 3), never a traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Optional

from .errors import UnavailableError

# extra -> (what it is for, the top-level modules it brings)
EXTRAS: dict[str, tuple[str, tuple[str, ...]]] = {
    "serve": ("Triton serving and its gRPC client", ("tritonclient", "pytriton", "psutil")),
    "train": ("training logs (TensorBoard)", ("tensorboard",)),
    "bench": ("benchmarks (plots, process memory)", ("matplotlib", "psutil")),
    "canvas": ("the designer's canvas web app", ("starlette", "uvicorn")),
    "tensorrt": ("TensorRT 10 engines on an NVIDIA GPU", ("tensorrt", "cuda", "pycuda")),
    "openvino": ("the OpenVINO CPU engine (BF16 where the CPU has it)", ("openvino",)),
}


class MissingExtraError(UnavailableError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def extra_for(module: str) -> Optional[str]:
    """The extra that brings ``module`` (a dotted name), or None for a core or unknown module."""
    top = module.split(".")[0]
    return next((extra for extra, (_, modules) in EXTRAS.items() if top in modules), None)


def missing_extra_message(extra: str, module: str, what: str = "") -> str:
    purpose = EXTRAS[extra][0]
    needs = f"{what} needs" if what else "this needs"
    return f"{needs} {module}, which is not installed ({purpose}): pip install 'cityserve[{extra}]'"


def require(extra: str, module: str, what: str = "") -> ModuleType:
    """``import module`` (e.g. ``require("serve", "tritonclient.grpc")``), or ``MissingExtraError``
    naming ``pip install 'cityserve[extra]'``. ``what`` says who needs it (``"--server"``)."""
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; known: {', '.join(EXTRAS)}")
    try:
        return importlib.import_module(module)
    except ImportError as e:
        missing = getattr(e, "name", None) or module
        raise MissingExtraError(missing_extra_message(extra, missing, what)) from None

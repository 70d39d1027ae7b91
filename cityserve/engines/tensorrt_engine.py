"""The TensorRT engine: a serialized ``render.plan`` run with TensorRT 10's named-tensor API.

``set_input_shape`` per input (dynamic batch within the plan's profile), ``set_tensor_address`` on
device buffers, ``execute_async_v3`` on a CUDA stream. TensorRT and CUDA come from ``cityserve.gpu``
when an engine is made, never at module import, so this module imports on a machine without them;
making an engine there raises ``UnavailableError`` saying what is missing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..cards import ModelCard
from ..errors import ConfigError
from ..gpu import cuda_backend, import_tensorrt


def plan_path_of(card: ModelCard, plan_path: Optional[Union[str, os.PathLike]] = None) -> Path:
    if plan_path:
        p = Path(plan_path)
    else:
        info = card.extra.get("tensorrt")
        if not info or card.path is None:
            raise ConfigError(
                f"model {card.name!r} has no TensorRT plan: build one with `cityserve export onnx` "
                f"then `cityserve export tensorrt render.onnx --out render.plan`, and pass the "
                f"plan's card (or plan_path=)"
            )
        p = card.directory / info["file"]
    if not p.is_file():
        raise ConfigError(f"TensorRT plan {p} does not exist")
    return p


class TensorRTEngine:
    """Runs a TensorRT 10 plan of the render graph. Options: ``plan_path`` (default: the plan the card
    names in ``extra["tensorrt"]``), ``device`` (CUDA device index)."""

    def __init__(self, card: ModelCard, plan_path: Optional[Union[str, os.PathLike]] = None, device: int = 0):
        trt = import_tensorrt()
        self.card = card
        self.plan_path = plan_path_of(card, plan_path)
        self.cuda = cuda_backend(device)
        self.trt = trt
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(self.plan_path.read_bytes())
        if self.engine is None:
            raise ConfigError(
                f"TensorRT could not deserialize {self.plan_path}: built with another TensorRT "
                f"version or for another GPU? (this is TensorRT {trt.__version__})"
            )
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if n not in self.input_names]
        self.dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self.batch_range = {
            n: tuple(int(s[0]) for s in self.engine.get_tensor_profile_shape(n, 0)) for n in self.input_names
        }
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (ptr, nbytes)

    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                self.cuda.free(ptr)
            ptr, size = self.cuda.malloc(nbytes), nbytes
            self._buffers[name] = (ptr, size)
        return ptr

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise ConfigError(
                f"engine inputs missing: {', '.join(missing)} (the plan takes {', '.join(self.input_names)})"
            )
        for n in self.input_names:
            a = np.ascontiguousarray(feeds[n], dtype=self.dtypes[n])
            lo, _, hi = self.batch_range[n]
            if not lo <= a.shape[0] <= hi:
                raise ConfigError(
                    f"batch {a.shape[0]} is outside the plan's profile ({lo}..{hi}); rebuild it with "
                    f"`cityserve export tensorrt --min-batch/--max-batch`"
                )
            if not self.context.set_input_shape(n, tuple(a.shape)):
                raise ConfigError(f"TensorRT rejected input {n!r} of shape {tuple(a.shape)}")
            ptr = self._buffer(n, a.nbytes)
            self.cuda.h2d(ptr, a)
            self.context.set_tensor_address(n, ptr)
            feeds = {**feeds, n: a}  # keep the host array alive until synchronize
        outs = {}
        for n in self.output_names:
            shape = tuple(self.context.get_tensor_shape(n))
            outs[n] = np.empty(shape, dtype=self.dtypes[n])
            self.context.set_tensor_address(n, self._buffer(n, outs[n].nbytes))
        if not self.context.execute_async_v3(self.cuda.stream_handle):
            raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log above)")
        for n, arr in outs.items():
            self.cuda.d2h(arr, self._buffers[n][0])
        self.cuda.synchronize()
        return outs[self.output_names[0]]

    def __del__(self):  # pragma: no cover - needs a GPU
        for ptr, _ in getattr(self, "_buffers", {}).values():
            try:
                self.cuda.free(ptr)
            except Exception:
                pass

"""The TensorRT engine: a serialized ``render.plan`` run with TensorRT 10's named-tensor API.

``set_input_shape`` per input (dynamic batch within the plan's profile), ``set_tensor_address`` on
device buffers, ``execute_async_v3`` on a CUDA stream. CUDA comes from cuda-python
(``cuda.bindings.runtime``, or the older ``cuda.cudart``) or pycuda, whichever is installed. TensorRT
and CUDA are imported when an engine is made, never at module import, so this module imports on a
machine without them; making an engine there raises ``UnavailableError`` saying what is missing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ..cards import ModelCard
from ..errors import ConfigError, UnavailableError

INSTALL_HINT = (
    "install TensorRT 10 and cuda-python on a machine with an NVIDIA GPU: "
    "pip install 'cityserve[tensorrt]' (tensorrt>=10,<11, cuda-python>=12)"
)


def import_tensorrt():
    """``import tensorrt`` (10.x), or UnavailableError with what to install."""
    try:
        import tensorrt as trt  # type: ignore
    except ImportError as e:
        raise UnavailableError(f"TensorRT is not installed ({e}); {INSTALL_HINT}") from None
    major = int(str(getattr(trt, "__version__", "0")).split(".")[0] or 0)
    if major != 10:
        raise UnavailableError(f"TensorRT {trt.__version__} is installed; cityserve's engines need TensorRT 10.x")
    return trt


def tensorrt_available() -> bool:
    try:
        import_tensorrt()
        cuda_backend()
        return True
    except UnavailableError:
        return False


# ---- CUDA: cuda-python or pycuda ------------------------------------------------------------------


class _CudaPython:
    """cuda-python's runtime API (``cuda.bindings.runtime`` >= 12.6, ``cuda.cudart`` before)."""

    name = "cuda-python"

    def __init__(self, device: int = 0):
        try:
            from cuda.bindings import runtime as cudart  # type: ignore
        except ImportError:
            from cuda import cudart  # type: ignore
        self.rt = cudart
        err, count = cudart.cudaGetDeviceCount()
        if int(err) != 0 or count < 1:
            raise UnavailableError(f"no CUDA GPU visible (cudaGetDeviceCount: {err}, {count} devices)")
        self._check(cudart.cudaSetDevice(device), "cudaSetDevice")
        self.device = device
        self.stream = self._check(cudart.cudaStreamCreate(), "cudaStreamCreate")

    def _check(self, result, what: str):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise RuntimeError(f"{what} failed: {err}")
        return rest[0] if len(rest) == 1 else (rest or None)

    @property
    def stream_handle(self) -> int:
        return int(self.stream)

    def malloc(self, nbytes: int) -> int:
        return int(self._check(self.rt.cudaMalloc(max(1, nbytes)), "cudaMalloc"))

    def free(self, ptr: int) -> None:
        self.rt.cudaFree(ptr)

    def h2d(self, ptr: int, arr: np.ndarray) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self.rt.cudaMemcpyAsync(ptr, arr.ctypes.data, arr.nbytes, kind, self.stream), "cudaMemcpyAsync")

    def d2h(self, arr: np.ndarray, ptr: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self.rt.cudaMemcpyAsync(arr.ctypes.data, ptr, arr.nbytes, kind, self.stream), "cudaMemcpyAsync")

    def synchronize(self) -> None:
        self._check(self.rt.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    def device_info(self) -> dict[str, Any]:
        prop = self._check(self.rt.cudaGetDeviceProperties(self.device), "cudaGetDeviceProperties")
        name = prop.name.decode(errors="replace").rstrip("\x00") if isinstance(prop.name, bytes) else str(prop.name)
        return {"gpu": name, "compute_capability": f"{prop.major}.{prop.minor}"}


class _PyCuda:
    name = "pycuda"

    def __init__(self, device: int = 0):
        import pycuda.driver as drv  # type: ignore

        drv.init()
        if drv.Device.count() < 1:
            raise UnavailableError("no CUDA GPU visible (pycuda: 0 devices)")
        self.drv = drv
        self.dev = drv.Device(device)
        self.ctx = self.dev.retain_primary_context()
        self.ctx.push()
        self.stream = drv.Stream()
        self._allocs: dict[int, Any] = {}

    @property
    def stream_handle(self) -> int:
        return int(self.stream.handle)

    def malloc(self, nbytes: int) -> int:
        a = self.drv.mem_alloc(max(1, nbytes))
        self._allocs[int(a)] = a
        return int(a)

    def free(self, ptr: int) -> None:
        a = self._allocs.pop(ptr, None)
        if a is not None:
            a.free()

    def h2d(self, ptr: int, arr: np.ndarray) -> None:
        self.drv.memcpy_htod_async(ptr, arr, self.stream)

    def d2h(self, arr: np.ndarray, ptr: int) -> None:
        self.drv.memcpy_dtoh_async(arr, ptr, self.stream)

    def synchronize(self) -> None:
        self.stream.synchronize()

    def device_info(self) -> dict[str, Any]:
        major, minor = self.dev.compute_capability()
        return {"gpu": self.dev.name(), "compute_capability": f"{major}.{minor}"}


def cuda_backend(device: int = 0):
    """A CUDA stream + memory helper from cuda-python or pycuda; UnavailableError if neither works."""
    errors = []
    for cls in (_CudaPython, _PyCuda):
        try:
            return cls(device)
        except UnavailableError as e:
            errors.append(f"{cls.name}: {e}")
        except ImportError as e:
            errors.append(f"{cls.name}: not installed ({e.name or e})")
        except Exception as e:  # driver missing, no device, …
            errors.append(f"{cls.name}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    raise UnavailableError(f"no usable CUDA runtime for TensorRT ({'; '.join(errors)}); {INSTALL_HINT}")


# ---- the engine -----------------------------------------------------------------------------------


def plan_path_of(card: ModelCard, plan_path: Optional[Union[str, os.PathLike]] = None) -> Path:
    if plan_path:
        p = Path(plan_path)
    else:
        info = card.artifacts.get("tensorrt")
        if not info or not info.file or card.path is None:
            raise ConfigError(
                f"model {card.name!r} has no TensorRT plan: build one with `cityserve export onnx` "
                f"then `cityserve export tensorrt render.onnx --out render.plan`, and pass the "
                f"plan's card (or plan_path=)"
            )
        p = card.directory / info.file
    if not p.is_file():
        raise ConfigError(f"TensorRT plan {p} does not exist")
    return p


class TensorRTEngine:
    """Runs a TensorRT 10 plan of the render graph. Options: ``plan_path`` (default: the plan the card
    names in ``artifacts["tensorrt"]``), ``device`` (CUDA device index)."""

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

"""The optional GPU runtimes: TensorRT 10 and a CUDA stream + memory helper, imported when asked for.

CUDA comes from cuda-python (``cuda.bindings.runtime``, or the older ``cuda.cudart``) or pycuda,
whichever is installed. Nothing here is imported at module import, so every module that uses it
imports on a machine without a GPU; asking for a runtime there raises ``UnavailableError`` saying what
to install. The TensorRT engine and the TensorRT builder both get their runtimes here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import UnavailableError

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

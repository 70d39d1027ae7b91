"""What the benchmark runs on, and the peak rates its achieved figures are compared against.

GPU peaks are the vendors' dense (no sparsity) datasheet figures; the host CPU's peak is *measured*
here with a large matmul, since datasheets for cloud vCPUs say nothing useful.
"""

from __future__ import annotations

import os
import re
import time
from typing import Optional

import torch

from ..hardware import cpu_flags, cpu_name, cpu_supports_bf16

# TFLOP/s, dense, from NVIDIA datasheets (SXM parts where two exist). fp32 = non-tensor-core FP32.
GPU_PEAKS_TFLOPS = {
    "T4": {"fp16": 65.0, "fp32": 8.1, "source": "NVIDIA T4 datasheet (tensor FP16 65 TFLOPS)"},
    "V100": {"fp16": 125.0, "fp32": 15.7, "source": "NVIDIA V100 SXM2 datasheet"},
    "A10": {"fp16": 125.0, "bf16": 125.0, "fp32": 31.2, "source": "NVIDIA A10 datasheet"},
    "A100": {"fp16": 312.0, "bf16": 312.0, "fp32": 19.5, "tf32": 156.0, "source": "NVIDIA A100 SXM datasheet"},
    "H100": {"fp16": 989.0, "bf16": 989.0, "fp32": 67.0, "tf32": 494.0, "source": "NVIDIA H100 SXM datasheet"},
    "H200": {
        "fp16": 989.0,
        "bf16": 989.0,
        "fp32": 67.0,
        "tf32": 494.0,
        "source": "NVIDIA H200 SXM datasheet (dense; its 1,979 FP16 TFLOPS are with sparsity)",
    },
}


def gpu_key(name: str) -> Optional[str]:
    for key in GPU_PEAKS_TFLOPS:
        if key in name.upper():
            return key
    return None


def measure_matmul_tflops(
    dtype: torch.dtype = torch.float32, n: int = 4096, repeats: int = 3, device: str = "cpu"
) -> float:
    """Best-of-``repeats`` rate of an n^3 matmul: the practical peak for this device and thread count."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        torch.matmul(a, b)
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e12


def describe(device: str = "cpu") -> dict:
    info = {
        "device": device,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_bf16": cpu_supports_bf16(),
        "cpu_flags_of_note": sorted(
            cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni"}
        ),
    }
    if device == "cuda" and torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        info.update(
            gpu=name,
            compute_capability=".".join(map(str, torch.cuda.get_device_capability(0))),
            gpu_peaks_tflops=GPU_PEAKS_TFLOPS.get(gpu_key(name) or "", {}),
        )
    return info


def device_label(device: str = "cpu") -> str:
    """A folder-safe name for results: e.g. 'cpu-amd-epyc-2c' or 'cuda-nvidia-h100-80gb-hbm3'."""
    if device == "cuda" and torch.cuda.is_available():
        raw = "cuda-" + torch.cuda.get_device_name(0)
    else:
        raw = f"cpu-{cpu_name()}-{os.cpu_count()}c"
    return re.sub(r"[^a-z0-9]+", "-", raw.lower()).strip("-")

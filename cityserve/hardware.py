"""What this machine's CPU can do: its name, its feature flags, and whether BF16 runs natively.

Read from ``/proc/cpuinfo`` (Linux); elsewhere the flags are empty and BF16 counts as unsupported, so
nothing is compiled for instructions the CPU may lack. The AOT exporter, the repository builder and
the benchmarks ask here.
"""

from __future__ import annotations

import platform


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_supports_bf16() -> bool:
    """Fast BF16 on the CPU needs AVX-512 BF16 or AMX-BF16; without them BF16 is emulated and slow."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})

"""Latency and memory measurement: warm-up excluded, percentiles over timed runs, peak memory.

On CUDA the time of each run is taken with CUDA events around the work (no host-side noise);
on the CPU with ``time.perf_counter``. Peak memory: max allocated on CUDA; on the CPU the process's
resident set sampled every millisecond by a background thread during the timed runs.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable

import numpy as np
import psutil
import torch


@dataclasses.dataclass
class Timing:
    batch: int
    runs: int
    latency_ms: dict  # p50 / p90 / p99 / mean / min
    throughput_ips: float  # images per second = batch / mean latency
    peak_memory_mb: float
    memory_kind: str  # "rss" | "cuda_max_allocated"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class _RssSampler:
    def __init__(self, interval: float = 0.001):
        self.proc = psutil.Process()
        self.peak = self.proc.memory_info().rss
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def measure(
    fn: Callable[[], object], batch: int, warmup: int = 2, runs: int = 10, min_seconds: float = 0.0, cuda: bool = False
) -> Timing:
    """Time ``fn`` (one batch per call): ``warmup`` untimed calls, then at least ``runs`` timed calls
    (more until ``min_seconds`` have passed)."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start_all = time.perf_counter()
        while len(times) < runs or time.perf_counter() - start_all < min_seconds:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        peak, kind = torch.cuda.max_memory_allocated() / 2**20, "cuda_max_allocated"
    else:
        with _RssSampler() as sampler:
            start_all = time.perf_counter()
            while len(times) < runs or time.perf_counter() - start_all < min_seconds:
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
        peak, kind = sampler.peak / 2**20, "rss"
    ms = np.array(times) * 1e3
    lat = {
        "p50": float(np.percentile(ms, 50)),
        "p90": float(np.percentile(ms, 90)),
        "p99": float(np.percentile(ms, 99)),
        "mean": float(ms.mean()),
        "min": float(ms.min()),
    }
    return Timing(batch, len(times), lat, batch / (lat["mean"] / 1e3), peak, kind)

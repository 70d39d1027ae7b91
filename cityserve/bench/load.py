"""Closed-loop load: N requests, C at a time, each thread sending the next as soon as its last came back.

``closed_loop`` is that loop for any call (the Triton sweeps of ``triton_bench`` and
``benchmarks/triton_overhead.py`` time it); ``run_load`` is label2photo under it for the reliability
figures, every answer checked: it keeps ``concurrency`` threads busy, each sending the next label PNG as soon as its last
answer came back (through ``CityserveClient``, so with its failover and retries), and compares every
photo with the one expected for that label map (``same_photo``: the served models are deterministic,
with ``--latent zero`` for generators that take a latent).
``tree_rss`` is the resident memory of a server's process tree (tritonserver + its python stubs),
sampled at the request counts the caller names.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Optional

import cv2
import numpy as np
import psutil

# an answer is right when it is the expected photo to within this many levels of the uint8 image: the
# served models are deterministic, but a dynamic batch of another size may take other BF16 kernels
PHOTO_TOLERANCE = 8


def same_photo(got: bytes, want: bytes) -> bool:
    """Byte-equal PNGs, or the same photo to within ``PHOTO_TOLERANCE`` levels everywhere."""
    if got == want:
        return True
    a = cv2.imdecode(np.frombuffer(got, np.uint8), cv2.IMREAD_COLOR)
    b = cv2.imdecode(np.frombuffer(want, np.uint8), cv2.IMREAD_COLOR)
    if a is None or b is None or a.shape != b.shape:
        return False
    return int(np.abs(a.astype(np.int16) - b).max()) <= PHOTO_TOLERANCE


def tree_rss(pid: int) -> int:
    """Bytes resident in process ``pid`` and all its descendants."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


@dataclasses.dataclass
class LoadResult:
    requests: int
    ok: int
    errors: int
    wrong: int
    seconds: float
    latencies_ms: list[float]
    first_errors: list[str]
    rss_at: dict[int, int]  # completed requests -> server tree RSS bytes
    events: list[tuple[float, float, bool]]  # (start, end, ok) in seconds from the run's start
    started: float = 0.0  # time.perf_counter() at the run's start

    def summary(self) -> dict:
        lat = np.asarray(self.latencies_ms or [0.0])
        return {
            "requests": self.requests,
            "ok": self.ok,
            "errors": self.errors,
            "wrong": self.wrong,
            "seconds": round(self.seconds, 2),
            "throughput_rps": round(self.ok / self.seconds, 2) if self.seconds else None,
            "latency_ms": {
                "p50": round(float(np.percentile(lat, 50)), 1),
                "p99": round(float(np.percentile(lat, 99)), 1),
                "max": round(float(lat.max()), 1),
            },
            "first_errors": self.first_errors,
        }


@dataclasses.dataclass
class LoopTimes:
    latencies_s: list[float]  # of the calls that returned
    errors: list[str]  # of the calls that raised (recorded, not raised: one failure must not hide a sweep)
    wall_s: float


def closed_loop(
    call: Callable[[Any, int], None], concurrency: int, requests: int, per_thread: Optional[Callable[[], Any]] = None
) -> LoopTimes:
    """``requests`` calls ``call(state, i)`` (i = 0..requests-1), ``concurrency`` threads at a time; each
    thread's ``state`` is ``per_thread()`` (e.g. its own client; closed at the end if it has ``close``)."""
    lock = threading.Lock()
    counter = iter(range(requests))
    lat: list[float] = []
    errors: list[str] = []

    def worker() -> None:
        state = per_thread() if per_thread is not None else None
        try:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                t = time.perf_counter()
                try:
                    call(state, i)
                except Exception as e:
                    with lock:
                        errors.append(f"{type(e).__name__}: {e}"[:300])
                    continue
                with lock:
                    lat.append(time.perf_counter() - t)
        finally:
            if hasattr(state, "close"):
                state.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, concurrency))]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return LoopTimes(lat, errors, time.perf_counter() - t0)


def run_load(
    client,
    pngs: Sequence[bytes],
    expected: Sequence[bytes],
    requests: int,
    concurrency: int,
    rss_pid: Optional[Callable[[], int]] = None,
    rss_every: Sequence[int] = (),
    on_progress: Optional[Callable[[int], None]] = None,
    gate: Optional[Callable[[int], None]] = None,
) -> LoadResult:
    """``requests`` label2photo calls, ``concurrency`` in flight. ``rss_pid()`` names the server process
    whose tree RSS is sampled when the completed count reaches each of ``rss_every``; ``on_progress``
    gets every completed count (to trigger faults); ``gate(i)`` may hold request ``i`` back."""
    lock = threading.Lock()
    done = [0]
    lat: list[float] = []
    errors: list[str] = []
    events: list[tuple[float, float, bool]] = []
    wrong = [0]
    rss: dict[int, int] = {}
    marks = sorted(set(rss_every))
    t0 = time.perf_counter()
    if rss_pid is not None and 0 in marks:
        rss[0] = tree_rss(rss_pid())

    def one(_state, i: int) -> None:
        if gate is not None:
            gate(i)
        start = time.perf_counter()
        try:
            out = client.label2photo(pngs[i % len(pngs)])
            good = same_photo(out, expected[i % len(expected)])
            err = None
        except Exception as e:
            good, err = False, f"{type(e).__name__}: {e}"
        end = time.perf_counter()
        with lock:
            events.append((start - t0, end - t0, err is None))
            if err is None:
                lat.append((end - start) * 1000)
                wrong[0] += not good
            else:
                errors.append(err)
            done[0] += 1
            count = done[0]
        if rss_pid is not None and count in marks:
            rss[count] = tree_rss(rss_pid())
        if on_progress is not None:
            on_progress(count)

    seconds = closed_loop(one, concurrency, requests).wall_s
    return LoadResult(requests, len(lat), len(errors), wrong[0], seconds, lat, errors[:5], rss, events, t0)

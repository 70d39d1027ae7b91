"""Closed-loop load on label2photo for the reliability figures: N requests, C at a time, every answer
checked.

``run_load`` keeps ``concurrency`` threads busy, each sending the next label PNG as soon as its last
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
from typing import Optional

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
    state = {"next": 0, "done": 0}
    lat: list[float] = []
    errors: list[str] = []
    events: list[tuple[float, float, bool]] = []
    wrong = [0]
    rss: dict[int, int] = {}
    marks = sorted(set(rss_every))
    t0 = time.perf_counter()
    if rss_pid is not None and 0 in marks:
        rss[0] = tree_rss(rss_pid())

    def worker() -> None:
        while True:
            with lock:
                i = state["next"]
                if i >= requests:
                    return
                state["next"] += 1
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
                state["done"] += 1
                done = state["done"]
            if rss_pid is not None and done in marks:
                rss[done] = tree_rss(rss_pid())
            if on_progress is not None:
                on_progress(done)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, concurrency))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    return LoadResult(requests, len(lat), len(errors), wrong[0], seconds, lat, errors[:5], rss, events, t0)

"""The servers a ``CityserveClient`` spreads its requests over: balancing, health, failover, backoff.

Why in the client: a Kubernetes Service balances gRPC per connection, not per request, so clients on
long-lived channels pile onto one replica; and a replica that restarts or dies must cost a retry, not
a failed request. So the client holds one channel per replica and picks one per request: the replica
with the fewest requests outstanding among those taken to be up (ties broken round robin), or plain
round robin (``policy="round-robin"``).

A request that meets a *retryable* answer (``retryable``: UNAVAILABLE, i.e. unreachable, stopping,
draining or restricted; NOT_FOUND "has no available versions", i.e. models unloading during a
restart) takes its replica out and goes at once to another one that is up; when none is, it waits a
capped, jittered exponential backoff (``Backoff``) and tries again, all within its deadline. Other
errors (bad input, an unknown model) are answers, never retried. A background thread asks every
replica ``is_server_ready`` (down ones every ``health_interval`` s, up ones every 4x that) and puts a
replica back once it answers ready, but not before ``min_down`` s after a request failed on it: a
draining server still reports ready.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import random
import threading
import time
from collections.abc import Sequence
from typing import Optional, Union

import tritonclient.grpc as grpcclient

from .errors import ConfigError

UNLOADING = "has no available versions"


def parse_urls(urls: Union[str, Sequence[str]]) -> list[str]:
    """``"h1:8001,h2:8001"`` or a list of ``HOST:PORT`` -> the list, checked, without duplicates."""
    items = urls.split(",") if isinstance(urls, str) else list(urls)
    out: list[str] = []
    for raw in items:
        url = str(raw).strip()
        host, sep, port = url.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"server {url!r} is not HOST:PORT (e.g. 127.0.0.1:8001)")
        if url not in out:
            out.append(url)
    if not out:
        raise ConfigError("no server URL given (HOST:PORT, or several separated by commas)")
    return out


def retryable(status: str, message: str) -> bool:
    """Whether an error answer means "this replica cannot serve now" rather than "this request is bad".
    CANCELLED counts: the client cancels nothing itself (its deadline is DEADLINE_EXCEEDED), so it is a
    server stopping with the request in flight, and an inference request is safe to send again."""
    return status in ("UNAVAILABLE", "CANCELLED") or (status == "NOT_FOUND" and UNLOADING in message)


@dataclasses.dataclass
class Backoff:
    """Exponential backoff from ``base`` s, capped at ``cap`` s, with full jitter (a uniform draw up
    to the capped value: clients that failed together do not retry together)."""

    base: float = 0.05
    cap: float = 1.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0.0, min(self.cap, self.base * (2 ** max(0, attempt - 1))))


class Replica:
    """One server: its channel, requests outstanding, and whether it is taken to be up."""

    def __init__(self, url: str, client):
        self.url = url
        self.client = client
        self.outstanding = 0
        self.up = True
        self.failed_at = 0.0
        self.last_error = ""
        self.served = 0


class ReplicaPool:
    """Thread-safe choice of a replica per request, with health checks when there are several."""

    def __init__(
        self,
        urls: Union[str, Sequence[str]],
        verbose: bool = False,
        policy: str = "least-outstanding",
        health_interval: float = 0.25,
        min_down: float = 1.0,
    ):
        if policy not in ("least-outstanding", "round-robin"):
            raise ConfigError(f"policy must be 'least-outstanding' or 'round-robin', not {policy!r}")
        self.urls = parse_urls(urls)
        self.replicas = [Replica(u, grpcclient.InferenceServerClient(u, verbose=verbose)) for u in self.urls]
        self.policy = policy
        self.health_interval = float(health_interval)
        self.min_down = float(min_down)
        self._lock = threading.Lock()
        self._turn = itertools.count()
        self._closed = threading.Event()
        self._thread: Optional[threading.Thread] = None
        if len(self.replicas) > 1:
            self._thread = threading.Thread(target=self._watch, name="cityserve-health", daemon=True)
            self._thread.start()

    # ---- choosing --------------------------------------------------------------------------------
    def acquire(self, tried: Sequence[Replica] = ()) -> Replica:
        """The replica for the next attempt (its outstanding count taken): an up one not yet tried by
        this request, else any up one, else the one down the longest (it may be back already)."""
        with self._lock:
            up = [r for r in self.replicas if r.up]
            fresh = [r for r in up if r not in tried]
            pool = fresh or up
            turn = next(self._turn)
            if pool:
                n = len(self.replicas)
                order = {r: (i - turn) % n for i, r in enumerate(self.replicas)}
                if self.policy == "round-robin":
                    choice = min(pool, key=lambda r: order[r])
                else:
                    choice = min(pool, key=lambda r: (r.outstanding, order[r]))
            else:
                choice = min(self.replicas, key=lambda r: r.failed_at)
            choice.outstanding += 1
            return choice

    def release(self, replica: Replica, ok: bool, error: str = "") -> None:
        """``ok``: the replica answered (a result, or an error about the request itself)."""
        with self._lock:
            replica.outstanding -= 1
            if ok:
                replica.served += 1
                # an answer proves it is up; with several replicas, not before min_down (see _watch)
                if len(self.replicas) == 1 or time.monotonic() - replica.failed_at >= self.min_down:
                    replica.up = True
                return
            replica.up = False
            replica.failed_at = time.monotonic()
            replica.last_error = error

    def any_up(self) -> bool:
        with self._lock:
            return any(r.up for r in self.replicas)

    def state(self) -> list[dict]:
        with self._lock:
            return [
                {"url": r.url, "up": r.up, "outstanding": r.outstanding, "served": r.served, "last_error": r.last_error}
                for r in self.replicas
            ]

    # ---- health ----------------------------------------------------------------------------------
    def _ready(self, replica: Replica) -> bool:
        try:
            return bool(replica.client.is_server_ready(client_timeout=max(0.5, self.health_interval * 4)))
        except Exception:
            return False

    def _watch(self) -> None:
        last_checked: dict[str, float] = {}
        while not self._closed.wait(self.health_interval):
            now = time.monotonic()
            for r in self.replicas:
                if r.up and now - last_checked.get(r.url, 0.0) < 4 * self.health_interval:
                    continue
                if not r.up and now - r.failed_at < self.min_down:
                    continue
                last_checked[r.url] = now
                ready = self._ready(r)
                with self._lock:
                    if ready and not r.up and time.monotonic() - r.failed_at >= self.min_down:
                        r.up = True
                    elif not ready and r.up:
                        r.up, r.failed_at, r.last_error = False, time.monotonic(), "health check: not ready"

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for r in self.replicas:
            with contextlib.suppress(Exception):
                r.client.close()

"""Draining a server before it stops: refuse new requests, let those in flight finish, then stop.

Why cityserve drains itself: tritonserver's own SIGTERM handling stops every model's scheduler at
once, so an ensemble request already past its first step fails at the next one ("Server is
stopping"), and while the models unload every request gets NOT_FOUND "has no available versions".
So the launcher (``TritonServer.stop``) drains first and only then sends tritonserver its SIGTERM.

The two halves meet in a state folder that the launcher names in ``CITYSERVE_SERVER_STATE``:

* inside the python models (``ModelState``): the ensembles' entry models (``decode_png``,
  ``decode_photo``) answer UNAVAILABLE ("draining") once the folder holds ``draining``, so clients
  retry elsewhere or after the restart; every cityserve python model marks its process busy
  (``busy/<pid>``) while it executes, and entry models list themselves in ``entry/``.
* in the launcher (``drain``): create ``draining``, then poll until, for a quiet window, no model has
  a request queued past the entry (Triton's ``nv_inference_pending_request_count``), no python model
  is busy, and
  no model past the entry has completed a request (the ensembles themselves are left out: the
  requests refused at their entry count as their failures); or until the timeout. The window is
  0.15 s, or twice the longest mean execution time Triton reports for a model that is not a cityserve
  python model (TensorRT or onnxruntime backends on gpu targets: their execution is not visible, so
  it is waited for), when that is longer. Python models list themselves in ``python/``.

A server started without the variable (e.g. a plain ``tritonserver`` in an NGC container) has no
state folder: its models never gate and never mark themselves.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import urllib.request
from pathlib import Path
from typing import Optional

STATE_ENV = "CITYSERVE_SERVER_STATE"
_METRIC = re.compile(r'^(nv_inference_\w+)\{model="([^"]+)"[^}]*\}\s+([0-9.eE+-]+)$')


class ModelState:
    """The python model's view of the state folder (a no-op without ``CITYSERVE_SERVER_STATE``)."""

    def __init__(self, model_name: str, entry: bool = False):
        root = os.environ.get(STATE_ENV, "")
        self.root = Path(root) if root else None
        self._busy = None
        if self.root is not None:
            (self.root / "busy").mkdir(parents=True, exist_ok=True)
            self._busy = str(self.root / "busy" / str(os.getpid()))
            (self.root / "python").mkdir(parents=True, exist_ok=True)
            (self.root / "python" / model_name).touch()
            if entry:
                (self.root / "entry").mkdir(parents=True, exist_ok=True)
                (self.root / "entry" / model_name).touch()

    def draining(self) -> bool:
        return self.root is not None and os.path.exists(self.root / "draining")

    @contextlib.contextmanager
    def busy(self):
        if self._busy is None:
            yield
            return
        os.close(os.open(self._busy, os.O_CREAT | os.O_WRONLY, 0o600))
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._busy)


def read_metrics(url: str, timeout: float = 2.0) -> dict[str, dict[str, float]]:
    """Triton's per-model metrics: {metric name: {model: value}} (versions summed)."""
    with urllib.request.urlopen(url, timeout=timeout) as r:
        text = r.read().decode("utf-8", "replace")
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        m = _METRIC.match(line)
        if m:
            per_model = out.setdefault(m.group(1), {})
            per_model[m.group(2)] = per_model.get(m.group(2), 0.0) + float(m.group(3))
    return out


def ensemble_names(repository: Path) -> set[str]:
    """The ensembles of a model repository (their counters move with every refused request)."""
    names = set()
    for config in Path(repository).glob("*/config.pbtxt"):
        with contextlib.suppress(OSError):
            if re.search(r'^\s*platform:\s*"ensemble"', config.read_text(), re.MULTILINE):
                names.add(config.parent.name)
    return names


def _snapshot(metrics_url: str, state: Path, ignore: set[str]) -> tuple[bool, float, float]:
    """(anything visibly in flight, completed requests past the entry models, longest mean exec s)."""
    metrics = read_metrics(metrics_url)
    entries = {p.name for p in (state / "entry").glob("*")} if (state / "entry").is_dir() else set()
    entries |= ignore
    pending = sum(v for m, v in metrics.get("nv_inference_pending_request_count", {}).items() if m not in entries)
    busy = any((state / "busy").iterdir()) if (state / "busy").is_dir() else False
    done = sum(
        v
        for name in ("nv_inference_request_success", "nv_inference_request_failure")
        for model, v in metrics.get(name, {}).items()
        if model not in entries
    )
    python = {p.name for p in (state / "python").glob("*")} if (state / "python").is_dir() else set()
    counts = metrics.get("nv_inference_exec_count", {})
    compute = metrics.get("nv_inference_compute_infer_duration_us", {})
    unseen = [m for m in compute if counts.get(m) and m not in python and m not in ignore]  # e.g. TensorRT
    longest = max((compute[m] / counts[m] / 1e6 for m in unseen), default=0.0)
    return pending > 0 or busy, done, longest


def drain(
    metrics_url: str, state: Path, timeout: float, ignore: set[str] = frozenset(), poll: float = 0.05
) -> tuple[bool, float]:
    """Refuse new requests and wait for those in flight (see the module docstring); ``ignore``: models
    whose counters do not count (the ensembles). Returns (drained before the timeout, seconds spent)."""
    started = time.monotonic()
    state.mkdir(parents=True, exist_ok=True)
    (state / "draining").touch()
    quiet_since: Optional[float] = None
    last_done = None
    while True:
        now = time.monotonic()
        try:
            active, done, longest = _snapshot(metrics_url, state, set(ignore))
        except OSError:  # the server is gone or not answering: nothing left to wait for
            return True, now - started
        if active or done != last_done:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        last_done = done
        if quiet_since is not None and now - quiet_since >= max(0.15, 2 * longest):
            return True, now - started
        if now - started >= timeout:
            return False, now - started
        time.sleep(poll)

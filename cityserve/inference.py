"""Raw-tensor requests to Triton servers with a deadline, failover across replicas and retries.

``InferenceClient`` is the transport under ``CityserveClient``: it picks a replica per request
(``cityserve.replicas``), sends with ``tritonclient.grpc`` (blocking or async), fails over and backs
off within the request's deadline, and turns every error status into an exception whose message is
the server's: ``ServerError`` (the request was answered with an error), ``RequestTimeout`` (the
deadline passed), ``ServerUnavailable`` (no replica could serve it in time).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any, Optional, Union

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import np_to_triton_dtype

from .errors import CityserveError, ConfigError, UnavailableError
from .replicas import Backoff, Replica, ReplicaPool, retryable

DEFAULT_URL = "127.0.0.1:8001"


class ServerError(CityserveError):
    """The server answered a request with an error status; ``str(e)`` is the server's message."""

    def __init__(self, message: str, status: str = "", model: str = ""):
        super().__init__(message)
        self.status = status
        self.model = model


class RequestTimeout(ServerError):
    """The request's deadline passed before the server answered."""


class ServerUnavailable(UnavailableError):
    """No server could serve the request (unreachable, stopping, draining, unloading) through every
    retry within its deadline."""


def _status_name(exc: Exception) -> str:
    status = getattr(exc, "status", None)
    s = status() if callable(status) else status
    return str(s or "").replace("StatusCode.", "")


def _message(exc: Exception) -> str:
    msg = getattr(exc, "message", None)
    m = msg() if callable(msg) else msg
    return str(m if m else exc)


def convert_error(exc: Exception, model: str, timeout: Optional[float] = None) -> CityserveError:
    """tritonclient's InferenceServerException -> ServerError / RequestTimeout / ServerUnavailable."""
    status, message = _status_name(exc), _message(exc)
    if status == "DEADLINE_EXCEEDED":
        return RequestTimeout(
            f"model {model!r}: no answer within the {timeout:g} s deadline"
            if timeout
            else f"model {model!r}: deadline exceeded",
            status,
            model,
        )
    if retryable(status, message):
        return ServerUnavailable(f"server unavailable for model {model!r}: {message}")
    return ServerError(message, status, model)


class InferenceClient:
    """Raw-tensor requests to one server or to several replicas (a list, or ``"h1:8001,h2:8001"``).
    Thread-safe; one gRPC channel per replica.

    ``timeout``: the deadline of each request in seconds, retries included. ``retries``: at most this
    many retries per request (None: as many as fit in the deadline), after ``backoff`` s doubling up to
    ``backoff_cap`` s, jittered, whenever no other replica is up. ``policy``: "least-outstanding"
    (default) or "round-robin".
    """

    def __init__(
        self,
        url: Union[str, Sequence[str]] = DEFAULT_URL,
        timeout: float = 60.0,
        retries: Optional[int] = None,
        backoff: float = 0.05,
        backoff_cap: float = 1.0,
        verbose: bool = False,
        policy: str = "least-outstanding",
        health_interval: float = 0.25,
    ):
        self._grpc = grpcclient
        self.pool = ReplicaPool(url, verbose=verbose, policy=policy, health_interval=health_interval)
        self.urls = self.pool.urls
        self.url = ",".join(self.urls)
        self.timeout = float(timeout)
        self.retries = None if retries is None else int(retries)
        self.backoff = Backoff(float(backoff), float(backoff_cap))
        self.last_url = ""  # the replica that answered the latest request (for messages)
        self._configs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    @property
    def _client(self):
        """The first replica's tritonclient (admin calls, tests)."""
        return self.pool.replicas[0].client

    # ---- server state ------------------------------------------------------------------------
    def close(self) -> None:
        self.pool.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def is_ready(self) -> bool:
        """Whether at least one replica reports ready."""
        for replica in self.pool.replicas:
            try:
                if replica.client.is_server_ready(client_timeout=5):
                    return True
            except Exception:
                pass
        return False

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.is_ready():
            if time.monotonic() > deadline:
                raise ServerUnavailable(f"server {self.url} not ready after {timeout:g} s")
            time.sleep(0.2)

    def model_config(self, model: str) -> dict[str, Any]:
        """The served model's configuration (cached; replicas serve the same repository)."""
        with self._lock:
            if model not in self._configs:
                try:
                    cfg = self._call(
                        lambda r, left: r.client.get_model_config(model, as_json=True, client_timeout=left), model
                    )
                except ServerError as e:
                    if e.status == "NOT_FOUND":
                        raise ConfigError(f"server {self.url} serves no model {model!r}") from None
                    raise
                self._configs[model] = cfg.get("config", cfg)
            return self._configs[model]

    def parameters(self, model: str) -> dict[str, str]:
        return {k: v.get("string_value", "") for k, v in self.model_config(model).get("parameters", {}).items()}

    # ---- one request: a replica, the deadline, failover and retries --------------------------
    def _timeout_error(self, model: str, timeout: float) -> RequestTimeout:
        return RequestTimeout(
            f"model {model!r}: no answer within the {timeout:g} s deadline", "DEADLINE_EXCEEDED", model
        )

    def _failed(self, replica: Replica, exc: Exception, model: str, timeout: float, attempt: int):
        """Book a failed attempt. Returns (error to raise or None to retry, seconds to wait first)."""
        err = convert_error(exc, model, timeout)
        if not isinstance(err, ServerUnavailable):
            self.pool.release(replica, True)  # the replica answered: the request itself is at fault
            return err, 0.0
        self.pool.release(replica, False, str(err))
        if self.retries is not None and attempt >= self.retries:
            return err, 0.0
        return None, (0.0 if self.pool.any_up() else self.backoff.delay(attempt + 1))

    def _call(self, send, model: str, timeout: Optional[float] = None):
        """``send(replica, seconds_left)`` on a replica, failing over and retrying until the deadline."""
        timeout = self.timeout if timeout is None else float(timeout)
        deadline = time.monotonic() + timeout
        tried: list[Replica] = []
        attempt = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._timeout_error(model, timeout)
            replica = self.pool.acquire(tried)
            try:
                result = send(replica, left)
            except Exception as e:
                err, wait = self._failed(replica, e, model, timeout, attempt)
                if err is not None:
                    raise err from None
                attempt += 1
                tried.append(replica)
                time.sleep(min(wait, max(0.0, deadline - time.monotonic())))
                continue
            self.pool.release(replica, True)
            self.last_url = replica.url
            return result

    def _inputs(self, feeds: dict[str, np.ndarray]) -> list:
        out = []
        for name, arr in feeds.items():
            dtype = "BYTES" if arr.dtype == np.object_ else np_to_triton_dtype(arr.dtype)
            t = self._grpc.InferInput(name, list(arr.shape), dtype)
            t.set_data_from_numpy(arr)
            out.append(t)
        return out

    def infer(
        self,
        model: str,
        feeds: dict[str, np.ndarray],
        outputs: Optional[Sequence[str]] = None,
        timeout: Optional[float] = None,
    ) -> dict[str, np.ndarray]:
        """Run ``model`` on raw tensors (name -> array with the batch axis first); returns every
        requested output (all of the model's outputs when ``outputs`` is None)."""
        inputs = self._inputs(feeds)
        req_out = [self._grpc.InferRequestedOutput(o) for o in outputs] if outputs else None
        result = self._call(
            lambda r, left: r.client.infer(model, inputs, outputs=req_out, client_timeout=left), model, timeout
        )
        return self._outputs(result, model, outputs)

    def _outputs(self, result, model: str, outputs: Optional[Sequence[str]]) -> dict[str, np.ndarray]:
        names = outputs or [o["name"] for o in self.model_config(model).get("output", [])]
        return {n: result.as_numpy(n) for n in names}

    def infer_async(
        self,
        model: str,
        feeds: dict[str, np.ndarray],
        outputs: Optional[Sequence[str]] = None,
        timeout: Optional[float] = None,
    ) -> Future:
        """Send without waiting: a Future of the outputs dict (or of the exception), with the same
        deadline, failover and retries as ``infer``."""
        timeout = self.timeout if timeout is None else float(timeout)
        deadline = time.monotonic() + timeout
        inputs = self._inputs(feeds)
        req_out = [self._grpc.InferRequestedOutput(o) for o in outputs] if outputs else None
        if outputs is None:
            self.model_config(model)  # cache the output names before the callback thread needs them
        future: Future = Future()
        future.set_running_or_notify_cancel()
        tried: list[Replica] = []

        def send(attempt: int) -> None:
            left = deadline - time.monotonic()
            if left <= 0:
                future.set_exception(self._timeout_error(model, timeout))
                return
            replica = self.pool.acquire(tried)
            try:
                replica.client.async_infer(
                    model,
                    inputs,
                    callback=lambda result, error: done(replica, result, error, attempt),
                    outputs=req_out,
                    client_timeout=left,
                )
            except Exception as e:
                done(replica, None, e, attempt)

        def done(replica: Replica, result, error, attempt: int) -> None:
            if error is None:
                self.pool.release(replica, True)
                self.last_url = replica.url
                try:
                    future.set_result(self._outputs(result, model, outputs))
                except Exception as e:
                    future.set_exception(e)
                return
            err, wait = self._failed(replica, error, model, timeout, attempt)
            if err is not None:
                future.set_exception(err)
                return
            tried.append(replica)
            timer = threading.Timer(min(wait, max(0.0, deadline - time.monotonic())), send, args=(attempt + 1,))
            timer.daemon = True
            timer.start()

        send(0)
        return future

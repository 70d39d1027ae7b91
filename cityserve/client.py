"""The gRPC client of a cityserve Triton server (``tritonclient.grpc``).

>>> client = CityserveClient("127.0.0.1:8001")
>>> photo_png = client.label2photo(open("labels.png", "rb").read())        # PNG in, PNG out
>>> photo = client.render(ids)                                              # ids [H,W] in, uint8 [1,H,W,3] out
>>> photos = client.render_many([png1, png2, ...], concurrency=8)          # many requests in flight

What it adds to tritonclient: label maps as PNG bytes, files or id arrays, photos as PNG bytes or
arrays; batches in one request or many requests in flight at once (async, ``concurrency`` at a
time); a deadline per request; retries (with backoff) while the server answers UNAVAILABLE (starting,
overloaded); and every error status turned into an exception whose message is the server's, e.g.
``ServerError: in ensemble 'label2photo', decode_png: PNG: not a PNG: ...``.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import np_to_triton_dtype

from . import contract
from .errors import CityserveError, ConfigError, LabelError, UnavailableError
from .labels import labelmap
from .serving.codec import decode_rgb_png, encode_rgb_png

DEFAULT_URL = "127.0.0.1:8001"
LabelInput = Union[bytes, bytearray, str, os.PathLike, np.ndarray]


class ServerError(CityserveError):
    """The server answered a request with an error status; ``str(e)`` is the server's message."""

    def __init__(self, message: str, status: str = "", model: str = ""):
        super().__init__(message)
        self.status = status
        self.model = model


class RequestTimeout(ServerError):
    """The request's deadline passed before the server answered."""


class ServerUnavailable(UnavailableError):
    """The server stayed UNAVAILABLE (or unreachable) through every retry."""


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
    if status == "UNAVAILABLE":
        return ServerUnavailable(f"server unavailable for model {model!r}: {message}")
    return ServerError(message, status, model)


def read_input_bytes(item: LabelInput) -> bytes:
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    p = Path(item)
    try:
        return p.read_bytes()
    except OSError as e:
        raise LabelError(f"cannot read {p}: {e.strerror or e}") from None


def _bytes_tensor(item: LabelInput) -> np.ndarray:
    """One encoded image as the contract's BYTES [1, 1] tensor."""
    return np.array([[read_input_bytes(item)]], dtype=np.object_)


class CityserveClient:
    """A connection to one server. Thread-safe; one underlying gRPC channel.

    ``timeout``: the deadline of each request in seconds (retries included). ``retries``: how many
    times a request that met UNAVAILABLE is sent again (exponential backoff from ``backoff`` s).
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        timeout: float = 60.0,
        retries: int = 4,
        backoff: float = 0.1,
        label2photo_model: str = "label2photo",
        render_model: str = "render",
        verbose: bool = False,
    ):
        self._grpc = grpcclient
        self.url = url
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.label2photo_model = label2photo_model
        self.render_model = render_model
        self._client = grpcclient.InferenceServerClient(url, verbose=verbose)
        self._configs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    # ---- server state ------------------------------------------------------------------------
    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> CityserveClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def is_ready(self) -> bool:
        try:
            return bool(self._client.is_server_ready())
        except Exception:
            return False

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.is_ready():
            if time.monotonic() > deadline:
                raise ServerUnavailable(f"server {self.url} not ready after {timeout:g} s")
            time.sleep(0.2)

    def model_config(self, model: str) -> dict[str, Any]:
        """The served model's configuration (cached), as Triton reports it."""
        with self._lock:
            if model not in self._configs:
                try:
                    cfg = self._client.get_model_config(model, as_json=True, client_timeout=self.timeout)
                except Exception as e:
                    err = convert_error(e, model)
                    text = str(err).lower()
                    if isinstance(err, ServerError) and ("unknown model" in text or "not found" in text):
                        raise ConfigError(f"server {self.url} serves no model {model!r}") from None
                    raise err from None
                self._configs[model] = cfg.get("config", cfg)
            return self._configs[model]

    def parameters(self, model: str) -> dict[str, str]:
        return {k: v.get("string_value", "") for k, v in self.model_config(model).get("parameters", {}).items()}

    # ---- one request, with deadline and retries ----------------------------------------------
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
        timeout = self.timeout if timeout is None else float(timeout)
        deadline = time.monotonic() + timeout
        inputs = self._inputs(feeds)
        req_out = [self._grpc.InferRequestedOutput(o) for o in outputs] if outputs else None
        attempt = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RequestTimeout(
                    f"model {model!r}: no answer within the {timeout:g} s deadline", "DEADLINE_EXCEEDED", model
                )
            try:
                result = self._client.infer(model, inputs, outputs=req_out, client_timeout=left)
            except Exception as e:
                err = convert_error(e, model, timeout)
                if isinstance(err, ServerUnavailable) and attempt < self.retries:
                    attempt += 1
                    time.sleep(min(self._delay(attempt), max(0.0, deadline - time.monotonic())))
                    continue
                raise err from None
            return self._outputs(result, model, outputs)

    def _delay(self, attempt: int) -> float:
        return self.backoff * (2 ** (attempt - 1)) * (0.5 + random.random())

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
        deadline and UNAVAILABLE retries as ``infer``."""
        timeout = self.timeout if timeout is None else float(timeout)
        deadline = time.monotonic() + timeout
        inputs = self._inputs(feeds)
        req_out = [self._grpc.InferRequestedOutput(o) for o in outputs] if outputs else None
        if outputs is None:
            self.model_config(model)  # cache the output names before the callback thread needs them
        future: Future = Future()
        future.set_running_or_notify_cancel()

        def send(attempt: int) -> None:
            left = deadline - time.monotonic()
            if left <= 0:
                future.set_exception(
                    RequestTimeout(
                        f"model {model!r}: no answer within the {timeout:g} s deadline", "DEADLINE_EXCEEDED", model
                    )
                )
                return
            try:
                self._client.async_infer(
                    model,
                    inputs,
                    callback=lambda result, error: done(result, error, attempt),
                    outputs=req_out,
                    client_timeout=left,
                )
            except Exception as e:
                done(None, e, attempt)

        def done(result, error, attempt: int) -> None:
            if error is None:
                try:
                    future.set_result(self._outputs(result, model, outputs))
                except Exception as e:
                    future.set_exception(e)
                return
            err = convert_error(error, model, timeout)
            if isinstance(err, ServerUnavailable) and attempt < self.retries:
                delay = min(self._delay(attempt + 1), max(0.0, deadline - time.monotonic()))
                timer = threading.Timer(delay, send, args=(attempt + 1,))
                timer.daemon = True
                timer.start()
                return
            future.set_exception(err)

        send(0)
        return future

    # ---- label maps -> photos ----------------------------------------------------------------
    def label2photo(
        self,
        labels: Union[LabelInput, Sequence[LabelInput]],
        model: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> Union[bytes, list[bytes]]:
        """Label PNG(s) (bytes or paths) -> photo PNG bytes, through the ``label2photo`` ensemble. A list
        goes as one batched request and gives a list back."""
        single = not isinstance(labels, (list, tuple))
        items = [labels] if single else list(labels)
        if not items:
            return []
        data = np.array([[read_input_bytes(i)] for i in items], dtype=np.object_)
        out = self.infer(model or self.label2photo_model, {contract.LABELS_PNG: data}, timeout=timeout)
        out = out[contract.PHOTO_PNG]
        pngs = [bytes(x) for x in out.reshape(-1)]
        return pngs[0] if single else pngs

    def photo2labels(
        self, photo: LabelInput, model: str = "photo2labels", timeout: Optional[float] = None
    ) -> tuple[bytes, bytes]:
        """A photo (PNG/JPEG bytes or path) -> (id PNG in the label set's file convention, color PNG)."""
        out = self.infer(model, {contract.PHOTO_PNG: _bytes_tensor(photo)}, timeout=timeout)
        return bytes(out[contract.LABELS_PNG].reshape(-1)[0]), bytes(out[contract.COLOR_PNG].reshape(-1)[0])

    def photo2photo(
        self, photo: LabelInput, model: str = "photo2photo", timeout: Optional[float] = None
    ) -> dict[str, bytes]:
        """A photo -> {"RENDERED_PNG", "LABELS_PNG", "COLOR_PNG"}: its labels and the photo re-rendered."""
        out = self.infer(model, {contract.PHOTO_PNG: _bytes_tensor(photo)}, timeout=timeout)
        return {k: bytes(v.reshape(-1)[0]) for k, v in out.items()}

    def render_feeds(
        self,
        ids: np.ndarray,
        instances: Optional[np.ndarray] = None,
        z: Optional[np.ndarray] = None,
        seed: Optional[int] = None,
        model: Optional[str] = None,
    ) -> dict[str, np.ndarray]:
        """Raw inputs of the render model for ids [H,W] / [B,H,W] / [B,1,H,W], shaped and typed as the
        served model declares (instances default to the class map, z to N(0,1))."""
        cfg = self.model_config(model or self.render_model)
        spec = {t["name"]: t for t in cfg["input"]}
        ids = labelmap.as_batch(labelmap.as_int_array(ids, "label ids"), "label ids")
        dims = [int(d) for d in spec[contract.LABELS]["dims"]]
        if list(ids.shape[1:]) != dims:
            raise LabelError(
                f"label ids of shape {tuple(np.shape(ids))} do not fit model "
                f"{cfg['name']!r}, which takes [B, {', '.join(map(str, dims))}]"
            )
        dtype = contract.numpy_dtype(spec[contract.LABELS]["data_type"])
        if ids.size and (ids.min() < 0 or ids.max() > np.iinfo(dtype).max):
            raise LabelError(f"label ids {int(ids.min())}..{int(ids.max())} do not fit {dtype.name}")
        feeds = {contract.LABELS: np.ascontiguousarray(ids, dtype=dtype)}
        if contract.INSTANCES in spec:
            inst = ids if instances is None else np.asarray(instances).reshape(ids.shape)
            feeds[contract.INSTANCES] = np.ascontiguousarray(inst, dtype=np.int32)
        if contract.Z in spec:
            z_dim = int(spec[contract.Z]["dims"][-1])
            if z is None:
                z = np.random.default_rng(seed).standard_normal((ids.shape[0], z_dim))
            feeds[contract.Z] = np.ascontiguousarray(np.asarray(z, dtype=np.float32).reshape(ids.shape[0], z_dim))
        return feeds

    def render(
        self,
        labels: Union[LabelInput, Sequence[LabelInput]],
        output: str = "array",
        instances: Optional[np.ndarray] = None,
        z: Optional[np.ndarray] = None,
        seed: Optional[int] = None,
        timeout: Optional[float] = None,
    ) -> Union[np.ndarray, bytes, list[bytes]]:
        """Render one label map or a batch, in one request.

        ``labels``: label PNG bytes / path (or a list of them), or label ids as an array
        ([H,W] or [B,H,W] or [B,1,H,W]). ``output``: "array" (uint8 [B,H,W,3]) or "png" (PNG bytes, a
        list for a batch). PNGs go through ``label2photo`` (decoded and checked on the server), ids
        straight to the render model (no PNG cost either way).
        """
        if output not in ("array", "png"):
            raise ConfigError(f"output must be 'array' or 'png', not {output!r}")
        if isinstance(labels, np.ndarray):
            feeds = self.render_feeds(labels, instances, z, seed)
            image = self.infer(self.render_model, feeds, outputs=[contract.IMAGE], timeout=timeout)[contract.IMAGE]
            if output == "array":
                return image

            pngs = [encode_rgb_png(im) for im in image]
            return pngs[0] if labels.ndim == 2 else pngs
        pngs = self.label2photo(labels, timeout=timeout)
        if output == "png":
            return pngs

        return np.stack([decode_rgb_png(p) for p in ([pngs] if isinstance(pngs, bytes) else pngs)])

    def render_many(
        self,
        items: Sequence[LabelInput],
        output: str = "png",
        concurrency: int = 8,
        timeout: Optional[float] = None,
        return_exceptions: bool = False,
        on_done: Optional[Callable[[int, Any], None]] = None,
    ) -> list:
        """Render each item as its own request, up to ``concurrency`` in flight at once; results in
        order. An item is a label PNG (bytes/path) or an id array [H,W]. With ``return_exceptions`` a
        failed item gives its exception in the list; otherwise the first failure is raised after all
        requests have finished."""
        if output not in ("array", "png"):
            raise ConfigError(f"output must be 'array' or 'png', not {output!r}")
        slots = threading.BoundedSemaphore(max(1, int(concurrency)))
        futures: list[Future] = []
        for i, item in enumerate(items):
            slots.acquire()
            try:
                if isinstance(item, np.ndarray):
                    feeds = self.render_feeds(item)
                    f = self.infer_async(self.render_model, feeds, outputs=[contract.IMAGE], timeout=timeout)
                else:
                    feeds = {contract.LABELS_PNG: _bytes_tensor(item)}
                    f = self.infer_async(self.label2photo_model, feeds, timeout=timeout)
            except BaseException:
                slots.release()
                raise
            f.add_done_callback(lambda _f: slots.release())
            if on_done is not None:
                f.add_done_callback(lambda _f, i=i: on_done(i, _f))
            futures.append(f)
        results: list = []
        first_error: Optional[BaseException] = None
        wait = (self.timeout if timeout is None else float(timeout)) + 30.0  # a lost callback must not hang
        for _item, f in zip(items, futures):
            try:
                out = f.result(timeout=wait)
                results.append(self._convert_single(out, output))
            except Exception as e:
                first_error = first_error or e
                results.append(e)
        if first_error is not None and not return_exceptions:
            raise first_error
        return results

    @staticmethod
    def _convert_single(out: dict[str, np.ndarray], output: str):
        if contract.IMAGE in out:
            image = out[contract.IMAGE][0]
            return image if output == "array" else encode_rgb_png(image)
        png = bytes(out[contract.PHOTO_PNG].reshape(-1)[0])
        return png if output == "png" else decode_rgb_png(png)

"""The gRPC client of cityserve Triton servers (``tritonclient.grpc``): one server or several replicas.

>>> client = CityserveClient("127.0.0.1:8001")
>>> photo_png = client.label2photo(open("labels.png", "rb").read())        # PNG in, PNG out
>>> photo = client.render(ids)                                              # ids [H,W] in, uint8 [1,H,W,3] out
>>> photos = client.render_many([png1, png2, ...], concurrency=8)          # many requests in flight
>>> street = client.random_street(7)   # {"LABELS_PNG", "COLOR_PNG", "PHOTO_PNG"}: seed 7's layout + photo
>>> spread = CityserveClient(["h1:8001", "h2:8001", "h3:8001"])             # balanced, with failover
>>> photo_png, depth_png = client.label2depth2photo("labels.png")          # a depth-aware pair
>>> photo_png = client.depth2photo("labels.png", "my_depth.png")           # your own depth (PNG mm / .npy m)

What it adds to tritonclient: label maps as PNG bytes, files or id arrays, photos as PNG bytes or
arrays; batches in one request or many requests in flight at once (async, ``concurrency`` at a
time); a deadline per request; several replicas, each request sent to the least busy one
(``cityserve.replicas``); retries within the deadline when a server cannot serve now (UNAVAILABLE:
down, stopping, draining; NOT_FOUND while its models unload during a restart), on another replica
at once when one is up, else after a capped, jittered backoff; and every error status turned into an
exception whose message is the server's, e.g. ``ServerError: in ensemble 'label2photo', decode_png:
PNG: not a PNG: ...``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from . import contract
from .errors import ConfigError, LabelError
from .inference import (  # noqa: F401  (re-exported: the client's errors)
    DEFAULT_URL,
    InferenceClient,
    RequestTimeout,
    ServerError,
    ServerUnavailable,
    convert_error,
)
from .labels import labelmap
from .serving.codec import decode_rgb_png, encode_rgb_png

LabelInput = Union[bytes, bytearray, str, os.PathLike, np.ndarray]


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


class CityserveClient(InferenceClient):
    """Label maps in, photos out, from one server or several replicas (a list, or
    ``"h1:8001,h2:8001"``). Thread-safe. ``timeout`` (s, retries included), ``retries``, ``backoff``,
    ``backoff_cap`` and ``policy``: see ``InferenceClient``."""

    def __init__(
        self,
        url: Union[str, Sequence[str]] = DEFAULT_URL,
        timeout: float = 60.0,
        retries: Optional[int] = None,
        backoff: float = 0.05,
        backoff_cap: float = 1.0,
        label2photo_model: str = "label2photo",
        render_model: str = "render",
        verbose: bool = False,
        policy: str = "least-outstanding",
        health_interval: float = 0.25,
    ):
        super().__init__(url, timeout, retries, backoff, backoff_cap, verbose, policy, health_interval)
        self.label2photo_model = label2photo_model
        self.render_model = render_model

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

    def random_street(
        self, seed: int, model: str = "random2photo", timeout: Optional[float] = None
    ) -> dict[str, bytes]:
        """A seed -> {"LABELS_PNG", "COLOR_PNG", "PHOTO_PNG"}: the street layout that seed names (the
        same seed gives the same layout, as ``cityserve generate --seed``) and its photo."""
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ConfigError(f"a layout seed must be an integer, not {type(seed).__name__}")
        if not 0 <= int(seed) < 2**63:
            raise ConfigError(f"a layout seed must be 0..2^63-1, not {seed}")
        out = self.infer(model, {contract.SEED: np.array([[int(seed)]], dtype=np.int64)}, timeout=timeout)
        return {k: bytes(v.reshape(-1)[0]) for k, v in out.items()}

    # ---- depth-aware pairs (docs/depth.md) ----------------------------------------------------
    def label2depth(self, labels: LabelInput, model: str = "label2depth", timeout: Optional[float] = None) -> bytes:
        """A label PNG (bytes or path) -> the predicted depth as a 16-bit PNG in millimetres (clipped to
        1..65535 mm; read it with ``cityserve.data.depth.read_depth`` or OpenCV's IMREAD_UNCHANGED)."""
        out = self.infer(model, {contract.LABELS_PNG: _bytes_tensor(labels)}, timeout=timeout)
        return bytes(out[contract.DEPTH_PNG].reshape(-1)[0])

    def label2depth2photo(
        self, labels: LabelInput, model: str = "label2depth2photo", timeout: Optional[float] = None
    ) -> tuple[bytes, bytes]:
        """A label PNG -> (photo PNG, the depth PNG stage 2 was given), both stages on the server."""
        out = self.infer(model, {contract.LABELS_PNG: _bytes_tensor(labels)}, timeout=timeout)
        return bytes(out[contract.PHOTO_PNG].reshape(-1)[0]), bytes(out[contract.DEPTH_PNG].reshape(-1)[0])

    def depth2photo(
        self, labels: LabelInput, depth: LabelInput, model: str = "depth2photo", timeout: Optional[float] = None
    ) -> bytes:
        """A label PNG and your own depth map (16-bit PNG in millimetres or ``.npy`` bytes in metres, at
        the model's size; bytes or a path) -> the photo PNG. A bad depth map is INVALID_ARGUMENT,
        raised as ``ServerError`` naming the problem."""
        feeds = {contract.LABELS_PNG: _bytes_tensor(labels), contract.DEPTH_PNG: _bytes_tensor(depth)}
        return bytes(self.infer(model, feeds, timeout=timeout)[contract.PHOTO_PNG].reshape(-1)[0])

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

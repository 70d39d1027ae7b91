"""The canvas's way into Triton: one ``label2photo`` ensemble of a served repository, through
cityserve's own gRPC client.

What the page needs to know of the model (its size, label set, limits) is read from the server
(the parameters of the ensemble's ``decode_png`` step, or of the fused ``label2photo`` model), so the palette and the checks follow whatever
the repository serves. Every label map is checked here with the same decoder the server runs
(``codec.LabelPngDecoder``), so bad input costs no round trip and gets the same one-line message.
A lost server is ``ServerUnavailable``; nothing is cached that a restarted server would change.

The page sends its label ids raw (``application/octet-stream``: one uint8 id per pixel, row-major,
exactly H*W bytes), checked as strictly as a PNG's, so neither the browser nor the bridge spends time
on PNG coding of the label map; each render reports its phases (``RenderTimings``) for the
``Server-Timing`` header the page and the latency benchmark read.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from typing import Any, Optional

import cv2
import numpy as np

from .. import contract
from ..client import CityserveClient, ServerUnavailable
from ..errors import ConfigError, LabelError
from ..labels import LabelSet, check_ids, decode_image, get_label_set, label_image_to_ids, resize_nearest
from ..serving.codec import LabelPngDecoder, check_size, encode_rgb_png, png_check_inflated, png_header

ENSEMBLE = "label2photo"
RANDOM_LAYOUT = "random_layout"  # the layouts issue's seed -> street layout model, where served
_MODEL_NAME = re.compile(r"^label2photo(_[A-Za-z0-9_.-]{1,100})?$")


RAW_IDS = "application/octet-stream"  # the page's label map: uint8 ids, row-major, H*W bytes
PHOTO_FORMATS = {"png": "image/png", "jpeg": "image/jpeg"}  # photo answers: PNG (lossless), JPEG (live preview)
JPEG_QUALITY = 90


class TooLarge(LabelError):
    """An upload over the served model's byte or pixel limit (HTTP 413)."""


@dataclasses.dataclass
class RenderTimings:
    """Where one render's time went on the canvas server, in ms (the ``Server-Timing`` entries)."""

    check: float = 0.0  # decoding / checking the label map
    triton: float = 0.0  # the gRPC call: request, Triton's queue and render, the answer
    encode: float = 0.0  # the photo's PNG

    def header(self) -> str:
        return ", ".join(f"{k};dur={v:.1f}" for k, v in dataclasses.asdict(self).items())


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What the page needs of one served generator: names, size, label set, limits."""

    ensemble: str
    render: str
    decode: str
    label_set: LabelSet
    height: int
    width: int
    num_classes: int
    dtype: str
    max_pixels: int
    max_bytes: int
    z_dim: int

    def palette(self) -> list[dict[str, Any]]:
        """The classes a painter can use: ids the model has channels for whose color reads back as
        that id (of classes sharing a color only the lowest id is paintable, as decoding gives)."""
        out = []
        lookup = self.label_set.color_to_id()
        for c in self.label_set.classes:
            color = tuple(int(v) for v in c.color)
            if c.id < self.num_classes and lookup.get(color) == c.id:
                out.append(
                    {"id": c.id, "name": c.name, "color": list(color), "hex": "#{:02x}{:02x}{:02x}".format(*color)}
                )
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "model": self.ensemble,
            "render_model": self.render,
            "label_set": self.label_set.name,
            "height": self.height,
            "width": self.width,
            "num_classes": self.num_classes,
            "max_bytes": self.max_bytes,
            "max_pixels": self.max_pixels,
            "seeded": self.z_dim > 0,
            "classes": self.palette(),
        }


class TritonBridge:
    """Label PNGs -> photo PNGs through a Triton server's ``label2photo`` ensembles.

    ``label_set``: the label set of the served generator where the server names one that is not
    built in (a custom set's file); otherwise the set is the one the server's config names."""

    def __init__(self, url: str, timeout: float = 30.0, label_set: Optional[Any] = None):
        self.url = url
        self.timeout = float(timeout)
        self.client = self._new_client()
        self.label_set = None if label_set is None else get_label_set(label_set)
        self._infos: dict[str, ModelInfo] = {}
        self._decoders: dict[str, LabelPngDecoder] = {}
        self._lock = threading.Lock()

    def _new_client(self) -> CityserveClient:
        # a few quick retries, then "unavailable" at once: the page shows a lost server within a second,
        # while a slow render on a busy machine still has ``timeout`` s to answer
        return CityserveClient(self.url, timeout=self.timeout, retries=2, backoff=0.1, backoff_cap=0.3)

    def reconnect(self) -> None:
        """A fresh gRPC channel: one that lost its server backs off for up to minutes before it tries
        again, so the canvas would stay "lost" long after the server is back."""
        with self._lock:
            old, self.client = self.client, self._new_client()
        old.close()

    def close(self) -> None:
        self.client.close()

    # ---- what is served ------------------------------------------------------------------
    def known_info(self, model: str = ENSEMBLE) -> Optional[ModelInfo]:
        """``info(model)`` where it was read already (no server call: safe on the event loop), else None."""
        return self._infos.get(model)

    def info(self, model: str = ENSEMBLE) -> ModelInfo:
        """The served generator behind ensemble ``model`` (read from the server once, then kept)."""
        if not _MODEL_NAME.match(model or ""):
            raise ConfigError(f"model {model!r} is not a label2photo ensemble name (label2photo or label2photo_NAME)")
        with self._lock:
            if model not in self._infos:
                self._infos[model] = self._read_info(model)
            return self._infos[model]

    def _read_info(self, model: str) -> ModelInfo:
        suffix = model[len(ENSEMBLE) :]
        config = self.client.model_config(model)  # the label2photo model itself must be served
        render = f"render{suffix}"
        # an ensemble's decode step holds the decoder's parameters; the cpu target's fused label2photo
        # (one python model: decode + render + encode) holds the same parameters itself
        decode = f"decode_png{suffix}" if config.get("platform") == "ensemble" else model
        p = self.client.parameters(decode)
        name = p.get("label_set", "")
        label_set = self.label_set
        if label_set is None:
            try:
                label_set = get_label_set(name)
            except LabelError:
                raise ConfigError(
                    f"the server's model {decode!r} uses label set {name!r}, which is not built in; "
                    f"start the canvas with --label-set FILE (the set's JSON)"
                ) from None
        z = next((t for t in self.client.model_config(render)["input"] if t["name"] == contract.Z), None)
        return ModelInfo(
            ensemble=model,
            render=render,
            decode=decode,
            label_set=label_set,
            height=int(p["height"]),
            width=int(p["width"]),
            num_classes=int(p["num_classes"]),
            dtype=p.get("dtype", "uint8"),
            max_pixels=int(p["max_pixels"]),
            max_bytes=int(p["max_bytes"]),
            z_dim=int(z["dims"][-1]) if z else 0,
        )

    def ready(self) -> bool:
        if self.client.is_ready():
            return True
        self.reconnect()
        return self.client.is_ready()

    # ---- label maps ------------------------------------------------------------------------
    @staticmethod
    def check_limits(data: bytes, info: ModelInfo, what: str):
        """Byte and pixel limits (``TooLarge``), the PNG header and its inflated size, before decoding."""
        if len(data) > info.max_bytes:
            raise TooLarge(f"{what} is {len(data)} bytes, over the served model's maximum of {info.max_bytes}")
        header = png_header(data)
        try:
            check_size(header, info.max_pixels, what)
        except LabelError as e:
            raise TooLarge(str(e)) from None
        png_check_inflated(data, header)
        return header

    def decode(self, data: bytes, info: ModelInfo) -> np.ndarray:
        """A label PNG at the model's size -> ids [1, H, W], checked as the server's decode_png does."""
        self.check_limits(data, info, "label PNG")
        decoder = self._decoders.get(info.ensemble)
        if decoder is None:
            decoder = LabelPngDecoder(
                info.label_set,
                info.height,
                info.width,
                info.num_classes,
                np.dtype(info.dtype),
                max_pixels=info.max_pixels,
                max_bytes=info.max_bytes,
            )
            self._decoders[info.ensemble] = decoder
        return decoder.decode(data)

    @staticmethod
    def decode_raw(data: bytes, info: ModelInfo) -> np.ndarray:
        """Raw uint8 ids (row-major, exactly H*W bytes) -> ids [1, H, W], checked as a PNG's ids are."""
        if len(data) > info.max_bytes:
            raise TooLarge(f"label ids are {len(data)} bytes, over the served model's maximum of {info.max_bytes}")
        want = info.height * info.width
        if len(data) != want:
            raise LabelError(
                f"raw label ids ({RAW_IDS}) are {len(data)} bytes, but the model renders {info.height}x{info.width}:"
                f" one uint8 id per pixel, row-major, {want} bytes"
            )
        ids = np.frombuffer(data, np.uint8).reshape(info.height, info.width)
        check_ids(
            ids,
            info.num_classes,
            f"a model with {info.num_classes} label channels of label set {info.label_set.name!r}",
        )
        return ids.astype(np.dtype(info.dtype))[None]

    def fit_upload(self, data: bytes, info: ModelInfo, nearest: bool = False) -> tuple[np.ndarray, bool]:
        """An uploaded label PNG of any size (ids or colors; ``nearest`` snaps anti-aliased colors)
        -> (ids [H, W] at the model's size, resized?). Ids are resized nearest-neighbour, never blended."""
        self.check_limits(data, info, "uploaded label PNG")
        img, _ = decode_image(data, "uploaded label PNG")
        ids = label_image_to_ids(img, info.label_set, nearest, num_channels=info.num_classes)
        check_ids(ids, info.num_classes, f"model {info.ensemble!r}")
        resized = ids.shape != (info.height, info.width)
        if resized:
            ids = resize_nearest(ids, info.height, info.width)
        return np.asarray(ids), resized

    def colors_png(self, ids: np.ndarray, info: ModelInfo) -> bytes:
        """Ids [H, W] -> the palette-color PNG the page paints on (lossless)."""
        return encode_rgb_png(info.label_set.ids_to_colors(ids))

    # ---- photos ----------------------------------------------------------------------------
    def render(self, data: bytes, model: str = ENSEMBLE, seed: Optional[int] = None, raw: bool = False) -> bytes:
        """Label PNG bytes (``raw``: raw uint8 ids) -> photo PNG bytes; see ``render_timed``."""
        return self.render_timed(data, model, seed, raw)[0]

    def random_layout(self, seed: int) -> bytes:
        """A seed -> the label-id PNG of the street layout the served ``random_layout`` model draws for it
        (the same seed, the same layout: ``cityserve generate --seed``); ConfigError (404) where the server
        has no layout model."""
        client = self.client
        try:
            client.model_config(RANDOM_LAYOUT)
            feeds = {contract.SEED: np.array([[int(seed)]], dtype=np.int64)}
            out = client.infer(RANDOM_LAYOUT, feeds, outputs=[contract.LABELS_PNG])
        except ServerUnavailable:
            if client is self.client:
                self.reconnect()
            raise
        return bytes(out[contract.LABELS_PNG].reshape(-1)[0])

    def render_timed(
        self, data: bytes, model: str = ENSEMBLE, seed: Optional[int] = None, raw: bool = False, fmt: str = "png"
    ) -> tuple[bytes, str, RenderTimings]:
        """Label map -> (photo bytes, their media type, where the time went). A label PNG without a seed goes through
        the ``label2photo`` ensemble (PNG in, PNG out, whatever ``fmt``; the server draws the style
        latent); with a seed, and raw ids always (no PNG to send), the checked ids go to the raw
        ``render`` model with the latent drawn from the seed (one seed, one style; no seed: a fresh
        latent, as the ensemble's) and the photo is encoded here as ``fmt`` ("png" or "jpeg": a
        fraction of a PNG's time to encode and decode, for the live preview)."""
        if fmt not in PHOTO_FORMATS:
            raise LabelError(f"format must be one of {', '.join(PHOTO_FORMATS)}, not {fmt!r}")
        info = self.info(model)
        times = RenderTimings()
        t0 = time.perf_counter()
        ids = self.decode_raw(data, info) if raw else self.decode(data, info)
        t1 = time.perf_counter()
        times.check = (t1 - t0) * 1000
        client = self.client
        try:
            if not raw and (seed is None or not info.z_dim):
                photo = client.label2photo(data, model=info.ensemble)
                times.triton = (time.perf_counter() - t1) * 1000
                return photo, PHOTO_FORMATS["png"], times
            feeds = client.render_feeds(ids, seed=seed, model=info.render)
            image = client.infer(info.render, feeds, outputs=[contract.IMAGE])[contract.IMAGE]
        except ServerUnavailable:
            if client is self.client:
                self.reconnect()
            raise
        t2 = time.perf_counter()
        times.triton = (t2 - t1) * 1000
        photo = encode_rgb_png(image[0]) if fmt == "png" else encode_rgb_jpeg(image[0])
        times.encode = (time.perf_counter() - t2) * 1000
        return photo, PHOTO_FORMATS[fmt], times


def encode_rgb_jpeg(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """uint8 RGB [H, W, 3] -> JPEG bytes (the live preview; downloads stay PNG)."""
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise LabelError(f"cannot encode a photo of shape {tuple(image.shape)} as JPEG")
    return buf.tobytes()

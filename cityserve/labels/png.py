"""Label and instance PNGs in and out (OpenCV, which is BGR), and SPADE's instance-edge map.

A 1-channel PNG (8- or 16-bit) holds file values in the set's file convention; a 3/4-channel PNG holds
palette colors (alpha dropped). A file that does not decode is a ``LabelError`` naming the file, never
an OpenCV assertion or a None further down.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Union

import cv2
import numpy as np

from ..contract import label_dtype
from ..errors import LabelError
from ..files import atomic_write_bytes
from .builtin import LabelSetSpec, get_label_set
from .labelmap import check_ids

Source = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview]


def _read(src: Source, what: str) -> tuple[bytes, str]:
    if isinstance(src, (bytes, bytearray, memoryview)):
        return bytes(src), f"{what} (bytes)"
    p = Path(src)
    try:
        return p.read_bytes(), str(p)
    except OSError as e:
        raise LabelError(f"cannot read {what} {p}: {e.strerror or e}") from None


_JPEG_MAGIC = b"\xff\xd8\xff"


def decode_image(src: Source, what: str = "label map") -> tuple[np.ndarray, str]:
    """Decode a PNG (or anything OpenCV reads) unchanged: (array as stored, BGR order; its name)."""
    img, name, _ = _decode(src, what)
    return img, name


def to_rgb8(img: np.ndarray, what: str = "image") -> np.ndarray:
    """A photo as OpenCV decodes it (gray / BGR / BGRA, 8- or 16-bit) -> uint8 RGB [H, W, 3]."""
    if img.dtype == np.uint16:
        img = (img // 257).astype(np.uint8)  # 65535 -> 255, exactly
    if img.dtype != np.uint8:
        raise LabelError(f"{what} has pixel type {img.dtype}; expected 8- or 16-bit")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    if img.ndim == 3 and img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    raise LabelError(f"{what} has {img.shape[2] if img.ndim == 3 else img.ndim} channels; expected gray, RGB or RGBA")


def _decode(src: Source, what: str) -> tuple[np.ndarray, str, bytes]:
    data, name = _read(src, what)
    if not data:
        raise LabelError(f"{name}: empty file, not a PNG image")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        kind = "PNG" if data[:8] == b"\x89PNG\r\n\x1a\n" else "image"
        raise LabelError(f"{name}: not a readable {kind} ({len(data)} bytes; malformed or truncated)")
    return img, name, data


def label_image_to_ids(
    img: np.ndarray, label_set: LabelSetSpec, nearest: bool = False, num_channels: Optional[int] = None
) -> np.ndarray:
    """A decoded label image (as OpenCV stores it: [H, W] values or BGR(A) colors) -> ids [H, W].

    1-channel: file values in the set's convention (ADE20K 0 -> 150 etc.); with ``num_channels`` (a
    model's label channels) above the set's ids, in a set whose files hold the ids as they are
    (Cityscapes), ids the set lacks but the model has channels for are accepted as they are (official
    SPADE Cityscapes models: 35 channels for ids 0..33), as SPADE's loader does. 3/4-channel: palette
    colors, exactly, or snapped to the nearest palette color with ``nearest=True``. Ids come back uint8
    (int32 past 256 ids).
    """
    ls = get_label_set(label_set)
    if img.ndim == 2:  # ids are exact by nature: ``nearest`` does not apply
        if num_channels is not None and ls.file_convention == "identity" and num_channels > ls.num_ids:
            if img.dtype not in (np.uint8, np.uint16):
                raise LabelError(f"an id PNG is 8- or 16-bit, not {img.dtype}")
            check_ids(img, num_channels, f"a {int(num_channels)}-channel model of label set {ls.name!r}")
            return img.astype(label_dtype(num_channels))
        return ls.file_to_ids(img)
    if img.ndim == 3 and img.shape[2] in (3, 4):
        if img.dtype != np.uint8:
            raise LabelError(f"a {img.dtype.itemsize * 8}-bit color image is not a color label map (8-bit RGB)")
        return ls.colors_to_ids(img[..., 2::-1], nearest=nearest)  # BGR(A) -> RGB
    raise LabelError(f"unsupported image layout {img.shape} {img.dtype} (1-channel ids or 3/4-channel colors)")


def read_label_png(
    src: Source, label_set: LabelSetSpec, nearest: bool = False, num_channels: Optional[int] = None
) -> np.ndarray:
    """A label PNG (path or bytes) -> ids [H, W] of ``label_set`` (uint8, or int32 for > 256 ids); see
    ``label_image_to_ids`` for what the file may hold and what ``num_channels`` accepts."""
    label_set = get_label_set(label_set)
    img, name, data = _decode(src, "label map")
    try:
        if img.ndim == 2 and data.startswith(_JPEG_MAGIC):
            raise LabelError("a 1-channel JPEG cannot hold label ids (lossy); save id maps as PNG")
        return label_image_to_ids(img, label_set, nearest, num_channels)
    except LabelError as e:
        raise LabelError(f"{name}: {e}") from None


def read_photo(src: Source, what: str = "photo") -> np.ndarray:
    """Any image OpenCV reads (path or bytes) -> uint8 RGB [H, W, 3] (alpha dropped, gray expanded)."""
    img, name = decode_image(src, what)
    return to_rgb8(img, name)


def encode_png(arr: np.ndarray) -> bytes:
    """uint8/uint16 [H,W] or uint8 [H,W,3] RGB -> PNG bytes."""
    a = np.ascontiguousarray(arr)
    if a.ndim == 3:
        a = np.ascontiguousarray(a[..., ::-1])  # RGB -> BGR
    ok, buf = cv2.imencode(".png", a)
    if not ok:
        raise LabelError(f"cannot encode a {a.dtype} array of shape {a.shape} as PNG")
    return buf.tobytes()


def _write(path: Optional[Union[str, os.PathLike[str]]], data: bytes) -> bytes:
    if path is not None:
        atomic_write_bytes(path, data)
    return data


def write_color_png(path: Optional[Union[str, os.PathLike[str]]], ids: Any, label_set: LabelSetSpec) -> bytes:
    """ids [H,W] -> a color label PNG (palette colors) at ``path`` (None: only return the bytes)."""
    ls = get_label_set(label_set)
    return _write(path, encode_png(ls.ids_to_colors(ids)))


def write_id_png(path: Optional[Union[str, os.PathLike[str]]], ids: Any, label_set: LabelSetSpec) -> bytes:
    """ids [H,W] -> a 1-channel PNG of file values in the set's convention (16-bit where needed)."""
    ls = get_label_set(label_set)
    arr = np.asarray(ids)
    if arr.ndim != 2:
        raise LabelError(f"an id map to write must be [H, W], not shape {arr.shape}")
    return _write(path, encode_png(ls.ids_to_file(arr)))


def read_instance_png(src: Source) -> np.ndarray:
    """An instance PNG (Cityscapes ``*_instanceIds.png``: 16-bit, id*1000+k for instances, else the
    label id) -> int32 [H, W]."""
    img, name, data = _decode(src, "instance map")
    if data.startswith(_JPEG_MAGIC):
        raise LabelError(f"{name}: a JPEG cannot hold instance ids (lossy); save them as PNG")
    if img.ndim != 2 or img.dtype not in (np.uint8, np.uint16):
        raise LabelError(f"{name}: an instance map is a 1-channel 8/16-bit PNG, not {img.dtype} of shape {img.shape}")
    return img.astype(np.int32)


def instance_edges_np(instances: Any) -> np.ndarray:
    """SPADE's ``get_edges`` in NumPy: a pixel is an edge when any 4-neighbour has a different instance
    id (both sides of a boundary are marked). [..., H, W] -> uint8 {0, 1} of the same shape."""
    t = np.asarray(instances)
    if t.ndim < 2:
        raise LabelError(f"an instance map must be [..., H, W], not shape {t.shape}")
    edge = np.zeros(t.shape, dtype=bool)
    dx = t[..., :, 1:] != t[..., :, :-1]
    edge[..., :, 1:] |= dx
    edge[..., :, :-1] |= dx
    dy = t[..., 1:, :] != t[..., :-1, :]
    edge[..., 1:, :] |= dy
    edge[..., :-1, :] |= dy
    return edge.astype(np.uint8)

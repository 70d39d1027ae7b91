"""Resize, crop, flip and color jitter, applied identically to a photo, its label map and instance map.

Geometry is decided once per sample (one scale, one crop window, one flip) and then applied to all
three arrays, so a pixel's label always sits under the same photo pixel. Photos are resampled with
area averaging when shrinking and bilinear when enlarging; label and instance maps with nearest
neighbour at pixel centres, by ``cityserve.labels.labelmap``'s one rule (ids must never be blended: the
mean of "road" and "car" is not a class).
Color jitter touches only the photo.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import ConfigError
from ..labels.labelmap import nearest_indices


@dataclass
class Augment:
    """Training-time augmentation. ``Augment()`` is the usual setting; ``None`` means none at all.

    flip: mirror left-right with probability 0.5. brightness / contrast: maximum relative change,
    e.g. 0.2 draws a factor in [0.8, 1.2]. scale: extra zoom range before cropping (1.0 = the crop
    just covers the resized frame; (1.0, 1.25) zooms in by up to 25 %). random_crop: place the crop
    window at random instead of in the centre.
    """

    flip: bool = True
    brightness: float = 0.2
    contrast: float = 0.2
    scale: tuple[float, float] = (1.0, 1.0)
    random_crop: bool = True

    def __post_init__(self) -> None:
        lo, hi = self.scale
        if not (0 < lo <= hi):
            raise ConfigError(f"augment scale range must satisfy 0 < min <= max, got {self.scale}")
        if not (0 <= self.brightness < 1 and 0 <= self.contrast < 1):
            raise ConfigError(f"brightness/contrast jitter must be in [0, 1), got {self.brightness}/{self.contrast}")


def parse_size(size) -> tuple[int, int] | None:
    """(H, W) from (H, W), "480x960" (H x W), "2:1@480" (height 480, width 960) or "square@256"."""
    if size is None:
        return None
    if isinstance(size, str):
        s = size.strip().lower()
        try:
            if s.startswith("square@"):
                h = int(s.split("@", 1)[1])
                return h, h
            if "@" in s:
                ratio, h = s.split("@", 1)
                a, b = ratio.split(":")
                h = int(h)
                return h, int(round(h * float(a) / float(b)))
            h, w = s.split("x")
            return int(h), int(w)
        except ValueError:
            raise ConfigError(f"size {size!r} is not HxW (e.g. 480x960), 2:1@480 or square@256") from None
    h, w = (int(v) for v in size)
    if h <= 0 or w <= 0:
        raise ConfigError(f"size must be positive, got {h}x{w}")
    return h, w


def resize_photo(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area averaging when shrinking (no aliasing), bilinear when enlarging."""
    if img.shape[0] == height and img.shape[1] == width:
        return img
    shrink = height * width < img.shape[0] * img.shape[1]
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def cover_crop_box(
    h: int, w: int, size: tuple[int, int], zoom: float = 1.0, rng: np.random.Generator | None = None
) -> tuple[int, int, int, int]:
    """Scale (rh, rw) at which an h x w frame covers ``size`` (times ``zoom``), and the crop's (top, left).

    The aspect ratio is kept: a 4:3 frame cropped to 2:1 loses rows, not shape. ``rng`` None means a
    centred crop.
    """
    th, tw = size
    s = max(th / h, tw / w) * zoom
    rh, rw = max(th, int(round(h * s))), max(tw, int(round(w * s)))
    if rng is None:
        top, left = (rh - th) // 2, (rw - tw) // 2
    else:
        top = int(rng.integers(0, rh - th + 1))
        left = int(rng.integers(0, rw - tw + 1))
    return rh, rw, top, left


def resize_crop_photo(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to cover ``size`` and crop the centre: the 2:1 (or square) frame of a video still."""
    rh, rw, top, left = cover_crop_box(img.shape[0], img.shape[1], size)
    return resize_photo(img, rh, rw)[top : top + size[0], left : left + size[1]]


def apply(
    image: np.ndarray,
    labels: np.ndarray,
    instances: np.ndarray,
    size: tuple[int, int] | None,
    augment: Augment | None,
    rng: np.random.Generator | None = None,
    extra: tuple[np.ndarray, ...] = (),
) -> tuple[np.ndarray, ...]:
    """Geometric + color transform of one sample.

    image uint8 [H,W,3] RGB, labels int [H,W], instances int32 [H,W] (all the same H, W) ->
    image float32 [3,h,w] in [-1, 1], labels int64 [h,w], instances int32 [h,w], then each of ``extra``
    (per-pixel maps such as depth) resampled and flipped as the labels are.
    """
    if rng is None:
        rng = np.random.default_rng()
    h, w = labels.shape
    if size is not None:
        zoom = float(rng.uniform(*augment.scale)) if augment is not None else 1.0
        crop_rng = rng if augment is not None and augment.random_crop else None
        rh, rw, top, left = cover_crop_box(h, w, size, zoom, crop_rng)
        th, tw = size
        image = resize_photo(image, rh, rw)[top : top + th, left : left + tw]
        # Index only the rows/columns inside the crop window: same pixels as resize-then-crop.
        ys = nearest_indices(h, rh)[top : top + th]
        xs = nearest_indices(w, rw)[left : left + tw]
        labels = labels[ys][:, xs]
        instances = instances[ys][:, xs]
        extra = tuple(m[ys][:, xs] for m in extra)
    if augment is not None and augment.flip and rng.random() < 0.5:
        image, labels, instances = image[:, ::-1], labels[:, ::-1], instances[:, ::-1]
        extra = tuple(m[:, ::-1] for m in extra)
    photo = image.astype(np.float32)
    if augment is not None and (augment.brightness or augment.contrast):
        b = float(rng.uniform(1 - augment.brightness, 1 + augment.brightness))
        c = float(rng.uniform(1 - augment.contrast, 1 + augment.contrast))
        mean = float(photo.mean())
        photo = np.clip(((photo - mean) * c + mean) * b, 0.0, 255.0)
    photo = photo / 127.5 - 1.0
    return (
        np.ascontiguousarray(photo.transpose(2, 0, 1)),
        np.ascontiguousarray(labels, dtype=np.int64),
        np.ascontiguousarray(instances, dtype=np.int32),
        *(np.ascontiguousarray(m) for m in extra),
    )

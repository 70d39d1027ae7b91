"""Procedural textures and the camera pipeline of the synthetic photos.

Why these steps: a label->photo model should have to learn textures (asphalt grain, leaf clumps,
window grids), lighting (sun side vs shade, cast shadows), distance haze and sensor effects, not a
per-class color lookup. All randomness comes from the scene's ``np.random.Generator``.
"""

from __future__ import annotations

import cv2
import numpy as np


def value_noise(
    rng: np.random.Generator, h: int, w: int, cell: float, octaves: int = 3, persistence: float = 0.5
) -> np.ndarray:
    """Smooth fractal noise [h, w] float32, roughly zero-mean with unit-ish amplitude.

    Octave k upsamples a random grid of cell size ``cell / 2**k`` pixels with bicubic interpolation.
    """
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for k in range(octaves):
        c = max(cell / (2**k), 1.0)
        gh, gw = int(np.ceil(h / c)) + 2, int(np.ceil(w / c)) + 2
        grid = rng.standard_normal((gh, gw)).astype(np.float32)
        up = cv2.resize(grid, (int(round(gw * c)), int(round(gh * c))), interpolation=cv2.INTER_CUBIC)
        out += amp * up[:h, :w]
        total += amp
        amp *= persistence
    return out / total


def tile_lookup(tile: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Nearest-neighbour lookup of a periodic texture tile at continuous (row a, column b) coords."""
    th, tw = tile.shape[:2]
    return tile[np.floor(a).astype(np.int64) % th, np.floor(b).astype(np.int64) % tw]


def srgb_to_linear(c) -> np.ndarray:
    return np.power(np.asarray(c, np.float32) / 255.0, 2.2)


def jitter_color(rng: np.random.Generator, rgb, amount: float = 0.12) -> np.ndarray:
    """A base color (sRGB 0-255) with per-channel multiplicative jitter, as linear RGB."""
    return srgb_to_linear(rgb) * (1 + amount * rng.uniform(-1, 1, 3)).astype(np.float32)


def finish(
    rng: np.random.Generator,
    photo_lin: np.ndarray,
    depth: np.ndarray,
    sky_mask: np.ndarray,
    haze_color: np.ndarray,
    haze_dist: float,
    exposure: float,
) -> np.ndarray:
    """Linear radiance -> uint8 sRGB: aerial haze, exposure and tint, vignetting, blur, sensor noise."""
    H, W = depth.shape
    img = photo_lin
    # Aerial perspective: distant things fade towards the horizon color (sky already has it).
    a = (1.0 - np.exp(-depth / haze_dist)).astype(np.float32)
    a[sky_mask] = 0.0
    img = img * (1 - a[..., None]) + haze_color[None, None, :] * a[..., None]
    tint = (1 + rng.uniform(-0.05, 0.05, 3)).astype(np.float32)
    img = img * (exposure * tint)
    # Vignetting.
    yy = (np.arange(H, dtype=np.float32) - H / 2) / (H / 2)
    xx = (np.arange(W, dtype=np.float32) - W / 2) / (W / 2)
    r2 = xx[None, :] ** 2 * 0.75 + yy[:, None] ** 2 * 0.6
    img = img * (1 - rng.uniform(0.12, 0.3) * r2)[..., None]
    # Filmic-ish tone curve, then gamma.
    img = img / (1 + 0.25 * img)
    img = np.power(np.clip(img, 0, None) * 1.25, 1 / 2.2)
    sigma = rng.uniform(0.45, 0.8) * max(W / 512.0, 0.6)
    img = cv2.GaussianBlur(img, (0, 0), sigma)
    # Sensor noise: luminance + a little chroma, stronger in the dark.
    lum_noise = rng.standard_normal((H, W, 1)).astype(np.float32) * rng.uniform(0.008, 0.02)
    chroma = rng.standard_normal((H, W, 3)).astype(np.float32) * 0.006
    img = img + lum_noise * (1.4 - img.mean(2, keepdims=True)) + chroma
    return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)

"""Painted colors -> label ids for one palette: exact lookup, or the nearest palette color.

Exact mode: every color must be a palette color. Nearest mode is for anti-aliased brushes and JPEG
artifacts: each color snaps to the nearest palette color (squared RGB distance; ties go to the lower
id); then, in images ([..., H, W, 3]), pixels on blended edges (not an exact palette color, and not
inside a 3x3 patch of one class) take the nearest color among the classes found solidly within
``EDGE_RADIUS`` pixels. Without that second step a blend of two classes snaps to whatever third class's
color lies between them (road + car -> a thin line of 'trailer'); with it a JPEG-q90 Cityscapes map
comes back > 99% right (tests/test_labels.py). Colors shared by several ids read back as the lowest.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import LabelError
from .labelmap import as_int_array, count_values, describe_values

NEAREST_CHUNK = 16384  # unique colors per distance block in nearest mode (x palette size int32s)
EDGE_RADIUS = 4  # nearest mode: how far a blended edge pixel looks for solid classes


def pack(rgb: np.ndarray) -> np.ndarray:
    """[...,3] uint8-range colors -> [...] int32 keys 0xRRGGBB (one comparison per pixel, not three)."""
    rgb = rgb.astype(np.int32, copy=False)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def unpack(key: int) -> tuple[int, int, int]:
    key = int(key)
    return (key >> 16) & 255, (key >> 8) & 255, key & 255


class PaletteIndex:
    """The lookup tables of one palette (uint8 [num_ids, 3], id order) of label set ``name``."""

    def __init__(self, palette: np.ndarray, name: str, id_dtype: np.dtype):
        self.palette = np.asarray(palette)
        self.name = name
        self.id_dtype = np.dtype(id_dtype)
        keys = pack(self.palette)
        canon: dict[int, int] = {}
        for i, k in enumerate(keys.tolist()):
            canon.setdefault(k, i)  # lowest id wins
        by_id = sorted(canon.items(), key=lambda kv: kv[1])
        self.keys = np.array(sorted(canon), dtype=np.int32)  # sorted unique keys
        self.ids = np.array([canon[k] for k in self.keys.tolist()], dtype=np.int64)  # their canonical ids
        self.colors = np.array([unpack(k) for k, _ in by_id], dtype=np.int32)  # unique colors in id order
        self.color_ids = np.array([i for _, i in by_id], dtype=np.int64)  # their ids

    def color_to_id(self) -> dict[tuple[int, int, int], int]:
        """The canonical id of each palette color (the lowest id where colors are shared)."""
        return {unpack(k): int(i) for k, i in zip(self.keys.tolist(), self.ids.tolist())}

    def to_ids(self, rgb: Any, nearest: bool = False) -> np.ndarray:
        """RGB [..., 3] (or RGBA, alpha dropped) -> ids [...], exactly or by nearest color (module docstring)."""
        arr = np.asarray(rgb)
        if arr.ndim < 1 or arr.shape[-1] not in (3, 4):
            raise LabelError(f"a color label map must have 3 (RGB) or 4 (RGBA) channels last, not shape {arr.shape}")
        arr = as_int_array(arr[..., :3], "a color label map")
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise LabelError(f"color values must be 0..255, found {arr.min()}..{arr.max()}")
        if arr.size == 0:
            return np.zeros(arr.shape[:-1], dtype=self.id_dtype)
        keys = pack(arr)
        skeys, sids, ucolors, uids = self.keys, self.ids, self.colors, self.color_ids
        if nearest:
            # the distinct colors, via a 2^24 presence table (much faster than np.unique's argsort)
            present = np.zeros(1 << 24, dtype=bool)
            present[keys.reshape(-1)] = True
            uniq = np.flatnonzero(present).astype(np.int32)
            colors = np.stack([(uniq >> 16) & 255, (uniq >> 8) & 255, uniq & 255], axis=-1).astype(np.int32)
            best = np.empty(len(uniq), dtype=np.int64)
            exact = np.empty(len(uniq), dtype=bool)
            for s in range(0, len(uniq), NEAREST_CHUNK):
                block = colors[s : s + NEAREST_CHUNK]
                d = ((block[:, None, :] - ucolors[None, :, :]) ** 2).sum(-1)
                j = d.argmin(1)
                best[s : s + NEAREST_CHUNK] = uids[j]
                exact[s : s + NEAREST_CHUNK] = d[np.arange(len(j)), j] == 0
            table = np.empty(1 << 24, dtype=np.int32)  # color key -> index into uniq (pages touched lazily)
            table[uniq] = np.arange(len(uniq), dtype=np.int32)
            inverse = table[keys]
            ids = best[inverse]
            if ids.ndim >= 2:
                exact_px = exact[inverse]
                flat_rgb = arr.reshape((-1,) + arr.shape[-3:])
                flat_ids, flat_exact = ids.reshape((-1,) + ids.shape[-2:]), exact_px.reshape((-1,) + ids.shape[-2:])
                ids = np.stack([self._snap_edges(r, i, e) for r, i, e in zip(flat_rgb, flat_ids, flat_exact)])
                ids = ids.reshape(keys.shape)
            return ids.astype(self.id_dtype)
        idx = np.searchsorted(skeys, keys).clip(0, len(skeys) - 1)
        found = skeys[idx] == keys
        if not found.all():
            top, more = count_values(keys[~found])
            shown = [(unpack(k), n) for k, n in top]
            gray = all(r == g == b for (r, g, b), _ in shown)
            hint = (
                "an id map saved as RGB? read it as a 1-channel PNG"
                if gray
                else "use nearest=True to snap anti-aliased or JPEG colors to the palette"
            )
            raise LabelError(
                f"{describe_values('color', shown, more)} not in label set {self.name!r} ({len(self.palette)} classes; {hint})"
            )
        return sids[idx].astype(self.id_dtype)

    def _snap_edges(self, rgb: np.ndarray, ids: np.ndarray, exact: np.ndarray) -> np.ndarray:
        """Second step of nearest mode for one [H, W] image (see the module docstring)."""
        h, w = ids.shape
        pad = np.pad(ids, 1, mode="edge")
        solid = exact.copy()
        uniform = np.ones_like(exact)
        for dy in range(3):
            for dx in range(3):
                uniform &= pad[dy : dy + h, dx : dx + w] == ids
        solid |= uniform
        unsure = np.flatnonzero(~solid)
        if unsure.size == 0:
            return ids
        r = EDGE_RADIUS
        known = np.pad(np.where(solid, ids, -1), r, constant_values=-1)
        ys, xs = np.divmod(unsure, w)
        px = rgb.reshape(-1, 3)[unsure].astype(np.int64)
        palette = self.palette.astype(np.int64)
        best_d = np.full(unsure.size, np.iinfo(np.int64).max)
        out = ids.reshape(-1).copy()
        best_l = out[unsure]
        for dy in range(2 * r + 1):
            for dx in range(2 * r + 1):
                lab = known[ys + dy, xs + dx]
                d = np.where(lab >= 0, ((px - palette[np.maximum(lab, 0)]) ** 2).sum(-1), np.iinfo(np.int64).max)
                better = d < best_d
                best_d[better] = d[better]
                best_l[better] = lab[better]
        out[unsure] = best_l
        return out.reshape(h, w)

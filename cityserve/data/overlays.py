"""Burned-in captions and pasted overlays in video frames: what the dataset builder drops besides blur.

Subtitles, timestamps, station names, channel logos and banners are not street; a segmenter would label
them as something, and a generator trained on them learns to paint text. Both detectors work on the
frame as it will be stored (e.g. 480x960), with sizes relative to its height.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


def grey(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


@dataclass
class OverlayParams:
    """Thresholds of the caption / overlay detector (see ``caption_glyphs``, ``overlay_box_fraction``).

    band: fraction of the height at the top and at the bottom searched for captions. stroke_contrast:
    grey levels by which a text stroke must stand out of its surroundings (white or black top-hat).
    min_glyphs: glyph-like blobs on one line that make a caption. glyph_height: glyph height range as a
    fraction of the frame height. max_fill: glyphs whose top-hat blob fills more of their box than this
    are solid shapes (windows, lamps), not letters. min_width_cv: letters vary in width; a row of
    identical blobs (windows, fence posts) does not. box_min_fraction: a flat, saturated, rectangular
    region at least this fraction of the frame, with a crisp rim, is an overlay (banner, logo plate).
    """

    band: float = 0.3
    stroke_contrast: float = 60.0
    min_glyphs: int = 5
    glyph_height: tuple[float, float] = (0.015, 0.15)
    max_fill: float = 0.85
    min_width_cv: float = 0.12
    box_min_fraction: float = 0.02
    box_max_std: float = 2.0
    box_min_saturation: float = 60.0
    box_min_rectangularity: float = 0.95
    box_min_rim_contrast: float = 25.0


@dataclass
class _Glyph:
    x: int
    y: int
    w: int
    h: int

    @property
    def cy(self) -> float:
        return self.y + self.h / 2


def _stroke_masks(g: np.ndarray, contrast: float, stroke_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Thin strokes brighter / darker than their surroundings by ``contrast`` (white / black top-hat).

    The two polarities stay apart: outlined captions (white letters, black rim) would otherwise fuse
    letters into word blobs through their rims.
    """
    k = 2 * max(2, stroke_px) + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))
    white = cv2.morphologyEx(g, cv2.MORPH_TOPHAT, kernel)
    black = cv2.morphologyEx(g, cv2.MORPH_BLACKHAT, kernel)
    return (white >= contrast).astype(np.uint8), (black >= contrast).astype(np.uint8)


def _glyphs(mask: np.ndarray, height: int, p: OverlayParams) -> list[_Glyph]:
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    lo, hi = max(4, p.glyph_height[0] * height), p.glyph_height[1] * height
    out = []
    for x, y, w, h, area in stats[1:]:
        if not (lo <= h <= hi) or w > 4 * h or w < 1:
            continue
        fill = area / float(w * h)
        if fill > p.max_fill or fill < 0.08:
            continue
        out.append(_Glyph(int(x), int(y), int(w), int(h)))
    return out


def _longest_line(glyphs: list[_Glyph], p: OverlayParams) -> int:
    """Most glyphs chained left-to-right on one text line (aligned centres, similar heights, small gaps)
    whose widths vary like letters do."""
    glyphs = sorted(glyphs, key=lambda g: g.x)
    best = 0
    used = [False] * len(glyphs)
    for i, g0 in enumerate(glyphs):
        if used[i]:
            continue
        line = [g0]
        last = g0
        for j in range(i + 1, len(glyphs)):
            g = glyphs[j]
            hmax = max(g.h, last.h)
            if (
                abs(g.cy - last.cy) <= 0.5 * hmax
                and max(g.h, last.h) <= 2.0 * min(g.h, last.h)
                and g.x - (last.x + last.w) <= 1.5 * hmax
            ):
                line.append(g)
                used[j] = True
                last = g
        if len(line) >= 2:
            widths = np.array([g.w for g in line], np.float64)
            if widths.std() / widths.mean() < p.min_width_cv:
                continue
        best = max(best, len(line))
    return best


def caption_glyphs(rgb: np.ndarray, params: OverlayParams | None = None) -> int:
    """Glyphs on the longest text line in the top or bottom band of the frame (0 for a clean frame).

    Burned-in captions, timestamps and station names are rows of thin, high-contrast strokes (light
    text with a dark outline, or the reverse) near the top or bottom edge. Strokes are found with a
    white and a black morphological top-hat (kernel about 2.5 % of the frame height, so structures
    thinner than that and ``stroke_contrast`` grey levels off their surroundings survive); their
    connected components that are letter-sized and not solid become glyphs; glyphs chained on one line
    with letter-like spacing and varied widths are counted. ``params.min_glyphs`` or more is a caption.
    """
    p = params or OverlayParams()
    g = grey(rgb)
    h = g.shape[0]
    band = max(8, int(round(p.band * h)))
    stroke = max(2, int(round(0.0125 * h)))
    best = 0
    for part in (g[:band], g[h - band :]):
        for mask in _stroke_masks(part, p.stroke_contrast, stroke):
            best = max(best, _longest_line(_glyphs(mask, h, p), p))
    return best


def overlay_box_fraction(rgb: np.ndarray, params: OverlayParams | None = None) -> float:
    """Area fraction (of the frame) of the largest flat, saturated, rectangular region.

    Camera images are never perfectly flat over a large area (sensor noise, shading), and natural
    regions are not axis-aligned rectangles; a banner, logo plate or colored bar pasted on the video
    is both. A pixel is flat when the grey standard deviation of its 5x5 neighbourhood is below
    ``box_max_std``; flat pixels with HSV saturation above ``box_min_saturation`` form components, and a
    component filling at least ``box_min_rectangularity`` of its bounding box, whose surroundings just
    outside each side differ from its color by at least ``box_min_rim_contrast`` in some RGB channel
    (median over each side), counts.
    """
    p = params or OverlayParams()
    g = grey(rgb).astype(np.float32)
    mean = cv2.blur(g, (5, 5))
    var = np.maximum(cv2.blur(g * g, (5, 5)) - mean * mean, 0)
    sat = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[..., 1]
    mask = ((var < p.box_max_std**2) & (sat >= p.box_min_saturation)).astype(np.uint8)
    n, comp, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
    best = 0.0
    total = float(g.shape[0] * g.shape[1])
    for i, (x, y, w, h, area) in enumerate(stats[1:], start=1):
        if area / total < p.box_min_fraction or area < 0.5 * w * h:
            continue
        # The 5x5 window eats ~2 px of each side of a flat box: measure against the shrunk box.
        inner = max(1, (w - 4)) * max(1, (h - 4))
        if area / float(inner) < p.box_min_rectangularity:
            continue
        # A pasted box has a crisp rim on every side: 2-5 px outside it the picture is different. A
        # flat patch of a blurred frame (or of sky) fades into its surroundings on some side.
        if _crisp_sides(rgb, comp == i, (x, y, w, h), p.box_min_rim_contrast):
            best = max(best, area / total)
    return best


def _crisp_sides(rgb: np.ndarray, mask: np.ndarray, box: tuple, contrast: float) -> bool:
    """Whether each side of the flat region ``mask`` (bounding box ``box``) that lies inside the frame
    has a strip 4-7 px outside it whose colors differ from the region's mean by >= ``contrast``
    (median of the largest per-channel difference)."""
    x, y, w, h = (int(v) for v in box)
    H, W = mask.shape
    mean = rgb[mask].astype(np.float32).mean(0)
    strips = [
        rgb[max(0, y - 7) : y - 3, x : x + w],
        rgb[y + h + 3 : y + h + 7, x : x + w],
        rgb[y : y + h, max(0, x - 7) : x - 3],
        rgb[y : y + h, x + w + 3 : x + w + 7],
    ]
    inside = [y - 3 > 0, y + h + 3 < H, x - 3 > 0, x + w + 3 < W]
    seen = 0
    for strip, ok in zip(strips, inside):
        if not ok or strip.size == 0:
            continue
        seen += 1
        diff = np.abs(strip.reshape(-1, 3).astype(np.float32) - mean).max(-1)
        if float(np.median(diff)) < contrast:
            return False
    return seen > 0

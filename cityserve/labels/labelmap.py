"""Label-map arrays: the one id-range check, the one nearest-neighbour resize, and batch shaping.

Every part that holds label ids (data loading, the Renderer, the server's decode / prepare models, the
client, evaluation, the CLI) checks and resizes them with these functions, so the same label map gives
the same ids everywhere. Ids are never blended: a resize picks, for each output pixel, the input pixel
under its centre (source index ``floor((i + 0.5) * src / dst)``, computed in integers: PIL's NEAREST,
torch's ``nearest-exact``). For integer enlargements that is the same as ``floor(i * src / dst)``.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..errors import LabelError


# ---- naming bad values --------------------------------------------------------------------------------
def count_values(bad: np.ndarray, limit: int = 3) -> tuple[list[tuple[Any, int]], int]:
    """The ``limit`` most frequent values of ``bad`` with their counts, and how many other values."""
    values, counts = np.unique(bad, return_counts=True)
    order = np.lexsort((values, -counts))  # most pixels first, then the smaller value
    top = [(values[i].item(), int(counts[i])) for i in order[:limit]]
    return top, max(0, len(values) - limit)


def pixels(n: int) -> str:
    return f"{n} pixel" + ("" if n == 1 else "s")


def describe_values(kind: str, top: list[tuple[Any, int]], more: int) -> str:
    """'color (1, 2, 3) at 5 pixels is' / 'ids 34 at 3 pixels, -1 at 1 pixel and 2 more are'."""
    parts = [f"{value} at {pixels(n)}" for value, n in top]
    text = f"{kind}{'s' if len(parts) > 1 or more else ''} " + ", ".join(parts)
    if more:
        text += f" and {more} more"
    verb = "are" if len(parts) > 1 or more else "is"
    return f"{text} {verb}"


def as_int_array(a: Any, what: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise LabelError(f"{what} must be an integer array, not {arr.dtype}")
    return arr


# ---- the id-range check -------------------------------------------------------------------------------
def check_ids(ids: Any, num_classes: int, scope: str = "", what: str = "label ids") -> np.ndarray:
    """``ids`` as an array, after checking every value is in 0..num_classes-1; else a LabelError naming
    the offending ids, their pixel counts and ``scope`` (default: "a model with N label channels")."""
    arr = as_int_array(ids, what)
    limit = int(num_classes)
    if arr.size and (arr.min() < 0 or arr.max() >= limit):
        top, more = count_values(arr[(arr < 0) | (arr >= limit)])
        scope = scope or f"a model with {limit} label channels"
        raise LabelError(f"{describe_values('id', top, more)} out of range for {scope} (ids 0..{limit - 1})")
    return arr


# ---- nearest-neighbour resizing ------------------------------------------------------------------------
def nearest_indices(src: int, dst: int) -> np.ndarray:
    """The source index of each of ``dst`` output pixels: the input pixel under the output pixel's centre."""
    if src < 1 or dst < 1:
        raise LabelError(f"cannot resize a label map from {src} to {dst} pixels")
    return ((2 * np.arange(dst, dtype=np.int64) + 1) * src) // (2 * dst)


def resize_nearest(ids: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of id maps [..., h, w] -> [..., height, width] (any dtype, ids kept)."""
    ids = np.asarray(ids)
    h, w = ids.shape[-2:]
    if (h, w) == (height, width):
        return ids
    rows, cols = nearest_indices(h, height), nearest_indices(w, width)
    return ids[..., rows[:, None], cols[None, :]]


def fit_nearest(
    labels: np.ndarray, height: int, width: int, instances: Optional[np.ndarray] = None
) -> tuple[np.ndarray, Optional[np.ndarray], bool]:
    """A label map (and its instance map) of another size but the same aspect ratio, nearest-resized to
    ``height`` x ``width``: (labels, instances, resized?). Another aspect ratio is refused, not distorted."""
    lh, lw = labels.shape[-2:]
    if (lh, lw) == (height, width):
        return labels, instances, False
    if lh * width != lw * height:
        raise LabelError(
            f"label map is {lh}x{lw} but the model renders {height}x{width} (HxW), another aspect ratio: "
            f"crop it to {height}:{width} first (same-aspect maps are resized with nearest neighbour)"
        )
    if instances is not None:
        instances = resize_nearest(instances, height, width)
    return resize_nearest(labels, height, width), instances, True


# ---- batch shaping -------------------------------------------------------------------------------------
def as_batch(a: Any, what: str = "label ids") -> np.ndarray:
    """[H,W], [B,H,W] or [B,1,H,W] -> [B,1,H,W] (the contract's layout); a LabelError for other shapes."""
    a = np.asarray(a)
    if a.ndim == 2:
        a = a[None, None]
    elif a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4 or a.shape[1] != 1:
        raise LabelError(f"{what} must be [H,W], [B,H,W] or [B,1,H,W]; got shape {tuple(np.shape(a))}")
    return a

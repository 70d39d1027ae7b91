"""Generated layouts -> clean label maps SPADE can render: ids, no specks, instance maps.

An unconditional layout GAN gives per-class logits (``logits_to_ids``: argmax) or, as in Aharoni and
Israelov's paper, an RGB image whose colors are near the palette (``colors_to_ids``: the label set's
nearest-color lookup, ``LabelSet.colors_to_ids(nearest=True)``). Either leaves specks: components of a
few pixels that no street has; ``remove_specks`` gives each pixel of a component under ``min_area`` the
id of the nearest pixel that stays (OpenCV's connected components and distance transform). SPADE also
takes instance edges: ``instance_map`` numbers the connected components of each "thing" class (the label
set's ``has_instances`` classes) in Cityscapes' convention (``id * 1000 + k``; stuff pixels hold their id).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from ..errors import LabelError
from .builtin import LabelSetSpec, get_label_set
from .labelmap import check_ids

INSTANCE_FACTOR = 1000  # Cityscapes' instance ids: class id * 1000 + instance index


def logits_to_ids(logits: Any, num_classes: int | None = None) -> np.ndarray:
    """Per-class scores [C, H, W] or [B, C, H, W] -> ids [H, W] / [B, H, W] by argmax (uint8 when C <= 256)."""
    a = np.asarray(logits)
    if a.ndim not in (3, 4):
        raise LabelError(f"layout logits must be [C,H,W] or [B,C,H,W], not shape {a.shape}")
    c = a.shape[-3]
    if num_classes is not None and c != num_classes:
        raise LabelError(f"layout logits have {c} classes but the label set has {num_classes}")
    if not np.issubdtype(a.dtype, np.floating) or not np.isfinite(a).all():
        raise LabelError("layout logits must be finite floating-point scores")
    ids = a.argmax(axis=-3)
    return ids.astype(np.uint8 if c <= 256 else np.int32)


def colors_to_ids(rgb: Any, label_set: LabelSetSpec = "cityscapes") -> np.ndarray:
    """An RGB palette image [H, W, 3] -> ids by the nearest palette color (blended edges from solid neighbours)."""
    return get_label_set(label_set).colors_to_ids(rgb, nearest=True)


def _components(mask: np.ndarray, connectivity: int) -> tuple[int, np.ndarray, np.ndarray]:
    n, comp, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=connectivity)
    return n, comp, stats[:, cv2.CC_STAT_AREA]


def _check_map(ids: Any, connectivity: int) -> np.ndarray:
    arr = np.asarray(ids)
    if arr.ndim != 2:
        raise LabelError(f"a label map must be [H, W], not shape {arr.shape}")
    if connectivity not in (4, 8):
        raise LabelError(f"connectivity must be 4 or 8, not {connectivity}")
    return check_ids(arr, int(arr.max()) + 1 if arr.size else 1)


def remove_specks(ids: Any, min_area: int, connectivity: int = 4) -> np.ndarray:
    """``ids`` [H, W] where every connected component (per class) smaller than ``min_area`` pixels is
    merged into its surroundings: each of its pixels takes the id of the nearest pixel of a component that
    stays (Euclidean distance). When no component reaches ``min_area`` the largest one stays."""
    arr = _check_map(ids, connectivity)
    if min_area <= 1 or arr.size == 0:
        return arr.copy()
    keep = np.zeros(arr.shape, dtype=bool)
    best = (0, None)
    for c in np.unique(arr).tolist():
        n, comp, area = _components(arr == c, connectivity)
        big = np.flatnonzero(area[1:] >= min_area) + 1
        keep |= np.isin(comp, big)
        if n > 1 and area[1:].max() > best[0]:
            best = (int(area[1:].max()), (comp, int(area[1:].argmax()) + 1))
    if not keep.any():
        comp, k = best[1]
        keep = comp == k
    if keep.all():
        return arr.copy()
    # distance from each speck pixel to the nearest kept pixel, labelled by that kept pixel
    _, nearest = cv2.distanceTransformWithLabels(
        (~keep).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE, labelType=cv2.DIST_LABEL_PIXEL
    )
    lut = np.zeros(int(nearest.max()) + 1, dtype=arr.dtype)
    lut[nearest[keep]] = arr[keep]  # a kept pixel carries its own label: label -> that pixel's id
    out = arr.copy()
    out[~keep] = lut[nearest[~keep]]
    return out


def instance_map(ids: Any, label_set: LabelSetSpec = "cityscapes", connectivity: int = 8) -> np.ndarray:
    """int32 instance ids [H, W]: each connected component of a thing class (``has_instances``) gets
    ``id * 1000 + k`` (k = 0, 1, ... in scan order); every other pixel holds its class id."""
    ls = get_label_set(label_set)
    arr = ls.check_ids(np.asarray(ids))
    if arr.ndim != 2:
        raise LabelError(f"a label map must be [H, W], not shape {arr.shape}")
    if connectivity not in (4, 8):
        raise LabelError(f"connectivity must be 4 or 8, not {connectivity}")
    out = arr.astype(np.int32)
    for c in np.unique(arr).tolist():
        if not ls.classes[c].has_instances:
            continue
        n, comp, _ = _components(arr == c, connectivity)
        if n - 1 > INSTANCE_FACTOR:
            raise LabelError(f"class {c} '{ls.classes[c].name}' has {n - 1} components, more than {INSTANCE_FACTOR}")
        mask = comp > 0
        out[mask] = c * INSTANCE_FACTOR + comp[mask] - 1
    return out


def count_instances(instances: np.ndarray, label_set: LabelSetSpec = "cityscapes") -> dict[int, int]:
    """{thing class id: instances} of an ``instance_map``."""
    ls = get_label_set(label_set)
    vals = np.unique(instances[instances >= INSTANCE_FACTOR])
    counts: dict[int, int] = {}
    for v in (vals // INSTANCE_FACTOR).tolist():
        if 0 <= v < ls.num_ids:
            counts[v] = counts.get(v, 0) + 1
    return counts

"""What the served ``random_layout`` model does around the layout graph, outside Triton so it can be tested.

Before the graph: each request item's SEED (int64) becomes z exactly as ``cityserve generate`` draws it
(``models.layout_sample.seed_latents``: torch's CPU generator, so a seed names the same layout
everywhere) and its TRUNCATION (or the card's) becomes the graph's psi; a negative seed or a psi outside
0..2 is refused with a message naming it. After the graph (argmax ids): specks under ``min_area``
merged, the instance map of the thing classes' connected components, and the id / color PNGs, as
``cityserve generate`` writes them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

import numpy as np

from .. import contract
from ..errors import ConfigError
from ..labels import get_label_set
from ..labels.snapping import instance_map, remove_specks
from .codec import LabelPngEncoder

MAX_SEED = 2**63 - 1


def check_seed(value: Any) -> int:
    seed = int(value)
    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"{contract.SEED} must be 0..2^63-1, not {seed}")
    return seed


def check_truncation(value: Any) -> float:
    psi = float(value)
    if not math.isfinite(psi) or not 0.0 <= psi <= 2.0:
        raise ConfigError(f"{contract.TRUNCATION} must be 0..2, not {psi}")
    return psi


@dataclasses.dataclass
class LayoutSampler:
    """Seeds -> (z, psi) for the layout graph; the graph's ids -> the served outputs."""

    z_dim: int
    label_set: Any
    truncation_psi: float = 1.0
    min_area: int = 0
    connectivity: int = 8
    compression: int = 1

    def __post_init__(self) -> None:
        self.label_set = get_label_set(self.label_set)
        self.encoder = LabelPngEncoder(self.label_set, self.compression)

    def latents(self, seeds: np.ndarray, truncation: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
        """float32 z [B, z_dim] and psi [B, 1] for SEED [B, 1] (and TRUNCATION [B, 1])."""
        from ..models.layout_sample import seed_latents

        flat = np.asarray(seeds).reshape(-1)
        if flat.size == 0:
            raise ConfigError(f"{contract.SEED} is empty")
        checked = [check_seed(s) for s in flat.tolist()]
        if truncation is None:
            psi = [self.truncation_psi] * len(checked)
        else:
            t = np.asarray(truncation, dtype=np.float64).reshape(-1)
            if t.size != len(checked):
                raise ConfigError(f"{contract.TRUNCATION} has {t.size} values for {len(checked)} seeds")
            psi = [check_truncation(v) for v in t.tolist()]
        z = seed_latents(checked, self.z_dim).numpy().astype(np.float32)
        return z, np.asarray(psi, dtype=np.float32).reshape(-1, 1)

    def finish(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        """The graph's ids [B, 1, H, W] -> LAYOUT_IDS, INSTANCE_IDS, LABELS_PNG, COLOR_PNG (batched)."""
        ids = np.asarray(ids)
        if ids.ndim != 4 or ids.shape[1] != 1:
            raise ConfigError(f"the layout graph gave ids of shape {ids.shape}, not [B, 1, H, W]")
        out: dict[str, list] = {k: [] for k in (contract.LAYOUT_IDS, contract.INSTANCE_IDS, "png", "color")}
        for item in ids[:, 0]:
            snapped = remove_specks(self.label_set.check_ids(item), self.min_area)
            id_png, color_png = self.encoder.encode(snapped)
            out[contract.LAYOUT_IDS].append(snapped.astype(np.uint8)[None])
            out[contract.INSTANCE_IDS].append(
                instance_map(snapped, self.label_set, self.connectivity).astype(np.int32)[None]
            )
            out["png"].append([id_png])
            out["color"].append([color_png])
        return {
            contract.LAYOUT_IDS: np.stack(out[contract.LAYOUT_IDS]),
            contract.INSTANCE_IDS: np.stack(out[contract.INSTANCE_IDS]),
            contract.LABELS_PNG: np.array(out["png"], dtype=np.object_),
            contract.COLOR_PNG: np.array(out["color"], dtype=np.object_),
        }

"""Labelled scenes to evaluate on: held-out synthetic seeds, or the split of a dataset folder.

``cityserve eval`` scores models on either. Both yield ``EvalScene``s: a uint8 RGB photo with its label
ids (of the source's label set) and instance ids, at the file's resolution or resized to a model's
(photos area-averaged, ids nearest; the aspect ratio is not kept, as SPADE's test resizes Cityscapes
and ADE20K to the model's fixed size).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..labels.labelmap import resize_nearest
from .transforms import resize_photo

DATA_KINDS = ("cityscapes", "ade20k", "coco-stuff", "paired")


@dataclass
class EvalScene:
    name: str
    photo: np.ndarray  # uint8 [H,W,3] RGB
    labels: np.ndarray  # label ids [H,W]
    instances: np.ndarray  # int32 [H,W]
    depth: Optional[np.ndarray] = None  # float32 [H,W] metres, where the source has it (synthetic scenes)

    def resized(self, size: Optional[tuple[int, int]]) -> EvalScene:
        if size is None or tuple(size) == self.labels.shape:
            return self
        h, w = size
        return EvalScene(
            self.name,
            resize_photo(self.photo, h, w),
            resize_nearest(self.labels, h, w),
            resize_nearest(self.instances, h, w),
            None if self.depth is None else resize_nearest(self.depth, h, w),
        )


class SceneSource:
    """Where scenes come from; ``scenes(size)`` yields them, ``describe()`` says what they are."""

    label_set: Any

    def __len__(self) -> int:
        raise NotImplementedError

    def scenes(self, size: Optional[tuple[int, int]] = None) -> Iterator[EvalScene]:
        raise NotImplementedError

    def describe(self) -> dict:
        raise NotImplementedError


class SyntheticScenes(SceneSource):
    """Procedural scenes by seed, drawn at the size asked (the demo models train on seeds < 10000)."""

    def __init__(self, seeds: Sequence[int], default_size: tuple[int, int] = (256, 512)):
        from ..labels import get_label_set

        self.seeds = [int(s) for s in seeds]
        self.default_size = default_size
        self.label_set = get_label_set("cityscapes")

    def __len__(self) -> int:
        return len(self.seeds)

    def scenes(self, size: Optional[tuple[int, int]] = None) -> Iterator[EvalScene]:
        from .synthetic import generate_scene

        h, w = size or self.default_size
        for seed in self.seeds:
            s = generate_scene(seed, h, w)
            yield EvalScene(f"seed {seed}", s.photo, s.labels, s.instances, s.depth)

    def seed_of(self, i: int) -> int:
        return self.seeds[i]

    def describe(self) -> dict:
        s = self.seeds
        contiguous = s == list(range(min(s), max(s) + 1))
        return {"data": "synthetic", "seeds": f"{min(s)}-{max(s)}" if contiguous else s, "n_images": len(s)}


class FolderScenes(SceneSource):
    """A split of a dataset tree in one of the layouts ``cityserve.data.datasets`` reads, validated up
    front (a broken tree fails before any model runs)."""

    def __init__(self, kind: str, root: str | Path, split: str = "val", label_set=None):
        from .datasets import build_dataset

        self.kind, self.root, self.split = kind, Path(root), split
        self.dataset = build_dataset(kind, root, label_set=label_set, size=None, split=split, validate=True)
        self.label_set = self.dataset.label_set

    def __len__(self) -> int:
        return len(self.dataset)

    def scenes(self, size: Optional[tuple[int, int]] = None) -> Iterator[EvalScene]:
        for i, rec in enumerate(self.dataset.records):
            photo, ids, inst = self.dataset.load(i)
            yield EvalScene(rec.name, photo, ids, inst).resized(size)

    def seed_of(self, i: int) -> int:
        return i  # the style latent of a multimodal generator: fixed per scene, so reruns agree

    def describe(self) -> dict:
        return {
            "data": self.kind,
            "root": str(self.root),
            "split": self.split,
            "label_set": self.label_set.name,
            "n_images": len(self),
        }

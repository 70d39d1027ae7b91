"""Training datasets for the layouts users already have on disk, plus on-the-fly synthetic scenes.

Every dataset yields the same sample: ``labels`` LongTensor [1,H,W] (label ids = generator channel
ids), ``instances`` IntTensor [1,H,W], ``image`` FloatTensor [3,H,W] RGB in [-1, 1], ``name`` str.
File values become channel ids through the label set's ``file_to_ids`` (Cityscapes labelIds as they
are; ADE20K 0 -> 150 and k -> k-1; COCO-Stuff 255 -> 182), exactly as SPADE's loaders do.

Layouts without instance maps (ADE20K, plain folders without ``instances/``) give all-zero instances:
the instance-edge channel is then empty, as in SPADE with ``--no_instance``.

Construction finds the files and pairs them; ``validate()`` scans the whole tree (headers for sizes,
label maps for ids) and raises one ``DatasetError`` listing missing pairs, mis-sized maps and unknown
ids with their file names. ``build_dataset(..., validate=True)`` does both, so a broken tree fails at
start-up and never mid-epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from ..errors import ConfigError
from . import transforms
from .segmentation_dataset import SegmentationDataset, as_label_set, files_by_stem, make_sample
from .synthetic import generate_scene
from .transforms import Augment
from .validate import DatasetError, Problem


class CityscapesDataset(SegmentationDataset):
    """``leftImg8bit/{split}/{city}/*_leftImg8bit.png`` + ``gtFine/{split}/{city}/*_gtFine_labelIds.png``
    and ``*_gtFine_instanceIds.png``. ``gt="gtCoarse"`` reads the coarse annotations instead."""

    layout = "Cityscapes"
    default_label_set = "cityscapes"

    def __init__(
        self,
        root,
        label_set=None,
        size=None,
        augment=None,
        split="train",
        gt: str = "gtFine",
        use_instances: bool = True,
        **kw,
    ):
        self.gt = gt
        self.use_instances = use_instances
        super().__init__(root, label_set, size, augment, split, **kw)

    def _expected(self) -> str:
        return f"expected leftImg8bit/{self.split}/CITY/*_leftImg8bit.png and {self.gt}/{self.split}/CITY/"

    def _depth_dir(self, image):
        return self.root / "depth" / self.split / image.parent.name

    def _discover(self) -> None:
        img_root, gt_root = self.root / "leftImg8bit" / self.split, self.root / self.gt / self.split
        if not img_root.is_dir():
            raise DatasetError(f"{img_root} does not exist: not a Cityscapes tree ({self._expected()})")
        cities = sorted(
            {p.name for p in img_root.iterdir() if p.is_dir()}
            | ({p.name for p in gt_root.iterdir() if p.is_dir()} if gt_root.is_dir() else set())
        )
        lab_sfx, inst_sfx = f"_{self.gt}_labelIds.png", f"_{self.gt}_instanceIds.png"
        for city in cities:
            images = files_by_stem(img_root / city, "_leftImg8bit.png", "_leftImg8bit.png")
            labels = files_by_stem(gt_root / city, lab_sfx, lab_sfx)
            insts = files_by_stem(gt_root / city, inst_sfx, inst_sfx) if self.use_instances else None
            self._pair(
                images, labels, insts, f"{gt_root / city}/{{stem}}{lab_sfx}", f"{gt_root / city}/{{stem}}{inst_sfx}"
            )


class ADE20KDataset(SegmentationDataset):
    """``ADEChallengeData2016/images/{training,validation}/*.jpg`` + ``annotations/.../*.png``.

    ``root`` may be the ``ADEChallengeData2016`` folder or its parent. Annotation value 0 ("other")
    becomes the dontcare channel 150, value k the class k-1. No instance maps.
    """

    layout = "ADE20K"
    default_label_set = "ade20k"
    SPLITS = {"train": "training", "val": "validation", "training": "training", "validation": "validation"}

    def _expected(self) -> str:
        return "expected ADEChallengeData2016/images/{training,validation}/ and annotations/"

    def _depth_dir(self, image):
        return image.parent.parent.parent / "depth" / image.parent.name

    def _discover(self) -> None:
        base = self.root / "ADEChallengeData2016" if (self.root / "ADEChallengeData2016").is_dir() else self.root
        if self.split not in self.SPLITS:
            raise ConfigError(f"ADE20K split must be train or val, got {self.split!r}")
        sub = self.SPLITS[self.split]
        img_dir, ann_dir = base / "images" / sub, base / "annotations" / sub
        if not img_dir.is_dir():
            raise DatasetError(f"{img_dir} does not exist: not an ADE20K tree ({self._expected()})")
        self._pair(files_by_stem(img_dir), files_by_stem(ann_dir, ".png"), None, f"{ann_dir}/{{stem}}.png", "")


class CocoStuffDataset(SegmentationDataset):
    """SPADE's COCO-Stuff layout: ``{split}_img/`` photos, ``{split}_label/`` PNGs (0..181, 255 unknown ->
    182) and ``{split}_inst/`` instance PNGs (optional: without the folder, instances are zero)."""

    layout = "COCO-Stuff"
    default_label_set = "coco-stuff"

    def __init__(
        self, root, label_set=None, size=None, augment=None, split="train", use_instances: bool | None = None, **kw
    ):
        self.use_instances = use_instances
        super().__init__(root, label_set, size, augment, split, **kw)

    def _expected(self) -> str:
        return f"expected {self.split}_img/, {self.split}_label/ and optionally {self.split}_inst/"

    def _depth_dir(self, image):
        return self.root / f"{self.split}_depth"

    def _discover(self) -> None:
        img_dir = self.root / f"{self.split}_img"
        lab_dir, inst_dir = self.root / f"{self.split}_label", self.root / f"{self.split}_inst"
        if not img_dir.is_dir():
            raise DatasetError(
                f"{img_dir} does not exist: not a COCO-Stuff tree in SPADE's layout ({self._expected()})"
            )
        use = inst_dir.is_dir() if self.use_instances is None else self.use_instances
        if use and not inst_dir.is_dir():
            raise DatasetError(f"{inst_dir} does not exist and instances were asked for")
        self._pair(
            files_by_stem(img_dir),
            files_by_stem(lab_dir, ".png"),
            files_by_stem(inst_dir, ".png") if use else None,
            f"{lab_dir}/{{stem}}.png",
            f"{inst_dir}/{{stem}}.png",
        )


class PairedFolderDataset(SegmentationDataset):
    """``images/`` + ``labels/`` (+ optional ``instances/``) with matching file stems.

    Label PNGs are either single-channel (values in the label set's file convention) or color
    (palette colors; ``nearest_colors=True`` for anti-aliased paintings). With ``split`` set and
    ``root/split/`` existing, the folders are read from there.
    """

    layout = "paired-folder"
    default_label_set = "cityscapes"

    def __init__(
        self,
        root,
        label_set=None,
        size=None,
        augment=None,
        split: str | None = None,
        images: str = "images",
        labels: str = "labels",
        instances: str = "instances",
        **kw,
    ):
        self.dirs = (images, labels, instances)
        super().__init__(root, label_set, size, augment, split or "", **kw)

    def _expected(self) -> str:
        return "expected {}/ and {}/ with matching file names".format(*self.dirs[:2])

    def _discover(self) -> None:
        base = self.root / self.split if self.split and (self.root / self.split).is_dir() else self.root
        img_dir, lab_dir, inst_dir = (base / d for d in self.dirs)
        for d in (img_dir, lab_dir):
            if not d.is_dir():
                raise DatasetError(f"{d} does not exist ({self._expected()})")
        insts = files_by_stem(inst_dir, ".png") if inst_dir.is_dir() else None
        self._pair(
            files_by_stem(img_dir),
            files_by_stem(lab_dir, ".png"),
            insts,
            f"{lab_dir}/{{stem}}.png",
            f"{inst_dir}/{{stem}}.png",
        )


class SyntheticDataset(Dataset):
    """Procedural Cityscapes-like scenes, generated on the fly from seeds (no files, never invalid).

    ``seeds``: a count n (seeds 0..n-1) or an explicit sequence. Scenes are drawn at ``size`` directly;
    ``augment`` still applies flip and jitter. ``with_depth``: samples also carry the scene's exact depth
    (``depth`` [1,H,W] metres; labels and photos are the same as without it).
    """

    layout = "synthetic"

    def __init__(
        self,
        seeds: int | Sequence[int] = 100,
        size=(256, 512),
        augment: Augment | bool | None = None,
        label_set="cityscapes",
        with_depth: bool = False,
    ):
        self.with_depth = bool(with_depth)
        self.seeds = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
        self.size = transforms.parse_size(size) or (256, 512)
        self.augment = Augment() if augment is True else (augment or None)
        self.label_set = as_label_set(label_set)
        if self.label_set.name != "cityscapes":
            raise ConfigError(
                f"synthetic scenes carry Cityscapes label ids; label set {self.label_set.name!r} "
                "does not fit them (use cityscapes)"
            )
        self.problems: list[Problem] = []

    def __len__(self) -> int:
        return len(self.seeds)

    def load(self, i: int):
        return self.load_with_depth(i)[:3]

    def load_with_depth(self, i: int):
        """(photo, ids, instances, depth float32 [H,W] metres) of scene ``i``, drawn once."""
        scene = generate_scene(self.seeds[i], height=self.size[0], width=self.size[1])
        return scene.photo, scene.labels.astype(np.int64), scene.instances.astype(np.int32), scene.depth

    def __getitem__(self, i: int) -> dict[str, Any]:
        photo, ids, inst, depth = self.load_with_depth(i)
        name = f"synthetic_{self.seeds[i]:06d}"
        return make_sample(photo, ids, inst, name, self.size, self.augment, depth if self.with_depth else None)

    def validate(self, check_ids: bool = True, workers: int | None = None) -> SyntheticDataset:
        return self

    def __repr__(self) -> str:
        return f"SyntheticDataset(n={len(self)}, size={self.size})"


KINDS: dict[str, type] = {
    "cityscapes": CityscapesDataset,
    "ade20k": ADE20KDataset,
    "ade": ADE20KDataset,
    "coco-stuff": CocoStuffDataset,
    "cocostuff": CocoStuffDataset,
    "coco": CocoStuffDataset,
    "paired": PairedFolderDataset,
    "folder": PairedFolderDataset,
    "synthetic": SyntheticDataset,
}


def build_dataset(
    kind: str,
    root=None,
    label_set=None,
    size=(256, 512),
    augment: Augment | bool | None = None,
    split: str | None = "train",
    validate: bool = True,
    check_ids: bool = True,
    **kw,
):
    """The dataset of layout ``kind`` under ``root``, checked up front unless ``validate=False``.

    ``kind``: cityscapes | ade20k | coco-stuff | paired | synthetic. For ``synthetic``, ``root`` is
    ignored and ``seeds`` (count or list) picks the scenes. ``with_depth=True``: samples carry ``depth``
    (metres; for folders from a ``depth/`` folder beside the images, checked with the rest). ``size``: (H, W), "480x960", "2:1@480",
    "square@256" or None (file resolution). ``augment``: True for the default ``Augment()``.
    """
    key = kind.lower().replace("_", "-")
    if key not in KINDS:
        raise ConfigError(
            f"unknown dataset kind {kind!r}; choose one of cityscapes, ade20k, coco-stuff, paired, synthetic"
        )
    cls = KINDS[key]
    if cls is SyntheticDataset:
        return SyntheticDataset(
            kw.pop("seeds", 100), size, augment, label_set or "cityscapes", with_depth=kw.pop("with_depth", False)
        )
    if root is None:
        raise ConfigError(f"dataset kind {kind!r} needs a root folder")
    if split is not None:
        kw["split"] = split
    ds = cls(root, label_set, size, augment, **kw)
    if validate:
        ds.validate(check_ids=check_ids)
    return ds

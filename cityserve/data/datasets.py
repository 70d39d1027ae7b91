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

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import CityserveError, ConfigError, LabelError
from ..labels import LabelSet, get_label_set, to_rgb8
from . import transforms
from .synthetic import generate_scene
from .transforms import Augment
from .validate import DatasetError, Problem, format_ids, image_size, raise_problems, scan

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class Record:
    """One sample's files. ``instances`` None: the layout has no instance map for it."""

    name: str
    image: Path
    labels: Path
    instances: Path | None = None


def _label_set(label_set):
    return label_set if isinstance(label_set, LabelSet) else get_label_set(label_set)


def _rng() -> np.random.Generator:
    """A numpy generator seeded from torch's RNG: reproducible under torch.manual_seed, and different
    in each DataLoader worker (torch seeds workers differently)."""
    return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))


def read_photo(path: Path) -> np.ndarray:
    """uint8 RGB [H,W,3]; grey and RGBA files are converted; 16-bit photos are scaled to 8 bits."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DatasetError(f"{path} is not a readable image")
    try:
        return to_rgb8(img, str(path))
    except LabelError as e:
        raise DatasetError(str(e)) from None


def read_raw(path: Path) -> np.ndarray:
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise DatasetError(f"{path} is not a readable image")
    return arr


def read_instances(path: Path) -> np.ndarray:
    """int32 [H,W]. Cityscapes stores 16-bit ids (label*1000+k); 3-channel maps pack R,G,B as a 24-bit id."""
    arr = read_raw(path)
    if arr.ndim == 3:
        arr = arr[..., :3].astype(np.int32)
        return (arr[..., 2] << 16) | (arr[..., 1] << 8) | arr[..., 0]
    return arr.astype(np.int32)


class SegmentationDataset(Dataset):
    """Common machinery: pairing problems, validation, reading, mapping and augmenting one record.

    Subclasses fill ``self.records`` and ``self.problems`` (pairing defects found while listing).
    """

    layout = "dataset"
    default_label_set = "cityscapes"

    def __init__(
        self,
        root: str | os.PathLike,
        label_set=None,
        size=None,
        augment: Augment | bool | None = None,
        split: str = "train",
        num_channels: int | None = None,
        nearest_colors: bool = False,
    ):
        self.root = Path(root)
        self.split = split
        self.label_set = _label_set(label_set if label_set is not None else self.default_label_set)
        self.size = transforms.parse_size(size)
        self.augment = Augment() if augment is True else (augment or None)
        self.num_channels = num_channels
        self.nearest_colors = nearest_colors
        self.records: list[Record] = []
        self.problems: list[Problem] = []
        if not self.root.is_dir():
            raise DatasetError(f"dataset root {self.root} is not a directory")
        self._discover()
        if not self.records and not self.problems:
            raise DatasetError(f"no {self.layout} samples for split {split!r} under {self.root}: {self._expected()}")

    # ---- listing -----------------------------------------------------------------------------
    def _discover(self) -> None:
        raise NotImplementedError

    def _expected(self) -> str:
        return ""

    def _pair(
        self,
        images: dict[str, Path],
        labels: dict[str, Path],
        instances: dict[str, Path] | None,
        label_hint: str,
        inst_hint: str,
    ) -> None:
        """Pair files by stem; every stem missing a partner is a problem naming the file that has one."""
        for stem in sorted(images):
            lab = labels.get(stem)
            if lab is None:
                expected = label_hint.replace("{stem}", stem)
                self.problems.append(Problem(str(images[stem]), f"no label map (expected {expected})"))
                continue
            inst = None
            if instances is not None:
                inst = instances.get(stem)
                if inst is None:
                    self.problems.append(
                        Problem(str(images[stem]), f"no instance map (expected {inst_hint.replace('{stem}', stem)})")
                    )
                    continue
            self.records.append(Record(stem, images[stem], lab, inst))
        for stem in sorted(set(labels) - set(images)):
            self.problems.append(Problem(str(labels[stem]), "label map without a photo"))

    # ---- checks ------------------------------------------------------------------------------
    def map_labels(self, raw: np.ndarray, path: Path | str = "<array>") -> np.ndarray:
        """File values (or palette colors) -> channel ids, int64 [H,W]; raises naming ``path``."""
        try:
            if raw.ndim == 3:
                rgb = cv2.cvtColor(raw[..., :3], cv2.COLOR_BGR2RGB)
                ids = self.label_set.colors_to_ids(rgb, nearest=self.nearest_colors)
            else:
                ids = self.label_set.file_to_ids(raw)
            ids = np.asarray(ids).astype(np.int64)
            if self.num_channels is not None:
                self.label_set.check_ids(ids, self.num_channels)
        except LabelError as e:
            raise DatasetError(f"{path}: {e}") from None
        return ids

    def _label_problems(self, raw: np.ndarray, path: Path) -> list[Problem]:
        """Unknown values of one label map, named: map the unique values one by one to find them."""
        if raw.ndim == 3:
            try:
                self.map_labels(raw, path)
            except DatasetError as e:
                return [Problem(str(path), str(e).split(": ", 1)[1])]
            return []
        values = np.unique(raw)
        try:
            self.map_labels(values.reshape(1, -1), path)
            return []
        except DatasetError:
            pass
        bad = []
        for v in values:
            try:
                self.map_labels(np.array([[v]], dtype=raw.dtype), path)
            except DatasetError:
                bad.append(int(v))
        what = f"label set {self.label_set.name!r}"
        if self.num_channels:
            what += f" with {self.num_channels} channels"
        return [Problem(str(path), f"unknown label value(s) {format_ids(bad)} for {what}")]

    def check_record(self, rec: Record, check_ids: bool = True) -> list[Problem]:
        try:
            shape = image_size(rec.image)
        except CityserveError as e:
            return [Problem(str(rec.image), str(e))]
        out: list[Problem] = []
        if check_ids:
            try:
                raw = read_raw(rec.labels)
            except CityserveError:
                return [Problem(str(rec.labels), "not a readable image")]
            lshape = raw.shape[:2]
        else:
            try:
                lshape = image_size(rec.labels)
            except CityserveError:
                return [Problem(str(rec.labels), "not a readable image")]
        if tuple(lshape) != tuple(shape):
            out.append(
                Problem(
                    str(rec.labels),
                    f"label map is {lshape[0]}x{lshape[1]} (HxW) but its photo "
                    f"{rec.image.name} is {shape[0]}x{shape[1]}",
                )
            )
        elif check_ids:
            out.extend(self._label_problems(raw, rec.labels))
        if rec.instances is not None:
            try:
                ishape = image_size(rec.instances)
                if tuple(ishape) != tuple(shape):
                    out.append(
                        Problem(
                            str(rec.instances),
                            f"instance map is {ishape[0]}x{ishape[1]} (HxW) but its "
                            f"photo {rec.image.name} is {shape[0]}x{shape[1]}",
                        )
                    )
            except CityserveError:
                out.append(Problem(str(rec.instances), "not a readable image"))
        return out

    def validate(self, check_ids: bool = True, workers: int | None = None) -> SegmentationDataset:
        """Scan every file now; raise one ``DatasetError`` naming the first problems. Returns self."""
        found = scan(self.records, lambda r: self.check_record(r, check_ids), workers, desc=f"checking {self.layout}")
        where = f"{self.layout} dataset {self.root}" + (f" ({self.split})" if self.split else "")
        raise_problems(where, self.problems + found)
        return self

    # ---- samples -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.records)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Record ``i`` as arrays at file resolution: photo uint8 RGB, ids int64, instances int32."""
        rec = self.records[i]
        photo = read_photo(rec.image)
        ids = self.map_labels(read_raw(rec.labels), rec.labels)
        inst = read_instances(rec.instances) if rec.instances is not None else np.zeros(ids.shape, np.int32)
        for what, arr, p in (("label map", ids, rec.labels), ("instance map", inst, rec.instances)):
            if arr.shape != photo.shape[:2]:
                raise DatasetError(
                    f"{p}: {what} is {arr.shape[0]}x{arr.shape[1]} but its photo {rec.image.name} "
                    f"is {photo.shape[0]}x{photo.shape[1]} (run validate() before training)"
                )
        return photo, ids, inst

    def __getitem__(self, i: int) -> dict[str, Any]:
        photo, ids, inst = self.load(i)
        return make_sample(photo, ids, inst, self.records[i].name, self.size, self.augment)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, n={len(self)}, "
            f"label_set={self.label_set.name!r}, size={self.size})"
        )


def make_sample(photo, ids, inst, name: str, size, augment) -> dict[str, Any]:
    image, labels, instances = transforms.apply(photo, ids, inst, size, augment, _rng() if augment else None)
    return {
        "labels": torch.from_numpy(labels)[None],
        "instances": torch.from_numpy(instances)[None],
        "image": torch.from_numpy(image),
        "name": name,
    }


def _files(folder: Path, suffix: str | Sequence[str] = IMAGE_EXTS, strip: str = "") -> dict[str, Path]:
    """stem -> path of the files in ``folder`` ending in ``suffix`` (``strip`` removed from the name)."""
    out: dict[str, Path] = {}
    if not folder.is_dir():
        return out
    suffixes = tuple(x.lower() for x in ((suffix,) if isinstance(suffix, str) else suffix))
    for p in sorted(folder.iterdir()):
        name = p.name
        if p.is_file() and name.lower().endswith(suffixes) and not name.startswith("."):
            stem = name[: -len(strip)] if strip and name.endswith(strip) else os.path.splitext(name)[0]
            out[stem] = p
    return out


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
            images = _files(img_root / city, "_leftImg8bit.png", "_leftImg8bit.png")
            labels = _files(gt_root / city, lab_sfx, lab_sfx)
            insts = _files(gt_root / city, inst_sfx, inst_sfx) if self.use_instances else None
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

    def _discover(self) -> None:
        base = self.root / "ADEChallengeData2016" if (self.root / "ADEChallengeData2016").is_dir() else self.root
        if self.split not in self.SPLITS:
            raise ConfigError(f"ADE20K split must be train or val, got {self.split!r}")
        sub = self.SPLITS[self.split]
        img_dir, ann_dir = base / "images" / sub, base / "annotations" / sub
        if not img_dir.is_dir():
            raise DatasetError(f"{img_dir} does not exist: not an ADE20K tree ({self._expected()})")
        self._pair(_files(img_dir), _files(ann_dir, ".png"), None, f"{ann_dir}/{{stem}}.png", "")


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
            _files(img_dir),
            _files(lab_dir, ".png"),
            _files(inst_dir, ".png") if use else None,
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
        insts = _files(inst_dir, ".png") if inst_dir.is_dir() else None
        self._pair(
            _files(img_dir), _files(lab_dir, ".png"), insts, f"{lab_dir}/{{stem}}.png", f"{inst_dir}/{{stem}}.png"
        )


class SyntheticDataset(Dataset):
    """Procedural Cityscapes-like scenes, generated on the fly from seeds (no files, never invalid).

    ``seeds``: a count n (seeds 0..n-1) or an explicit sequence. Scenes are drawn at ``size`` directly;
    ``augment`` still applies flip and jitter.
    """

    layout = "synthetic"

    def __init__(
        self,
        seeds: int | Sequence[int] = 100,
        size=(256, 512),
        augment: Augment | bool | None = None,
        label_set="cityscapes",
    ):
        self.seeds = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
        self.size = transforms.parse_size(size) or (256, 512)
        self.augment = Augment() if augment is True else (augment or None)
        self.label_set = _label_set(label_set)
        if self.label_set.name != "cityscapes":
            raise ConfigError(
                f"synthetic scenes carry Cityscapes label ids; label set {self.label_set.name!r} "
                "does not fit them (use cityscapes)"
            )
        self.problems: list[Problem] = []

    def __len__(self) -> int:
        return len(self.seeds)

    def load(self, i: int):
        scene = generate_scene(self.seeds[i], height=self.size[0], width=self.size[1])
        return scene.photo, scene.labels.astype(np.int64), scene.instances.astype(np.int32)

    def __getitem__(self, i: int) -> dict[str, Any]:
        photo, ids, inst = self.load(i)
        return make_sample(photo, ids, inst, f"synthetic_{self.seeds[i]:06d}", self.size, self.augment)

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
    ignored and ``seeds`` (count or list) picks the scenes. ``size``: (H, W), "480x960", "2:1@480",
    "square@256" or None (file resolution). ``augment``: True for the default ``Augment()``.
    """
    key = kind.lower().replace("_", "-")
    if key not in KINDS:
        raise ConfigError(
            f"unknown dataset kind {kind!r}; choose one of cityscapes, ade20k, coco-stuff, paired, synthetic"
        )
    cls = KINDS[key]
    if cls is SyntheticDataset:
        return SyntheticDataset(kw.pop("seeds", 100), size, augment, label_set or "cityscapes")
    if root is None:
        raise ConfigError(f"dataset kind {kind!r} needs a root folder")
    if split is not None:
        kw["split"] = split
    ds = cls(root, label_set, size, augment, **kw)
    if validate:
        ds.validate(check_ids=check_ids)
    return ds

"""The machinery every on-disk dataset layout shares: a sample's files (``Record``), reading photos,
label and instance maps, validating the whole tree before training, and turning one record into the
sample the trainers take (see ``cityserve.data.datasets`` for the layouts and the sample's form)."""

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

from ..errors import CityserveError, LabelError
from ..labels import LabelSet, get_label_set, to_rgb8
from . import transforms
from .depth import check_depth_file, depth_files, read_depth
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
    depth: Path | None = None


def as_label_set(label_set):
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
        with_depth: bool = False,
    ):
        self.root = Path(root)
        self.with_depth = bool(with_depth)
        self.split = split
        self.label_set = as_label_set(label_set if label_set is not None else self.default_label_set)
        self.size = transforms.parse_size(size)
        self.augment = Augment() if augment is True else (augment or None)
        self.num_channels = num_channels
        self.nearest_colors = nearest_colors
        self.records: list[Record] = []
        self.problems: list[Problem] = []
        self._depth_cache: dict[Path, dict[str, Path]] = {}  # depth folder -> its files by stem
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

    def _depth_dir(self, image: Path) -> Path:
        """Where the depth maps of the photos in ``image``'s folder live (``with_depth``): a ``depth/``
        folder beside the images folder by default; layouts with nested trees override it."""
        return image.parent.parent / "depth"

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
            depth = None
            if self.with_depth:
                folder = self._depth_dir(images[stem])
                if folder not in self._depth_cache:
                    self._depth_cache[folder] = depth_files(folder)
                depth = self._depth_cache[folder].get(stem)
                if depth is None:
                    self.problems.append(
                        Problem(str(images[stem]), f"no depth map (expected {folder}/{stem}.png or .npy)")
                    )
                    continue
            self.records.append(Record(stem, images[stem], lab, inst, depth))
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
        if rec.depth is not None:
            out.extend(check_depth_file(rec.depth, shape))
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

    def load_depth(self, i: int, shape: tuple[int, int]) -> np.ndarray:
        """Record ``i``'s depth map, float32 [H,W] metres, checked against its photo's (H, W)."""
        rec = self.records[i]
        if rec.depth is None:
            raise DatasetError(f"{self.root}: this dataset was built without depth (with_depth=False)")
        depth = read_depth(rec.depth)
        if depth.shape != tuple(shape):
            raise DatasetError(
                f"{rec.depth}: depth map is {depth.shape[0]}x{depth.shape[1]} but its photo {rec.image.name} "
                f"is {shape[0]}x{shape[1]} (run validate() before training)"
            )
        return depth

    def __getitem__(self, i: int) -> dict[str, Any]:
        photo, ids, inst = self.load(i)
        depth = self.load_depth(i, ids.shape) if self.with_depth else None
        return make_sample(photo, ids, inst, self.records[i].name, self.size, self.augment, depth)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, n={len(self)}, "
            f"label_set={self.label_set.name!r}, size={self.size})"
        )


def make_sample(photo, ids, inst, name: str, size, augment, depth: np.ndarray | None = None) -> dict[str, Any]:
    """The trainers' sample; with ``depth`` (float32 [H,W] metres) also ``depth`` FloatTensor [1,h,w],
    cropped and flipped with the labels (nearest: a depth between a car and the wall behind it is neither)."""
    extra = () if depth is None else (depth,)
    image, labels, instances, *rest = transforms.apply(
        photo, ids, inst, size, augment, _rng() if augment else None, extra=extra
    )
    sample = {
        "labels": torch.from_numpy(labels)[None],
        "instances": torch.from_numpy(instances)[None],
        "image": torch.from_numpy(image),
        "name": name,
    }
    if depth is not None:
        sample["depth"] = torch.from_numpy(np.ascontiguousarray(rest[0], dtype=np.float32))[None]
    return sample


def files_by_stem(folder: Path, suffix: str | Sequence[str] = IMAGE_EXTS, strip: str = "") -> dict[str, Path]:
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

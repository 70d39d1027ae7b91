"""Ground-truth label maps for frames of a video or an image folder, to score pseudo labels against.

Some footage comes with annotated frames (CamVid labels a frame every second and names the file by
frame number; a team may have hand-labelled a few frames of its own drives). The dataset builder finds
them with ``GroundTruth.find``, applies to them the crop and resize applied to the frame, and reports the
pseudo labels' mIoU and per-class IoU against them.

Layout of the ground-truth folder ``root``: label PNGs, single-channel values in the label set's file
convention (Cityscapes ``*_labelIds.png``) or palette colors, either directly in ``root`` (one source)
or in ``root/<source name>/`` (one subfolder per video file stem or image folder name). A label file
belongs to a video frame when the last number in its file name is the frame number
(``000120.png``, ``0001TP_006690_L.png``, ``drive_000000_000120_gtFine_labelIds.png``), and to an image
of a folder when its name starts with the image's file stem.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from ..errors import LabelError
from .transforms import cover_crop_box, nearest_indices
from .validate import DatasetError

LABEL_EXTS = (".png", ".bmp", ".tif", ".tiff")


def resize_crop_ids(ids: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The id-map counterpart of ``resize_crop_photo``: the same cover-and-centre-crop window, nearest."""
    h, w = ids.shape[:2]
    rh, rw, top, left = cover_crop_box(h, w, size)
    ys = nearest_indices(h, rh)[top : top + size[0]]
    xs = nearest_indices(w, rw)[left : left + size[1]]
    return ids[ys][:, xs]


class GroundTruth:
    def __init__(self, root: str | Path, label_set):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"ground-truth folder {self.root} is not a directory")
        self.label_set = label_set
        self._index: dict[Path, list[Path]] = {}

    def _files(self, folder: Path) -> list[Path]:
        if folder not in self._index:
            self._index[folder] = (
                sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in LABEL_EXTS)
                if folder.is_dir()
                else []
            )
        return self._index[folder]

    def _folder(self, source: str) -> Path:
        sub = self.root / source
        return sub if sub.is_dir() else self.root

    def find(self, source: str, frame: int | None = None, stem: str | None = None) -> Path | None:
        """The label file of frame number ``frame`` of video ``source`` (its file stem), or of image
        ``stem`` of folder ``source``; None when there is none."""
        for p in self._files(self._folder(source)):
            name = p.stem
            if stem is not None:
                if name == stem or name.startswith(stem + "_") or name.startswith(stem + "."):
                    return p
            elif frame is not None:
                numbers = re.findall(r"\d+", name)
                if numbers and int(numbers[-1]) == frame:
                    return p
        return None

    def read(self, path: Path) -> np.ndarray:
        """Label ids [H,W] of a label file; a value or color outside the label set is a DatasetError."""
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise DatasetError(f"ground-truth label map {path} is not a readable image")
        try:
            if raw.ndim == 3:
                return np.asarray(self.label_set.colors_to_ids(cv2.cvtColor(raw[..., :3], cv2.COLOR_BGR2RGB)))
            return np.asarray(self.label_set.file_to_ids(raw))
        except LabelError as e:
            raise DatasetError(f"ground-truth label map {path}: {e}") from None

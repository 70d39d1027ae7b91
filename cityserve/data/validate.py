"""Up-front dataset checks: find every missing pair, mis-sized label map and unknown id before training.

A bad file found in epoch 7 wastes hours; a bad file found at start-up costs a second. The checks read
image sizes from the file headers (PNG IHDR, JPEG SOF) without decoding pixels, and decode only the
label maps (which are small, single-channel PNGs) to look at their unique ids. All problems are
collected and reported together in one ``DatasetError`` whose one-line message names the files.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
from tqdm import tqdm

from ..errors import CityserveError

MAX_LISTED = 5  # problems named in the error message; the rest are counted


class DatasetError(CityserveError, ValueError):
    """A dataset tree has missing pairs, unreadable files, mis-sized label maps or unknown ids."""


@dataclass(frozen=True)
class Problem:
    """One defect of one file, e.g. ``Problem("a_labelIds.png", "unknown label id(s) 40, 41")``."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def raise_problems(dataset: str, problems: Sequence[Problem], max_listed: int = MAX_LISTED) -> None:
    """Raise one ``DatasetError`` naming the first ``max_listed`` problems (none: return quietly)."""
    if not problems:
        return
    listed = "; ".join(str(p) for p in problems[:max_listed])
    more = f" (and {len(problems) - max_listed} more)" if len(problems) > max_listed else ""
    n = len(problems)
    raise DatasetError(f"{dataset}: {n} problem{'s' if n != 1 else ''}: {listed}{more}")


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) of a PNG or JPEG from its header, without decoding pixels.

    Falls back to decoding with OpenCV for other formats. Raises ``DatasetError`` naming the file when
    it is not a readable image.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(32)
            if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
                w, h = struct.unpack(">II", head[16:24])
                return int(h), int(w)
            if head[:2] == b"\xff\xd8":
                size = _jpeg_size(f)
                if size is not None:
                    return size
    except OSError as e:
        raise DatasetError(f"cannot read {path}: {e.strerror or e}") from None

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DatasetError(f"{path} is not a readable image")
    return int(img.shape[0]), int(img.shape[1])


def _jpeg_size(f) -> tuple[int, int] | None:
    """Walk JPEG markers up to the first SOFn segment, which holds the frame size."""
    f.seek(2)
    while True:
        b = f.read(1)
        while b and b != b"\xff":
            b = f.read(1)
        while b == b"\xff":
            b = f.read(1)
        if not b:
            return None
        marker = b[0]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            continue
        seg = f.read(2)
        if len(seg) < 2:
            return None
        (length,) = struct.unpack(">H", seg)
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            data = f.read(5)
            if len(data) < 5:
                return None
            h, w = struct.unpack(">HH", data[1:5])
            return int(h), int(w)
        f.seek(length - 2, os.SEEK_CUR)


def format_ids(ids: Iterable[int], limit: int = 8) -> str:
    ids = sorted(int(i) for i in ids)
    s = ", ".join(str(i) for i in ids[:limit])
    return s + (f", … ({len(ids)} in all)" if len(ids) > limit else "")


def scan(
    items: Sequence, check: Callable[[object], list[Problem]], workers: int | None = None, desc: str | None = None
) -> list[Problem]:
    """Run ``check`` over ``items`` (in threads: PNG decoding releases the GIL), keep the order.

    Shows a progress bar when there are many items, since a full Cityscapes scan takes a while.
    """
    workers = workers or min(8, os.cpu_count() or 1)
    problems: list[Problem] = []
    bar = None
    if desc is not None and len(items) > 200:
        bar = tqdm(total=len(items), desc=desc, unit="file", leave=False)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for found in pool.map(check, items):
            problems.extend(found)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return problems

"""Tiny deterministic data for the training tests: blocky Cityscapes-id label maps whose photo is each
class's palette color plus a little texture, so a generator can learn the mapping in a few steps."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

REPO = Path(__file__).resolve().parents[1]
CLASSES = (7, 8, 11, 21, 23, 26)  # road, sidewalk, building, vegetation, sky, car


def scene(seed: int, h: int = 32, w: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(photo uint8 RGB [h,w,3], label ids uint8 [h,w], instances int32 [h,w])."""
    from cityserve.labels import get_label_set

    rng = np.random.default_rng(seed)
    ids = np.full((h, w), 23, np.uint8)  # sky
    horizon = int(h * rng.uniform(0.35, 0.55))
    ids[horizon:] = 7
    ids[horizon + (h - horizon) // 2 :, : w // 4] = 8
    for _ in range(3):
        x0 = int(rng.integers(0, w - 8))
        ids[int(h * 0.15) : horizon, x0 : x0 + int(rng.integers(6, 16))] = rng.choice([11, 21])
    inst = ids.astype(np.int32)
    cx = int(rng.integers(0, w - 12))
    ids[horizon + 2 : horizon + 8, cx : cx + 10] = 26
    inst[horizon + 2 : horizon + 8, cx : cx + 10] = 26000
    pal = get_label_set("cityscapes").palette
    photo = pal[ids].astype(np.int16) + rng.integers(-8, 9, size=(h, w, 3))
    return np.clip(photo, 0, 255).astype(np.uint8), ids, inst


class TinyScenes(Dataset):
    """Samples in the dataset contract: labels Long [1,H,W], instances Int [1,H,W], image [3,H,W] in [-1,1]."""

    def __init__(self, n: int = 4, h: int = 32, w: int = 64):
        self.items = [scene(i, h, w) for i in range(n)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        photo, ids, inst = self.items[i]
        return {
            "labels": torch.from_numpy(ids.astype(np.int64))[None],
            "instances": torch.from_numpy(inst)[None],
            "image": torch.from_numpy(photo).permute(2, 0, 1).float() / 127.5 - 1.0,
            "name": f"tiny_{i}",
        }


def write_paired(root: Path, n: int = 4, h: int = 32, w: int = 64) -> Path:
    """A PairedFolderDataset tree: images/*.png, labels/*.png (Cityscapes ids), instances/*.png."""
    import cv2

    for d in ("images", "labels", "instances"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        photo, ids, inst = scene(i, h, w)
        cv2.imwrite(str(root / "images" / f"s{i}.png"), photo[..., ::-1])
        cv2.imwrite(str(root / "labels" / f"s{i}.png"), ids)
        cv2.imwrite(str(root / "instances" / f"s{i}.png"), inst.astype(np.uint16))
    return root


def train_cmd(script: str, *args: str) -> list[str]:
    return [sys.executable, str(REPO / "train" / script), *args]


def env_1thread() -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def run(script: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(train_cmd(script, *args), env=env_1thread(), capture_output=True, text=True, timeout=timeout)

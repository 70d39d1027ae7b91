"""Pieces the trainers share: the dataset a run names (``DataConfig``), label-set handling for cards,
SPADE-style weight init, label colors for image grids."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ..cliutil import parse_seeds, parse_size
from ..errors import ConfigError
from ..options import option

log = logging.getLogger("cityserve.training")

DATA_KINDS = ("synthetic", "cityscapes", "ade20k", "coco-stuff", "paired")


# ---- label sets ---------------------------------------------------------------------------------------
def label_set_for_card(spec: Any) -> str | dict:
    """A built-in name stays a name; anything else travels inside the card as its dict."""
    from ..labels import BUILTIN_NAMES, get_label_set

    ls = get_label_set(spec)
    return ls.name if isinstance(spec, str) and ls.name in BUILTIN_NAMES else ls.to_dict()


def palette_tensor(spec: Any) -> torch.Tensor:
    from ..labels import get_label_set

    return torch.from_numpy(np.asarray(get_label_set(spec).palette, dtype=np.uint8).copy())


def colorize(labels: torch.Tensor, palette: torch.Tensor) -> torch.Tensor:
    """[B,1,H,W] ids -> [B,3,H,W] float in [0, 1] palette colors (for image grids)."""
    pal = palette.to(labels.device)
    idx = labels[:, 0].long().clamp(0, pal.shape[0] - 1)
    return pal[idx].permute(0, 3, 1, 2).float() / 255.0


def to_unit(img: torch.Tensor) -> torch.Tensor:
    return ((img.detach().float() + 1) / 2).clamp(0, 1)


# ---- init ---------------------------------------------------------------------------------------------
def init_weights(net: nn.Module, init_type: str = "xavier", gain: float = 0.02) -> nn.Module:
    """SPADE's ``BaseNetwork.init_weights``: BatchNorm weight ~ N(1, gain); conv / linear weights by
    ``init_type`` (xavier: xavier_normal with ``gain``, the SPADE default with init_variance 0.02),
    biases zero. Spectral-normed layers are initialised through ``weight_orig``."""
    for m in net.modules():
        name = type(m).__name__
        if "BatchNorm2d" in name:
            if getattr(m, "weight", None) is not None:
                nn.init.normal_(m.weight, 1.0, gain)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
            continue
        if not ("Conv" in name or "Linear" in name):
            continue
        w = getattr(m, "weight_orig", None)
        if w is None:
            w = getattr(m, "weight", None)
        if not isinstance(w, torch.Tensor):
            continue
        with torch.no_grad():
            if init_type == "normal":
                nn.init.normal_(w, 0.0, gain)
            elif init_type == "xavier":
                nn.init.xavier_normal_(w, gain=gain)
            elif init_type == "xavier_uniform":
                nn.init.xavier_uniform_(w, gain=1.0)
            elif init_type == "kaiming":
                nn.init.kaiming_normal_(w, a=0, mode="fan_in")
            elif init_type == "orthogonal":
                nn.init.orthogonal_(w, gain=gain)
            elif init_type == "none":
                m.reset_parameters()
            else:
                raise ConfigError(f"unknown init type {init_type!r}")
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
    return net


# ---- data -----------------------------------------------------------------------------------------------
class CachedScenes(Dataset):
    """Keeps each record's arrays (photo, ids, instances) in memory after the first read, and augments
    per sample as the wrapped dataset would. On-the-fly synthetic scenes are drawn once, not once per
    epoch: the demo training on a 2-core CPU would otherwise spend most of its time drawing."""

    def __init__(self, ds: Dataset):
        self.ds = ds
        self._cache: dict[int, tuple] = {}
        self.label_set = getattr(ds, "label_set", None)

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict[str, Any]:
        from ..data.datasets import make_sample

        if i not in self._cache:
            with_depth = getattr(self.ds, "with_depth", False)
            if with_depth and hasattr(self.ds, "load_with_depth"):
                photo, ids, inst, depth = self.ds.load_with_depth(i)
            else:
                photo, ids, inst = self.ds.load(i)
                depth = self.ds.load_depth(i, ids.shape) if with_depth else None
            small = ids.astype(np.uint8) if ids.size and 0 <= ids.min() and ids.max() < 256 else ids
            self._cache[i] = (photo, small, inst, depth)
        photo, ids, inst, depth = self._cache[i]
        name = self.ds.records[i].name if hasattr(self.ds, "records") else f"synthetic_{self.ds.seeds[i]:06d}"
        return make_sample(photo, ids.astype(np.int64), inst, name, self.ds.size, self.ds.augment, depth)


@dataclasses.dataclass
class DataConfig:
    """The dataset a run trains on; the command line's "data" group is generated from these fields."""

    data: str = option(
        "synthetic",
        "dataset layout: on-the-fly synthetic scenes, or a folder in the layout named",
        cli={"choices": DATA_KINDS},
    )
    root: Optional[Path] = option(None, "dataset folder (for every --data but synthetic)")
    seeds: str = option("0-99", "synthetic scene seeds, e.g. 0-99 or 0-9,20")
    label_set: Optional[str] = option(
        None, "label set: cityscapes | ade20k | coco-stuff | a JSON/YAML file (default: the preset's)"
    )
    size: Optional[str] = option(None, "training resolution HxW, e.g. 256x512 (default: the preset's)")
    nearest_colors: bool = option(False, "color label PNGs: map each color to the nearest palette color")
    cache: bool = option(True, "keep drawn synthetic scenes in memory (--no-cache: draw them again every epoch)")
    flip: bool = option(True, "random horizontal flips")

    def resolution(self, default: tuple[int, int]) -> tuple[int, int]:
        return parse_size(self.size) if self.size else tuple(default)


def build_training_data(
    data: DataConfig,
    label_set: Any,
    size: tuple[int, int],
    augment: Any,
    num_channels: Optional[int] = None,
    with_depth: bool = False,
) -> Dataset:
    """The dataset ``data`` names, at ``size``, validated up front (its depth maps too, ``with_depth``)."""
    from ..data.datasets import build_dataset

    if data.data == "synthetic":
        ds = build_dataset(
            "synthetic",
            None,
            label_set=label_set,
            size=size,
            augment=augment,
            seeds=parse_seeds(data.seeds),
            with_depth=with_depth,
        )
        return CachedScenes(ds) if data.cache else ds
    if not data.root:
        raise ConfigError(f"--data {data.data} needs --root DIR (the dataset folder)")
    kw: dict[str, Any] = {}
    if num_channels is not None:
        kw["num_channels"] = num_channels
    if data.nearest_colors:
        kw["nearest_colors"] = True
    if with_depth:
        kw["with_depth"] = True
    return build_dataset(data.data, data.root, label_set=label_set, size=size, augment=augment, **kw)

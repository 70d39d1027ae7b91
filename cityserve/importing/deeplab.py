"""Import a VainF/DeepLabV3Plus-Pytorch checkpoint (``best_deeplabv3plus_<backbone>_<dataset>_os<N>.pth``)
as it is: weights + a segmenter model card with VainF's preprocessing (RGB, ImageNet mean/std).

VainF's ``main.py`` saves ``{"cur_itrs", "model_state", "optimizer_state", "scheduler_state",
"best_score"}``; ``model_state`` holds ``backbone.*`` (ResNet: torchvision's names; MobileNetV2:
``backbone.low_level_features.0-3`` and ``backbone.high_level_features.4-17``, torchvision's features)
and ``classifier.*`` (the DeepLabV3+ head), with ``module.`` in front when saved from DataParallel.
``best_score`` is a numpy float: the file is read with ``weights_only=True`` allowing numpy's scalar
and dtype reconstructors (data, not code) and nothing else.

What the tensors say is read from them: the backbone (MobileNetV2, or ResNet-50 / -101 from the number
of ``layer3`` blocks) and the class count; a ``--backbone`` that contradicts them is refused. The output
stride is not in the weights (it is a dilation): it comes from ``--output-stride``, or the file name's
``os8`` / ``os16``, or 16 (every published VainF checkpoint).
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ..cards import ModelCard, command_line, environment, now_iso, sha256_file
from ..checkpoints import check_finite, load_strict, safe_load, save_checkpoint, state_dict_from
from ..errors import CheckpointError, ConfigError
from .pix2pix import label_set_for_card

OFFICIAL_REPO = "VainF/DeepLabV3Plus-Pytorch"
NUMPY_SCALARS = [np.core.multiarray.scalar, np.dtype, type(np.dtype(np.float64)), type(np.dtype(np.float32))]
LOW, HIGH = "backbone.low_level_features.", "backbone.high_level_features."


def read_vainf(path: str | os.PathLike) -> tuple[Any, dict[str, torch.Tensor]]:
    """(the saved object, its model state without ``module.``), read with ``weights_only=True``."""
    with torch.serialization.safe_globals(NUMPY_SCALARS):
        obj = safe_load(path)
    return obj, state_dict_from(obj, path)


def infer_backbone(sd: dict[str, torch.Tensor], path) -> str:
    if any(".body." in k for k in sd if k.startswith("classifier.")):
        raise CheckpointError(
            f"checkpoint {path} was trained with --separable_conv (AtrousSeparableConvolution head): not supported"
        )
    if "classifier.project.0.weight" not in sd:
        raise CheckpointError(
            f"checkpoint {path} is not a DeepLabV3+ model (no classifier.project.*; DeepLabV3 heads are not supported)"
        )
    if any(k.startswith((LOW, HIGH)) for k in sd):
        return "mobilenetv2"
    blocks = {int(m.group(1)) for k in sd if (m := re.match(r"backbone\.layer3\.(\d+)\.", k))}
    if not blocks:
        what = next((k.split(".")[1] for k in sd if k.startswith("backbone.")), "none")
        raise CheckpointError(
            f"checkpoint {path}: backbone {what!r} is neither ResNet nor MobileNetV2 (hrnet and xception are not supported)"
        )
    n = max(blocks) + 1
    if n not in (6, 23):
        raise CheckpointError(f"checkpoint {path}: layer3 has {n} blocks; ResNet-50 has 6, ResNet-101 23")
    return "resnet50" if n == 6 else "resnet101"


def to_cityserve_keys(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """VainF's MobileNetV2 split back into one ``backbone.features`` list. The split is two slices of
    ``features`` (``[0:4]`` and ``[4:-1]``), and slicing an ``nn.Sequential`` keeps the module names, so
    ``high_level_features.4`` is ``features.4``: only the prefix changes."""
    out = {}
    for k, v in sd.items():
        for prefix in (LOW, HIGH):
            if k.startswith(prefix):
                k = "backbone.features." + k[len(prefix) :]
        out[k] = v
    return out


def output_stride_from(path: str | os.PathLike, flag: Optional[int]) -> int:
    m = re.search(r"(?:^|[_-])os(8|16)(?:[_.-]|$)", Path(path).name)
    named = int(m.group(1)) if m else None
    if flag is not None and named is not None and flag != named:
        raise ConfigError(f"--output-stride {flag} contradicts the file name {Path(path).name} (os{named})")
    return flag or named or 16


def import_deeplab(
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    backbone: Optional[str] = None,
    output_stride: Optional[int] = None,
    label_set: Any = "cityscapes",
    size: tuple[int, int] = (1024, 2048),
    name: Optional[str] = None,
) -> Path:
    """Check the file loads into cityserve's DeepLabV3+, then write ``NAME.pt`` + ``NAME.card.json``."""
    from ..models.deeplab import DeepLabConfig, build
    from ..models.segment import train_id_lut

    obj, sd = read_vainf(path)
    found = infer_backbone(sd, path)
    if backbone is not None and backbone != found:
        raise ConfigError(f"--backbone {backbone} contradicts checkpoint {path}, whose tensors are a {found}")
    final = sd.get("classifier.classifier.3.weight")
    if final is None or final.ndim != 4:
        raise CheckpointError(f"checkpoint {path} has no classifier.classifier.3.weight (the DeepLabV3+ logits)")
    num_classes = int(final.shape[0])
    ls, card_label_set = label_set_for_card(label_set)
    train_id_lut(ls, num_classes)  # every train id the net predicts must name a class of the label set
    h, w = size
    if h < 32 or w < 32:
        raise ConfigError(f"--size {h}x{w} is too small for DeepLabV3+ (at least 32x32)")
    os_ = output_stride_from(path, output_stride)
    cfg = DeepLabConfig(
        backbone=found,
        output_stride=os_,
        num_classes=num_classes,
        label_set=ls.name,
        padding="vainf" if found == "mobilenetv2" else "same",
    )
    net = build(cfg)
    sd = to_cityserve_keys(sd)
    load_strict(net, sd, path, f"DeepLabV3+ {found}")
    check_finite(sd, path)

    provenance: dict[str, Any] = {
        "imported_from": str(Path(path).resolve()),
        "source_sha256": sha256_file(path),
        "official_repo": OFFICIAL_REPO,
        "command": command_line(),
        "created": now_iso(),
        "environment": environment(),
    }
    if isinstance(obj, dict):
        for key in ("cur_itrs", "best_score"):
            if isinstance(obj.get(key), (int, float, np.number)):
                provenance[f"official_{key}"] = float(obj[key]) if key == "best_score" else int(obj[key])
    name = name or f"deeplabv3plus_{found}_{ls.name}_os{os_}"
    card = ModelCard(
        name=name,
        kind="segmenter",
        arch="deeplabv3plus",
        config=dataclasses.asdict(cfg),
        label_set=card_label_set,
        height=h,
        width=w,
        provenance=provenance,
    )
    return save_checkpoint(card, net.state_dict(), out_dir, stem=name)

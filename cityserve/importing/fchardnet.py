"""Import an official FCHarDNet best-model file (``{"epoch", "model_state", "best_iou"}``, keys
prefixed ``module.``) as it is: weights + a segmenter model card with the official preprocessing."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Optional

from ..cards import ModelCard, command_line, environment, now_iso, sha256_file
from ..checkpoints import check_finite, load_strict, safe_load, save_checkpoint, state_dict_from
from ..errors import CheckpointError, ConfigError
from ..models.fchardnet import FCHarDNet, FCHarDNetConfig
from ..models.segment import train_id_lut
from .pix2pix import label_set_for_card

OFFICIAL_REPO = "PingoLH/FCHarDNet"


def import_fchardnet(
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    label_set: Any = "cityscapes",
    size: tuple[int, int] = (1024, 2048),
    name: Optional[str] = None,
) -> Path:
    """Check the file loads into hardnet70, then write ``NAME.pt`` + ``NAME.card.json``; returns the card."""
    obj = safe_load(path)
    sd = state_dict_from(obj, path)
    final = sd.get("finalConv.weight")
    if final is None or final.ndim != 4:
        raise CheckpointError(f"checkpoint {path} is not an FCHarDNet model (no finalConv.weight)")
    num_classes = int(final.shape[0])
    ls, card_label_set = label_set_for_card(label_set)
    train_id_lut(ls, num_classes)  # every train id the net predicts must name a class of the label set
    h, w = size
    if h % 32 or w % 32:
        raise ConfigError(f"--size {h}x{w}: FCHarDNet needs height and width that are multiples of 32")
    cfg = FCHarDNetConfig(num_classes=num_classes, label_set=ls.name)
    net = FCHarDNet(num_classes)
    load_strict(net, sd, path, "FCHarDNet hardnet70")
    check_finite(sd, path)

    provenance: dict[str, Any] = {
        "imported_from": str(Path(path).resolve()),
        "source_sha256": sha256_file(path),
        "official_repo": OFFICIAL_REPO,
        "command": command_line(),
        "created": now_iso(),
        "environment": environment(),
    }
    for key in ("epoch", "best_iou"):
        if isinstance(obj, dict) and isinstance(obj.get(key), (int, float)):
            provenance[f"official_{key}"] = obj[key]
    name = name or f"fchardnet70_{ls.name}"
    card = ModelCard(
        name=name,
        kind="segmenter",
        arch="fchardnet",
        config=dataclasses.asdict(cfg),
        label_set=card_label_set,
        height=h,
        width=w,
        provenance=provenance,
    )
    return save_checkpoint(card, net.state_dict(), out_dir, stem=name)

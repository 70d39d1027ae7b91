"""Import junyanz pix2pix ``latest_net_G.pth`` (U-Net generator) as it is: weights + model card.

The file is a plain state dict (``base_model.save_networks``). Everything the card needs that the
keys tell is read from them (ngf, input/output channels, U-Net depth, batch vs instance norm); what
they cannot tell (the label set, how labels were fed, the resolution) comes from the user and is
checked against the weights.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

import torch

from ..cards import ModelCard, command_line, environment, now_iso, sha256_file
from ..checkpoints import check_finite, load_strict, safe_load, save_checkpoint, state_dict_from
from ..errors import CheckpointError, ConfigError
from ..labels import get_label_set
from ..labels.builtin import BUILTIN_NAMES
from ..models.pix2pix import Pix2PixConfig, UnetGenerator

OFFICIAL_REPO = "junyanz/pytorch-CycleGAN-and-pix2pix"
DOWNS_TO_NETG = {7: "unet_128", 8: "unet_256"}


def label_set_for_card(spec: Any) -> tuple[Any, str | dict]:
    """(LabelSet, what the card stores): a built-in's name, or a user's set as a full dict."""
    ls = get_label_set(spec)
    return ls, (ls.name if ls.name in BUILTIN_NAMES else ls.to_dict())


def infer_unet(sd: Mapping[str, torch.Tensor], path: str | os.PathLike) -> dict[str, Any]:
    """ngf, input_nc, output_nc, num_downs and norm of an official U-Net state dict."""
    first = sd.get("model.model.0.weight")
    last = sd.get("model.model.3.weight")
    if first is None or last is None or first.ndim != 4 or last.ndim != 4:
        raise CheckpointError(
            f"checkpoint {path} is not a pix2pix U-Net generator (no model.model.0.weight / "
            f"model.model.3.weight; resnet_9blocks generators are not supported)"
        )
    prefix, num_downs = "model.model.1.", 2
    while f"{prefix}model.3.model.1.weight" in sd:
        prefix += "model.3."
        num_downs += 1
    if "model.model.1.model.2.running_mean" in sd:
        norm = "batch"
    elif "model.model.1.model.1.bias" in sd:
        norm = "instance"
    else:
        raise CheckpointError(
            f"checkpoint {path}: cannot tell the U-Net's normalization (neither batch-norm "
            f"statistics nor conv biases found)"
        )
    return {
        "ngf": int(first.shape[0]),
        "input_nc": int(first.shape[1]),
        "output_nc": int(last.shape[1]),
        "num_downs": num_downs,
        "norm": norm,
    }


def import_pix2pix(
    path: str | os.PathLike,
    label_set: Any,
    size: tuple[int, int],
    input_mode: Optional[str],
    out_dir: str | os.PathLike,
    name: Optional[str] = None,
) -> Path:
    """Check ``latest_net_G.pth`` against the options, then write ``NAME.pt`` + ``NAME.card.json``
    into ``out_dir``; returns the card path. ``input_mode`` None: "color" for 3 input channels, else "onehot"."""
    if input_mode not in (None, "onehot", "color"):
        raise ConfigError(f"--input must be 'onehot' or 'color', not {input_mode!r}")
    sd = state_dict_from(safe_load(path), path)
    arch = infer_unet(sd, path)
    if input_mode is None:
        input_mode = "color" if arch["input_nc"] == 3 else "onehot"
    if arch["num_downs"] not in DOWNS_TO_NETG:
        raise CheckpointError(
            f"checkpoint {path} is a U-Net with {arch['num_downs']} downsamplings; "
            f"supported: unet_128 (7), unet_256 (8)"
        )
    ls, card_label_set = label_set_for_card(label_set)
    if input_mode == "onehot":
        if arch["input_nc"] < ls.num_ids:
            raise ConfigError(
                f"checkpoint {path} takes {arch['input_nc']} input channels, fewer than the "
                f"{ls.num_ids} ids of label set {ls.name!r}: wrong --label-set, or --input color?"
            )
        label_nc = arch["input_nc"]
    else:
        if arch["input_nc"] != 3:
            raise ConfigError(
                f"checkpoint {path} takes {arch['input_nc']} input channels; --input color needs 3 "
                f"(use --input onehot for one-hot label input)"
            )
        label_nc = ls.num_ids
    if arch["output_nc"] != 3:
        raise CheckpointError(f"checkpoint {path} outputs {arch['output_nc']} channels, not an RGB photo (3)")
    h, w = size
    step = 2 ** arch["num_downs"]
    if h % step or w % step:
        raise ConfigError(
            f"--size {h}x{w}: a {DOWNS_TO_NETG[arch['num_downs']]} generator needs height and "
            f"width that are multiples of {step}"
        )
    cfg = Pix2PixConfig(
        label_nc=label_nc,
        input_mode=input_mode,
        output_nc=3,
        ngf=arch["ngf"],
        netG=DOWNS_TO_NETG[arch["num_downs"]],
        norm=arch["norm"],
        use_dropout=True,
    )
    net = UnetGenerator(cfg.input_nc, cfg.output_nc, cfg.num_downs, cfg.ngf, cfg.norm, cfg.use_dropout)
    load_strict(net, sd, path, f"a {cfg.netG} generator with ngf {cfg.ngf}")
    check_finite(sd, path)

    name = name or f"pix2pix_{ls.name}_{h}x{w}"
    card = ModelCard(
        name=name,
        kind="generator",
        arch="pix2pix",
        config=dataclasses.asdict(cfg),
        label_set=card_label_set,
        height=h,
        width=w,
        provenance={
            "imported_from": str(Path(path).resolve()),
            "source_sha256": sha256_file(path),
            "official_repo": OFFICIAL_REPO,
            "command": command_line(),
            "created": now_iso(),
            "environment": environment(),
        },
        extra={"mode": "eval (dropout off, batch-norm running statistics)"},
    )
    return save_checkpoint(card, net.state_dict(), out_dir, stem=name)

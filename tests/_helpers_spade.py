"""Helpers shared by the SPADE tests: fixture inputs, tiny random models with non-trivial statistics."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from cityserve.cards import ModelCard
from cityserve.checkpoints import save_checkpoint
from cityserve.models.render import instance_edges, one_hot
from cityserve.models.spade import ENCODER_PREFIX, ConvEncoder, SPADEConfig, SPADEGenerator

CONFIG_KEYS = (
    "label_nc",
    "contain_dontcare_label",
    "no_instance",
    "ngf",
    "num_upsampling_layers",
    "crop_size",
    "aspect_ratio",
    "use_vae",
    "z_dim",
    "norm_G",
    "norm_E",
)


def fixture_config(fixtures_dir: Path, name: str) -> dict:
    return json.loads((fixtures_dir / "spade" / f"{name}_config.json").read_text())


def spade_config(fixtures_dir: Path, name: str, upsampling: Optional[str] = None) -> SPADEConfig:
    opts = fixture_config(fixtures_dir, name)["options"]
    kw = {k: opts[k] for k in CONFIG_KEYS}
    if upsampling:
        kw["num_upsampling_layers"] = upsampling
    return SPADEConfig(**kw)


def load_pt(fixtures_dir: Path, name: str, what: str):
    return torch.load(fixtures_dir / "spade" / f"{name}_{what}.pt", map_location="cpu", weights_only=True)


def fixture_input(fixtures_dir: Path, name: str, cfg: SPADEConfig) -> torch.Tensor:
    """The generator input as SPADE assembles it: one-hot labels (+ dontcare) (+ instance edges)."""
    x = one_hot(load_pt(fixtures_dir, name, "labels"), cfg.num_classes)
    if not cfg.no_instance:
        x = torch.cat([x, instance_edges(load_pt(fixtures_dir, name, "instance"))], dim=1)
    return x


def input_sha256(x: torch.Tensor) -> str:
    return hashlib.sha256(x.contiguous().numpy().astype(np.float32).tobytes()).hexdigest()


def contract_uint8(y: torch.Tensor) -> np.ndarray:
    """docs/architecture.md's conversion of a generator output [1,3,H,W] -> uint8 [H,W,3]."""
    return torch.clamp(torch.round((y + 1) * 127.5), 0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """O(1) weights, non-trivial batch-norm statistics and unconverged spectral-norm vectors, so that
    a folding or normalization mistake shows in the outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) * 1.5 + 0.5)
            elif name.endswith("running_mean"):
                t.copy_(torch.randn(t.shape, generator=g) * 0.3)
            elif name.endswith(("weight_u", "weight_v")):
                v = torch.randn(t.shape, generator=g)
                t.copy_(v / v.norm())
            else:
                fan_in = max(1, t[0].numel()) if t.ndim > 1 else 1
                t.copy_(torch.randn(t.shape, generator=g) / (fan_in**0.5 if t.ndim > 1 else 10))
        for m in model.modules():  # one power iteration: sigma near, but not at, the exact norm
            if hasattr(m, "weight_orig"):
                w = m.weight_orig.reshape(m.weight_orig.shape[0], -1)
                u = torch.nn.functional.normalize(w @ m.weight_v, dim=0)
                m.weight_u.copy_(u)
                m.weight_v.copy_(torch.nn.functional.normalize(w.t() @ u, dim=0))
    return model.eval()


def tiny_config(**kw) -> SPADEConfig:
    base = dict(label_nc=35, ngf=2, crop_size=64, aspect_ratio=2.0, num_upsampling_layers="normal")
    base.update(kw)
    return SPADEConfig(**base)


def tiny_card(
    out_dir: Path, cfg: SPADEConfig, label_set="cityscapes", name: str = "tiny", encoder: bool = False, seed: int = 0
) -> Path:
    """A random SPADE model saved with save_checkpoint (netE.* keys beside netG's for encoder=True)."""
    torch.manual_seed(seed)
    gen = randomize_(SPADEGenerator(cfg), seed)
    sd = dict(gen.state_dict())
    encoder_section = None
    if encoder:
        enc = randomize_(ConvEncoder(cfg), seed + 1)
        sd.update({ENCODER_PREFIX + k: v for k, v in enc.state_dict().items()})
        encoder_section = {"prefix": ENCODER_PREFIX, "norm_E": cfg.norm_E}
    card = ModelCard(
        name=name,
        kind="generator",
        arch="spade",
        config=dataclasses.asdict(cfg),
        label_set=label_set,
        height=cfg.height,
        width=cfg.width,
        encoder=encoder_section,
    )
    return save_checkpoint(card, sd, out_dir, stem=name)

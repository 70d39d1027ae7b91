"""Tiny model cards for the export tests: real cityserve modules, random but non-trivial weights."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from cityserve.cards import ModelCard, load_card
from cityserve.checkpoints import save_checkpoint


def randomize_norm_stats(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial batch-norm running statistics, so a wrong eps / missing normalization shows."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.25)


def converge_spectral_norm(model: nn.Module) -> None:
    """Stored u, v = the top singular vectors (what long training's power iteration reaches), so the
    folded weights have unit spectral norm and activations stay O(1) instead of exploding."""
    with torch.no_grad():
        for m in model.modules():
            if hasattr(m, "weight_orig") and hasattr(m, "weight_u"):
                w = m.weight_orig.reshape(m.weight_orig.shape[0], -1)
                u, _, vh = torch.linalg.svd(w, full_matrices=False)
                m.weight_u.copy_(u[:, 0])
                m.weight_v.copy_(vh[0])


def spade_card(tmp: Path, name: str = "spade", label_set: str = "cityscapes", seed: int = 0, **cfg) -> ModelCard:
    from cityserve.models.spade import SPADEConfig, SPADEGenerator

    base = dict(label_nc=35, ngf=2, crop_size=64, aspect_ratio=2.0, num_upsampling_layers="normal")
    base.update(cfg)
    c = SPADEConfig(**base)
    torch.manual_seed(seed)
    g = SPADEGenerator(c)
    converge_spectral_norm(g)
    randomize_norm_stats(g, seed)
    card = ModelCard(
        name=name,
        kind="generator",
        arch="spade",
        config=dataclasses.asdict(c),
        label_set=label_set,
        height=c.height,
        width=c.width,
    )
    return load_card(save_checkpoint(card, g.state_dict(), tmp, name))


def pix2pix_card(tmp: Path, input_mode: str = "onehot", seed: int = 0) -> ModelCard:
    from cityserve.models.pix2pix import Pix2PixConfig, build_generator

    c = Pix2PixConfig(label_nc=35, input_mode=input_mode, ngf=2, netG="unet_128")
    torch.manual_seed(seed)
    g = build_generator(c)
    randomize_norm_stats(g, seed)
    card = ModelCard(
        name=f"p2p_{input_mode}",
        kind="generator",
        arch="pix2pix",
        config=dataclasses.asdict(c),
        label_set="cityscapes",
        height=128,
        width=128,
    )
    return load_card(save_checkpoint(card, g.state_dict(), tmp, card.name))


def deeplab_card(tmp: Path, seed: int = 0) -> ModelCard:
    from cityserve.models.deeplab import DeepLabConfig, build

    c = DeepLabConfig(backbone="mobilenetv2", output_stride=16)
    torch.manual_seed(seed)
    net = build(c)
    randomize_norm_stats(net, seed)
    card = ModelCard(
        name="deeplab",
        kind="segmenter",
        arch="deeplabv3plus",
        config=dict(vars(c)),
        label_set="cityscapes",
        height=64,
        width=64,
    )
    return load_card(save_checkpoint(card, net.state_dict(), tmp, "deeplab"))


def ort_run(path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]

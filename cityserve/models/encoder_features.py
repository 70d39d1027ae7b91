"""The deepest encoder features of a segmenter: what the segmenter-feature Fréchet distance compares.

FID needs pytorch-fid's Inception weights, which a machine without a download cannot have; a segmenter
trained on the same domain can stand in (an in-domain stand-in for FID, not FID: its numbers are not
comparable with published FIDs). Its deep encoder stages see the photo at a coarse scale, where
texture, color and object shape meet.

Which map, and how pooled, was measured (``benchmarks/segfeat_frechet_choice.py``, results in
``benchmarks/studies/segfeat-frechet-choice.md``) for the demo FCHarDNet at 128x256 on 50 held-out
scenes: FCHarDNet's stride-32 stage (the 224-channel 1x1 conv after its fourth HarDNet block) with one
vector per spatial position (4x8 per photo, 1600 vectors: a full-rank 224x224 covariance) puts both demo
generators at twice the distance between real photos of two different seed ranges, with a bootstrap
spread of 12-15 %. Global average pooling gives 50 vectors for a 224- or 320-d covariance (rank 49), and
the deepest stage (stride 64, 320 channels) only 2x4 positions per photo; both spread more. DeepLabV3+
uses its backbone output (stride 16 or 8; 2048 channels for ResNets, 320 for MobileNetV2).

``capture_encoder`` hooks that module, so the features come from the same forward pass that segments
the photo (no second run). ``feature_vectors`` turns each map into one vector per spatial position.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError


def encoder_module(net: nn.Module) -> tuple[nn.Module, int, str]:
    """(module whose output is the deepest encoder map, index of that map in the module's output or -1
    for a tensor, a one-line description) for the segmenter families cityserve knows."""
    from .deeplab import DeepLabV3Plus
    from .fchardnet import FCHarDNet

    if isinstance(net, FCHarDNet):
        i = net.shortcut_layers[-1] + 1  # the 1x1 conv after the last block that has a skip: stride 32
        ch = net.base[i].conv.out_channels
        return net.base[i], -1, f"FCHarDNet stride-32 encoder stage (base[{i}], {ch} channels), one vector per position"
    if isinstance(net, DeepLabV3Plus):
        ch = net.backbone.out_channels
        return net.backbone, 1, f"DeepLabV3+ backbone output ({ch} channels), one vector per position"
    raise ConfigError(f"no encoder features known for {type(net).__name__} (FCHarDNet and DeepLabV3+ have them)")


@contextlib.contextmanager
def capture_encoder(net: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Within the block, every forward pass of ``net`` appends its deepest encoder map [B,C,h,w] (float32,
    detached, on the CPU) to the yielded list."""
    module, index, _ = encoder_module(net)
    maps: list[torch.Tensor] = []

    def hook(_mod, _inp, out):
        t = out if index < 0 else out[index]
        maps.append(t.detach().float().cpu())

    handle = module.register_forward_hook(hook)
    try:
        yield maps
    finally:
        handle.remove()


def feature_vectors(fmap: torch.Tensor | np.ndarray, pooling: str = "positions") -> np.ndarray:
    """float64 [N, C] feature vectors of encoder maps [B,C,h,w].

    ``positions``: one vector per image and spatial position (B*h*w vectors); ``global``: the global
    average of each image (B vectors, the way FID pools Inception's last map).
    """
    f = torch.as_tensor(fmap).double()
    if f.ndim != 4:
        raise ValueError(f"encoder maps must be [B,C,h,w], got shape {tuple(f.shape)}")
    if pooling == "global":
        return f.mean(dim=(2, 3)).numpy()
    if pooling == "positions":
        return f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]).numpy()
    raise ConfigError(f"feature pooling must be 'positions' or 'global', not {pooling!r}")

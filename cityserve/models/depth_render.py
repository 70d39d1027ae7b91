"""The depth-aware graphs (Sun, Fu and Huang's two SPADE stages), in ``cityserve.contract``'s terms.

    label2depth        labels [+ instances]          -> depth float32 [B,1,H,W] metres
    depth2photo        labels [+ instances] + depth  -> image uint8 [B,H,W,3]
    label2depth2photo  labels [+ instances]          -> image, and the depth it used

Each stage's generator works in normalised log-depth; the graphs take and give metres, converting
with the normalisation each stage was trained with (``norm``: an object with tensor ``normalise`` /
``metres``, ``cityserve.data.depth.LogDepth`` from the card), so a user's own depth map, stage 1's
prediction and the true depth all enter stage 2 the same way. Ops are the render graph's plus
clamp / log / exp, which every exporter handles.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from .render import instance_edges, one_hot, to_uint8_image


class _Semantics(nn.Module):
    def __init__(self, generator: nn.Module, num_classes: int, use_instance: bool, norm: Any):
        super().__init__()
        self.generator = generator
        self.num_classes = int(num_classes)
        self.use_instance = bool(use_instance)
        self.norm = norm

    def semantics(self, labels: torch.Tensor, instances: Optional[torch.Tensor]) -> torch.Tensor:
        x = one_hot(labels, self.num_classes)
        if self.use_instance:
            x = torch.cat([x, instance_edges(instances)], dim=1)
        return x

    def generate(self, x: torch.Tensor) -> torch.Tensor:
        """The generator on ``x``; a generator with OASIS 3D noise gets z = 0 (the noise's mean): the stages'
        contract has no latent input, and a noise sampled per call would make every render differ."""
        noise = int(getattr(getattr(self.generator, "cfg", None), "noise_dim", 0) or 0)
        if not noise:
            return self.generator(x)
        return self.generator(x, torch.zeros(x.shape[0], noise, dtype=x.dtype, device=x.device))


class DepthGraph(_Semantics):
    """Stage 1: ``labels [+ instances] -> depth`` float32 [B,1,H,W] in metres."""

    def forward(self, labels: torch.Tensor, instances: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.norm.metres(self.generate(self.semantics(labels, instances)))


class PhotoFromDepthGraph(_Semantics):
    """Stage 2: ``labels [+ instances] + depth`` (float32 [B,1,H,W] metres) ``-> image`` uint8 [B,H,W,3]."""

    def forward(
        self, labels: torch.Tensor, instances: Optional[torch.Tensor] = None, depth: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        x = torch.cat([self.semantics(labels, instances), self.norm.normalise(depth)], dim=1)
        return to_uint8_image(self.generate(x))


class LabelToDepthToPhoto(nn.Module):
    """Both stages chained: ``labels [+ instances] -> (image, depth)``; stage 2 sees stage 1's metres."""

    def __init__(self, depth: DepthGraph, photo: PhotoFromDepthGraph):
        super().__init__()
        self.depth = depth
        self.photo = photo
        self.use_instance = depth.use_instance or photo.use_instance

    def forward(
        self, labels: torch.Tensor, instances: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.depth(labels, instances)
        return self.photo(labels, instances, d), d

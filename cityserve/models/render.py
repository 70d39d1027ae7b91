"""The render graph: the whole label -> photo computation as one module, in ``cityserve.contract``'s terms.

    labels    uint8/int32 [B,1,H,W]  label ids of the model's label set (= generator channel indices)
    instances int32       [B,1,H,W]  optional; boundary edges are computed here
    z         float32     [B,z_dim]  optional style latent (VAE models)
    image     uint8       [B,H,W,3]  clamp(round((y + 1) * 127.5), 0, 255) of the generator's tanh y

One-hot encoding, instance edges and the uint8 conversion are written with ops every exporter handles
(comparisons against an arange, pads, clamp/round), so the same module runs in torch, exports to ONNX
for onnxruntime / TensorRT, and compiles with AOTInductor.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .. import contract
from ..labels import get_label_set
from .registry import build_from_card, render_io


def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[B,1,H,W] integer ids -> [B,C,H,W] float one-hot (ids >= C give all-zero pixels)."""
    classes = torch.arange(num_classes, device=labels.device, dtype=torch.int32).view(1, num_classes, 1, 1)
    return (labels.to(torch.int32) == classes).to(torch.float32)


def instance_edges(instances: torch.Tensor) -> torch.Tensor:
    """SPADE's ``get_edges``: a pixel is an edge when any 4-neighbour has a different instance id
    (both sides of a boundary are marked). [B,1,H,W] int -> [B,1,H,W] float32 in {0, 1}."""
    t = instances.to(torch.int32)
    dx = (t[:, :, :, 1:] != t[:, :, :, :-1]).to(torch.float32)  # [B,1,H,W-1]
    dy = (t[:, :, 1:, :] != t[:, :, :-1, :]).to(torch.float32)  # [B,1,H-1,W]
    edge = F.pad(dx, (1, 0)) + F.pad(dx, (0, 1)) + F.pad(dy, (0, 0, 1, 0)) + F.pad(dy, (0, 0, 0, 1))
    return (edge > 0).to(torch.float32)


def to_uint8_image(y: torch.Tensor) -> torch.Tensor:
    """Generator output [B,3,H,W] in [-1,1] -> uint8 [B,H,W,3], the docs/architecture.md conversion."""
    # permute before the cast: TensorRT takes uint8 only at the network's edges (no uint8 Transpose)
    return torch.clamp(torch.round((y + 1.0) * 127.5), 0.0, 255.0).permute(0, 2, 3, 1).to(torch.uint8)


class RenderGraph(nn.Module):
    """Wraps a generator ``g(semantics [B,C(+1),H,W], z) -> [B,3,H,W] in [-1,1]`` into the contract.

    ``input_mode`` "onehot" feeds one-hot ids (+ the instance-edge channel when ``use_instance``);
    "color" feeds the palette color of each id scaled to [-1, 1] (pix2pix trained on color label
    images). ``z_dim`` > 0 means the generator takes the latent ``z`` as an input.
    """

    def __init__(
        self,
        generator: nn.Module,
        num_classes: int,
        use_instance: bool = False,
        z_dim: int = 0,
        input_mode: str = "onehot",
        palette: Optional[torch.Tensor] = None,
    ):
        super().__init__()
        if input_mode not in ("onehot", "color"):
            raise ValueError(f"input_mode must be 'onehot' or 'color', not {input_mode!r}")
        if input_mode == "color" and palette is None:
            raise ValueError("input_mode 'color' needs the label set's palette")
        self.generator = generator
        self.num_classes = int(num_classes)
        self.use_instance = bool(use_instance)
        self.z_dim = int(z_dim)
        self.input_mode = input_mode
        if palette is not None:
            self.register_buffer("palette", torch.as_tensor(palette, dtype=torch.float32).reshape(-1, 3) / 127.5 - 1.0)
        else:
            self.palette = None

    @property
    def input_names(self) -> list[str]:
        names = [contract.LABELS]
        if self.use_instance:
            names.append(contract.INSTANCES)
        if self.z_dim:
            names.append(contract.Z)
        return names

    def semantics(self, labels: torch.Tensor, instances: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.input_mode == "onehot":
            x = one_hot(labels, self.num_classes)
        else:
            idx = labels.to(torch.int64).clamp(0, self.palette.shape[0] - 1)[:, 0]  # [B,H,W]
            x = self.palette[idx].permute(0, 3, 1, 2)
        if self.use_instance:
            x = torch.cat([x, instance_edges(instances)], dim=1)
        return x

    def forward(
        self, labels: torch.Tensor, instances: Optional[torch.Tensor] = None, z: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        x = self.semantics(labels, instances)
        y = self.generator(x, z) if self.z_dim else self.generator(x)
        return to_uint8_image(y)


def render_graph_from_card(card, inference: bool = True) -> RenderGraph:
    """The card's generator wrapped in the render contract, weights loaded (sha256-checked), eval mode."""
    io = render_io(card)
    generator = build_from_card(card, inference=inference)
    palette = get_label_set(card.label_set).palette if io.input_mode == "color" else None
    return RenderGraph(generator, io.num_classes, io.use_instance, io.z_dim, io.input_mode, palette).eval()

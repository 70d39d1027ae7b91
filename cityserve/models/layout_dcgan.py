"""DCGAN (Radford et al. 2016) for street layouts: the baseline of Aharoni and Israelov's two-stage generator.

The generator projects z onto the base grid (4 x W/H*4) with a transposed convolution, then doubles the
resolution with 4x4 stride-2 transposed convolutions + BatchNorm + ReLU, halving the channels, and ends
with per-class logits [B, num_classes, H, W] (where DCGAN had tanh RGB). The discriminator mirrors it:
4x4 stride-2 convolutions + BatchNorm (not on the first) + LeakyReLU 0.2, and a last convolution over
the whole base grid to one score. Weights ~ N(0, 0.02), BatchNorm weights ~ N(1, 0.02), as DCGAN.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from .layout_stylegan import base_grid


@dataclasses.dataclass
class LayoutDCGANConfig:
    num_classes: int = 35
    height: int = 128
    width: int = 256
    z_dim: int = 100
    ngf: int = 32  # generator channels at full resolution (x2 per halving, capped at 8 x ngf)
    ndf: int = 32  # discriminator channels at full resolution

    def __post_init__(self) -> None:
        base_grid(self.height, self.width)


def _width(base: int, level_from_top: int) -> int:
    return base * min(8, 2**level_from_top)


class DCGANGenerator(nn.Module):
    def __init__(self, cfg: LayoutDCGANConfig):
        super().__init__()
        self.cfg = cfg
        self.z_dim = cfg.z_dim
        h0, w0, n_up = base_grid(cfg.height, cfg.width)
        ch = _width(cfg.ngf, n_up)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(cfg.z_dim, ch, (h0, w0), bias=False),
            nn.BatchNorm2d(ch),
            nn.ReLU(True),
        ]
        for k in range(n_up - 1, 0, -1):
            nxt = _width(cfg.ngf, k)
            layers += [nn.ConvTranspose2d(ch, nxt, 4, 2, 1, bias=False), nn.BatchNorm2d(nxt), nn.ReLU(True)]
            ch = nxt
        layers.append(nn.ConvTranspose2d(ch, cfg.num_classes, 4, 2, 1) if n_up else nn.Conv2d(ch, cfg.num_classes, 1))
        self.main = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z.reshape(z.shape[0], -1, 1, 1))


class DCGANDiscriminator(nn.Module):
    def __init__(self, cfg: LayoutDCGANConfig):
        super().__init__()
        h0, w0, n_up = base_grid(cfg.height, cfg.width)
        layers: list[nn.Module] = []
        ch_in = cfg.num_classes
        for k in range(n_up):
            ch = _width(cfg.ndf, k)
            layers.append(nn.Conv2d(ch_in, ch, 4, 2, 1, bias=False))
            if k:
                layers.append(nn.BatchNorm2d(ch))
            layers.append(nn.LeakyReLU(0.2, True))
            ch_in = ch
        layers.append(nn.Conv2d(ch_in, 1, (h0, w0)))
        self.main = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).flatten(1)


def dcgan_init(net: nn.Module) -> nn.Module:
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return net

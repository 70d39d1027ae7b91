"""FCHarDNet (PingoLH/FCHarDNet, ``hardnet`` = the 70-layer Cityscapes model): a fast segmenter.

Written to the official ``ptsemseg/models/hardnet.py``: module names (``base.N``, ``denseBlocksUp``,
``conv1x1_up``, ``finalConv``, ``layers.K.conv`` / ``.norm``) match the official state dict, so its
``*_best_model.pkl`` (``{"model_state": ...}`` with DataParallel's ``module.`` prefix) loads as it is.
HarDNet's harmonic links (``get_link``) decide which earlier layers each layer reads and how wide it
is; the decoder upsamples bilinearly with ``align_corners=True`` as the official code does, and the
logits come back at the input resolution.

Input: BGR, normalized with the official mean/std (see ``FCHarDNetConfig``); the segment graph does it.
H and W should be multiples of 32 (five stride-2 stages).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .registry import Family, register_family

FIRST_CH = (16, 24, 32, 48)
CH_LIST = (64, 96, 160, 224, 320)
GROWTH = (10, 16, 18, 24, 32)
N_LAYERS = (4, 4, 8, 8, 8)
GRMUL = 1.7


@dataclasses.dataclass
class FCHarDNetConfig:
    """hardnet70 options plus what the segment graph needs: the label set its train ids refer to and
    the input normalization. ``mean``/``std`` are in [0, 1] units and in the network's channel order
    (BGR when ``bgr``): the official values."""

    num_classes: int = 19
    label_set: str = "cityscapes"
    mean: tuple = (0.406, 0.456, 0.485)
    std: tuple = (0.225, 0.224, 0.229)
    bgr: bool = True
    arch: str = "hardnet70"

    def __post_init__(self) -> None:
        self.mean, self.std = tuple(float(v) for v in self.mean), tuple(float(v) for v in self.std)
        if self.arch != "hardnet70":
            raise ConfigError(f"fchardnet arch {self.arch!r} is not supported; only 'hardnet70'")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ConfigError(f"fchardnet mean/std need 3 values each, got {self.mean} / {self.std}")


class ConvLayer(nn.Sequential):
    """conv (no bias, 'same' padding) -> BN -> ReLU; keys ``conv``, ``norm``."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1):
        super().__init__()
        self.add_module(
            "conv",
            nn.Conv2d(in_channels, out_channels, kernel_size=kernel, stride=stride, padding=kernel // 2, bias=False),
        )
        self.add_module("norm", nn.BatchNorm2d(out_channels))
        self.add_module("relu", nn.ReLU())


def get_link(layer: int, base_ch: int, growth_rate: int, grmul: float) -> tuple[int, int, list[int]]:
    """Harmonic dense links: layer ``l`` reads layers ``l - 2**i`` for every ``2**i`` dividing ``l``,
    and is ``growth * grmul**(#links-1)`` wide (rounded to even). Returns (out_ch, in_ch, links)."""
    if layer == 0:
        return base_ch, 0, []
    out_channels: float = growth_rate
    link = []
    for i in range(10):
        dv = 2**i
        if layer % dv == 0:
            link.append(layer - dv)
            if i > 0:
                out_channels *= grmul
    out_channels = int(int(out_channels + 1) / 2) * 2
    in_channels = sum(get_link(k, base_ch, growth_rate, grmul)[0] for k in link)
    return out_channels, in_channels, link


class HarDBlock(nn.Module):
    """A harmonic dense block; outputs the concatenation of its odd layers and its last one."""

    def __init__(self, in_channels: int, growth_rate: int, grmul: float, n_layers: int):
        super().__init__()
        self.links: list[list[int]] = []
        layers = []
        self.out_channels = 0
        for i in range(n_layers):
            outch, inch, link = get_link(i + 1, in_channels, growth_rate, grmul)
            self.links.append(link)
            layers.append(ConvLayer(inch, outch))
            if i % 2 == 0 or i == n_layers - 1:
                self.out_channels += outch
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [x]
        for link, layer in zip(self.links, self.layers):
            tin = [outs[i] for i in link]
            outs.append(layer(torch.cat(tin, 1) if len(tin) > 1 else tin[0]))
        t = len(outs)
        return torch.cat([outs[i] for i in range(t) if i == t - 1 or i % 2 == 1], 1)


def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=(like.shape[2], like.shape[3]), mode="bilinear", align_corners=True)


class FCHarDNet(nn.Module):
    """hardnet70: [B,3,H,W] normalized BGR -> [B,num_classes,H,W] logits over train ids."""

    def __init__(self, num_classes: int = 19):
        super().__init__()
        self.base = nn.ModuleList(
            [
                ConvLayer(3, FIRST_CH[0], kernel=3, stride=2),
                ConvLayer(FIRST_CH[0], FIRST_CH[1], kernel=3),
                ConvLayer(FIRST_CH[1], FIRST_CH[2], kernel=3, stride=2),
                ConvLayer(FIRST_CH[2], FIRST_CH[3], kernel=3),
            ]
        )
        self.shortcut_layers: list[int] = []
        skip_channels = []
        ch = FIRST_CH[3]
        blks = len(N_LAYERS)
        for i in range(blks):
            blk = HarDBlock(ch, GROWTH[i], GRMUL, N_LAYERS[i])
            ch = blk.out_channels
            skip_channels.append(ch)
            self.base.append(blk)
            if i < blks - 1:
                self.shortcut_layers.append(len(self.base) - 1)
            self.base.append(ConvLayer(ch, CH_LIST[i], kernel=1))
            ch = CH_LIST[i]
            if i < blks - 1:
                self.base.append(nn.AvgPool2d(kernel_size=2, stride=2))

        self.n_blocks = blks - 1
        self.denseBlocksUp = nn.ModuleList()
        self.conv1x1_up = nn.ModuleList()
        prev = ch
        for i in range(self.n_blocks - 1, -1, -1):
            cur = prev + skip_channels[i]
            self.conv1x1_up.append(ConvLayer(cur, cur // 2, kernel=1))
            blk = HarDBlock(cur // 2, GROWTH[i], GRMUL, N_LAYERS[i])
            self.denseBlocksUp.append(blk)
            prev = blk.out_channels
        self.finalConv = nn.Conv2d(prev, num_classes, kernel_size=1, stride=1, padding=0, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size_in = x
        skips = []
        for i, layer in enumerate(self.base):
            x = layer(x)
            if i in self.shortcut_layers:
                skips.append(x)
        out = x
        for i in range(self.n_blocks):
            skip = skips.pop()
            out = torch.cat([_up(out, skip), skip], 1)
            out = self.conv1x1_up[i](out)
            out = self.denseBlocksUp[i](out)
        out = self.finalConv(out)
        return _up(out, size_in)


def build(cfg: FCHarDNetConfig) -> FCHarDNet:
    """Random init as the official train.py: xavier-normal conv weights."""
    net = FCHarDNet(cfg.num_classes)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_normal_(m.weight)
    return net


register_family(Family(arch="fchardnet", kind="segmenter", config_cls=FCHarDNetConfig, build=build))

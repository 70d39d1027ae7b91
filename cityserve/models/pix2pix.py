"""pix2pix baseline (junyanz/pytorch-CycleGAN-and-pix2pix): U-Net generator and N-layer PatchGAN.

Module names and the order of layers inside each ``nn.Sequential`` follow the official
``networks.py`` exactly, so ``latest_net_G.pth`` / ``latest_net_D.pth`` load as they are
(``model.model.1.model.3...`` nesting for the U-Net, ``model.N`` for the discriminator).

The official activations are in-place, so there the skip tensor a block concatenates has already
been through its LeakyReLU; the only consumer of that concatenation is the parent's ReLU, for which
LeakyReLU changes nothing (same sign), so plain out-of-place activations give identical outputs and
keep the graph free of aliasing for tracers and exporters.

The generator takes the label map either one-hot (``input_nc`` = number of label ids) or as palette
colors in [-1, 1] (``input_nc`` = 3); the render graph does that conversion (see ``RenderIO``).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import torch
from torch import nn

from ..errors import ConfigError
from ..options import option
from .registry import Family, RenderIO, register_family

NET_G_DOWNS = {"unet_128": 7, "unet_256": 8}


@dataclasses.dataclass
class Pix2PixConfig:
    """Options of a pix2pix model; ``input_nc`` follows from ``label_nc`` and ``input_mode``."""

    label_nc: int = option(cli=False)  # label ids the generator accepts (one-hot channels; palette size in color)
    input_mode: str = option("onehot", "how the label map is fed", cli={"choices": ("onehot", "color")})
    output_nc: int = option(3, cli=False)
    ngf: int = option(64, "generator width")
    netG: str = option("unet_256", "", cli={"choices": tuple(NET_G_DOWNS)})
    norm: str = option("batch", "", cli={"choices": ("batch", "instance")})
    use_dropout: bool = option(True, "dropout in the U-Net decoder")
    # discriminator (training only; not part of imported generator checkpoints)
    ndf: int = option(64, "discriminator width")
    n_layers_D: int = option(3, "PatchGAN layers")

    def __post_init__(self) -> None:
        if self.input_mode not in ("onehot", "color"):
            raise ConfigError(f"pix2pix input_mode must be 'onehot' or 'color', not {self.input_mode!r}")
        if self.netG not in NET_G_DOWNS:
            raise ConfigError(f"pix2pix netG {self.netG!r} is not supported; choose from {', '.join(NET_G_DOWNS)}")
        if self.norm not in ("batch", "instance"):
            raise ConfigError(f"pix2pix norm must be 'batch' or 'instance', not {self.norm!r}")
        if self.label_nc < 1:
            raise ConfigError(f"pix2pix label_nc must be >= 1, not {self.label_nc}")

    @property
    def input_nc(self) -> int:
        return self.label_nc if self.input_mode == "onehot" else 3

    @property
    def num_downs(self) -> int:
        return NET_G_DOWNS[self.netG]


def norm_layer(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=True, track_running_stats=True)
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class UnetSkipConnectionBlock(nn.Module):
    """One U-Net level: down (LeakyReLU 0.2 -> conv4x4/2 -> norm), the inner levels, up (ReLU ->
    convT4x4/2 -> norm [-> dropout]); its output is ``cat(input, up path)``."""

    def __init__(
        self,
        outer_nc: int,
        inner_nc: int,
        input_nc: Optional[int] = None,
        submodule: Optional[nn.Module] = None,
        outermost: bool = False,
        innermost: bool = False,
        norm: str = "batch",
        use_dropout: bool = False,
    ):
        super().__init__()
        self.outermost = outermost
        use_bias = norm == "instance"  # batch norm has its own shift, so the official convs drop the bias
        if input_nc is None:
            input_nc = outer_nc
        downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
        downrelu = nn.LeakyReLU(0.2)
        uprelu = nn.ReLU()
        if outermost:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1)
            layers = [downconv, submodule, uprelu, upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
            layers = [downrelu, downconv, uprelu, upconv, norm_layer(norm, outer_nc)]
        else:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
            layers = [
                downrelu,
                downconv,
                norm_layer(norm, inner_nc),
                submodule,
                uprelu,
                upconv,
                norm_layer(norm, outer_nc),
            ]
            if use_dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """junyanz ``UnetGenerator``: ``num_downs`` halvings (8 for unet_256), so H and W must be
    multiples of ``2**num_downs``. ``forward(x)`` maps [B,input_nc,H,W] to tanh output [B,output_nc,H,W]."""

    def __init__(
        self,
        input_nc: int,
        output_nc: int = 3,
        num_downs: int = 8,
        ngf: int = 64,
        norm: str = "batch",
        use_dropout: bool = True,
    ):
        super().__init__()
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, norm=norm, innermost=True)
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, submodule=block, norm=norm, use_dropout=use_dropout)
        block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=block, norm=norm)
        block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=block, norm=norm)
        block = UnetSkipConnectionBlock(ngf, ngf * 2, submodule=block, norm=norm)
        self.model = UnetSkipConnectionBlock(
            output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True, norm=norm
        )
        self.num_downs = num_downs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class NLayerDiscriminator(nn.Module):
    """junyanz ``NLayerDiscriminator`` (n_layers 3 = the 70x70 PatchGAN): raw logits, one per patch.
    Its input is ``cat(label input A, photo B)`` along channels."""

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch"):
        super().__init__()
        use_bias = norm == "instance"
        kw, padw = 4, 1
        seq: list[nn.Module] = [nn.Conv2d(input_nc, ndf, kernel_size=kw, stride=2, padding=padw), nn.LeakyReLU(0.2)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            seq += [
                nn.Conv2d(ndf * prev, ndf * mult, kernel_size=kw, stride=2, padding=padw, bias=use_bias),
                norm_layer(norm, ndf * mult),
                nn.LeakyReLU(0.2),
            ]
        prev, mult = mult, min(2**n_layers, 8)
        seq += [
            nn.Conv2d(ndf * prev, ndf * mult, kernel_size=kw, stride=1, padding=padw, bias=use_bias),
            norm_layer(norm, ndf * mult),
            nn.LeakyReLU(0.2),
        ]
        seq += [nn.Conv2d(ndf * mult, 1, kernel_size=kw, stride=1, padding=padw)]
        self.model = nn.Sequential(*seq)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def init_weights(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """The official ``init_weights(net, 'normal', 0.02)``."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
    return net


def build_generator(cfg: Pix2PixConfig) -> UnetGenerator:
    return init_weights(UnetGenerator(cfg.input_nc, cfg.output_nc, cfg.num_downs, cfg.ngf, cfg.norm, cfg.use_dropout))


def build_discriminator(cfg: Pix2PixConfig) -> NLayerDiscriminator:
    """The conditional PatchGAN for training: input channels = generator input + generator output."""
    return init_weights(NLayerDiscriminator(cfg.input_nc + cfg.output_nc, cfg.ndf, cfg.n_layers_D, cfg.norm))


def _render_io(cfg: Pix2PixConfig) -> RenderIO:
    return RenderIO(num_classes=cfg.label_nc, use_instance=False, z_dim=0, input_mode=cfg.input_mode)


register_family(
    Family(arch="pix2pix", kind="generator", config_cls=Pix2PixConfig, build=build_generator, render_io=_render_io)
)

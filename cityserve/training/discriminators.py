"""SPADE's discriminator: a multiscale PatchGAN (``MultiscaleDiscriminator`` of ``NLayerDiscriminator``s)
with spectral norm + instance norm, returning every layer's features for feature matching.

Module names follow NVlabs SPADE (``discriminator_0.model1.0.weight_orig`` ...), so an official
``latest_net_D.pth`` loads for fine-tuning. pix2pix's own PatchGAN lives in ``cityserve.models.pix2pix``.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm


@dataclasses.dataclass
class MultiscaleDConfig:
    input_nc: int  # label channels (+ dontcare, + instance edge) + 3 image channels
    ndf: int = 64
    n_layers_D: int = 4  # SPADE default
    num_D: int = 2  # SPADE default
    norm_D: str = "spectralinstance"  # "spectralinstance" | "spectralnone" | "instance" | "none"
    get_intermediate_features: bool = True  # needed by feature matching (SPADE: not --no_ganFeat_loss)


def _norm_layer(layer: nn.Conv2d, norm_type: str) -> nn.Module:
    """SPADE's ``get_nonspade_norm_layer``: optional spectral norm, then optional instance/batch norm
    (the conv's bias is dropped before a norm, as it has no effect)."""
    sub = norm_type
    if norm_type.startswith("spectral"):
        layer = spectral_norm(layer)
        sub = norm_type[len("spectral") :]
    if sub in ("none", ""):
        return layer
    if getattr(layer, "bias", None) is not None:
        delattr(layer, "bias")
        layer.register_parameter("bias", None)
    out_ch = layer.out_channels
    if sub == "instance":
        norm = nn.InstanceNorm2d(out_ch, affine=False)
    elif sub == "batch":
        norm = nn.BatchNorm2d(out_ch, affine=True)
    else:
        raise ValueError(f"unknown discriminator norm {norm_type!r}")
    return nn.Sequential(layer, norm)


class NLayerDiscriminator(nn.Module):
    """SPADE's PatchGAN: 4x4 convs, stride 2 except the last two layers, leaky ReLU 0.2."""

    def __init__(self, cfg: MultiscaleDConfig):
        super().__init__()
        kw = 4
        padw = int(math.ceil((kw - 1.0) / 2))
        nf = cfg.ndf
        seq: list[list[nn.Module]] = [
            [nn.Conv2d(cfg.input_nc, nf, kernel_size=kw, stride=2, padding=padw), nn.LeakyReLU(0.2, False)]
        ]
        for n in range(1, cfg.n_layers_D):
            nf_prev, nf = nf, min(nf * 2, 512)
            stride = 1 if n == cfg.n_layers_D - 1 else 2
            seq.append(
                [
                    _norm_layer(nn.Conv2d(nf_prev, nf, kernel_size=kw, stride=stride, padding=padw), cfg.norm_D),
                    nn.LeakyReLU(0.2, False),
                ]
            )
        seq.append([nn.Conv2d(nf, 1, kernel_size=kw, stride=1, padding=padw)])
        self.num_layers = len(seq)
        for n, layers in enumerate(seq):
            self.add_module(f"model{n}", nn.Sequential(*layers))
        self.get_intermediate_features = cfg.get_intermediate_features

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's output; the last one is the patch prediction."""
        results = [x]
        for n in range(self.num_layers):
            results.append(getattr(self, f"model{n}")(results[-1]))
        return results[1:] if self.get_intermediate_features else [results[-1]]


class MultiscaleDiscriminator(nn.Module):
    """``num_D`` PatchGANs on the input downsampled 1x, 2x, 4x ... (3x3 average pooling, stride 2)."""

    def __init__(self, cfg: MultiscaleDConfig):
        super().__init__()
        self.cfg = cfg
        for i in range(cfg.num_D):
            self.add_module(f"discriminator_{i}", NLayerDiscriminator(cfg))

    @staticmethod
    def downsample(x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, kernel_size=3, stride=2, padding=[1, 1], count_include_pad=False)

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        """Per scale, the list of that discriminator's features (last = prediction)."""
        out = []
        for i in range(self.cfg.num_D):
            out.append(getattr(self, f"discriminator_{i}")(x))
            x = self.downsample(x)
        return out


def divide_pred(pred: list[list[torch.Tensor]]) -> tuple[list[list[torch.Tensor]], list[list[torch.Tensor]]]:
    """Split the output of D on ``cat([fake, real])`` into the fake half and the real half (SPADE
    discriminates both in one batch so that batch statistics see both)."""
    fake = [[t[: t.shape[0] // 2] for t in p] for p in pred]
    real = [[t[t.shape[0] // 2 :] for t in p] for p in pred]
    return fake, real

"""A compact StyleGAN2 generator of street layouts (label maps), and its discriminator on one-hot maps.

Two-stage street generation from nothing (Aharoni and Israelov, "Creating Image Segmentation Maps Using
GANs") draws the layout with an unconditional GAN and renders it with SPADE. This is that GAN in the
spirit of NVlabs' stylegan2-ada-pytorch ``networks.py``, cut to what a label map needs:

* ``mapping``: z -> w through an equalized-lr MLP (lr multiplier 0.01), with the running mean ``w_avg``
  that truncation pulls toward (``w = w_avg + psi * (w - w_avg)``);
* ``synthesis``: a learned constant at the base grid (4 x W/H*4: 4x8 for 2:1 maps), then one block per
  doubling, each two modulated + demodulated 3x3 convolutions (the first after a bilinear 2x upsample)
  with per-pixel noise inputs, and a ``tologits`` 1x1 modulated convolution whose outputs are summed
  across resolutions (the skip architecture); ``torgb`` became ``tologits``: the output is per-class
  logits [B, num_classes, H, W];
* style mixing: ``ws`` from a second z replace those from layer ``cutoff`` on (``mix_styles``).

The discriminator (``LayoutDiscriminator``) is residual, sees one-hot maps of real layouts and soft
one-hot maps (softmax or Gumbel-softmax of the logits) of fakes so gradients reach the generator, and
ends with the minibatch standard-deviation layer; ``r1_penalty`` is StyleGAN2's R1 regularizer.
Upsampling is bilinear rather than StyleGAN2's FIR filter, and there is no path-length regularizer:
both matter for photos' texture far more than for label maps' flat regions.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

NOISE_MODES = ("random", "const", "none")


def base_grid(height: int, width: int) -> tuple[int, int, int]:
    """(base height, base width, doublings) of a map: the base is 4 rows high, e.g. 128x256 -> (4, 8, 5)."""
    if height < 4 or height & (height - 1) or height % 4:
        raise ConfigError(f"layout height must be a power of two >= 4 (4 x 2^k), not {height}")
    n_up = int(math.log2(height // 4))
    if width % 2**n_up or width < 2**n_up:
        raise ConfigError(
            f"layout width {width} must be a multiple of {2**n_up} at height {height} (base 4 x W/{2**n_up})"
        )
    return 4, width // 2**n_up, n_up


@dataclasses.dataclass
class LayoutStyleGANConfig:
    """The generator's options (StyleGAN2's names where it has them)."""

    num_classes: int = 35  # output logits: the label set's ids (Cityscapes 35)
    height: int = 128
    width: int = 256
    z_dim: int = 128
    w_dim: int = 128
    mapping_layers: int = 4
    channel_base: int = 256  # channels at the base grid; halved per doubling ...
    channel_min: int = 32  # ... down to this
    lr_multiplier: float = 0.01  # the mapping network's learning-rate multiplier
    w_avg_beta: float = 0.995  # the running mean of w, for truncation

    def __post_init__(self) -> None:
        base_grid(self.height, self.width)
        for name in ("num_classes", "z_dim", "w_dim", "mapping_layers", "channel_base", "channel_min"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, not {getattr(self, name)}")

    def channels(self, level: int) -> int:
        """Channels of the block at ``level`` (0: the base grid)."""
        return max(self.channel_min, self.channel_base >> level)


# ---- equalized-lr layers -------------------------------------------------------------------------------
class FullyConnectedLayer(nn.Module):
    """StyleGAN2's equalized-learning-rate linear layer (weights ~ N(0, 1) / lr_multiplier, scaled at runtime)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias_init: float = 0.0,
        lr_multiplier: float = 1.0,
        activation: bool = False,
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.bias_gain)
        return F.leaky_relu(x, 0.2) * math.sqrt(2) if self.activation else x


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class MappingNetwork(nn.Module):
    """z [B, z_dim] -> ws [B, num_ws, w_dim], with truncation toward the tracked mean ``w_avg``."""

    def __init__(self, z_dim: int, w_dim: int, num_ws: int, num_layers: int, lr_multiplier: float, w_avg_beta: float):
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws, self.w_avg_beta = z_dim, w_dim, num_ws, w_avg_beta
        dims = [z_dim] + [w_dim] * num_layers
        for i in range(num_layers):
            setattr(
                self, f"fc{i}", FullyConnectedLayer(dims[i], dims[i + 1], lr_multiplier=lr_multiplier, activation=True)
            )
        self.num_layers = num_layers
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0, update_emas: bool = False) -> torch.Tensor:
        x = normalize_2nd_moment(z.float())
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        if update_emas:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().float().mean(0).lerp(self.w_avg, self.w_avg_beta))
        ws = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi != 1.0:
            ws = self.w_avg.to(ws.dtype).lerp(ws, truncation_psi)
        return ws


def modulated_conv2d(
    x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True, padding: int = 0
) -> torch.Tensor:
    """StyleGAN2's modulated convolution: each sample's weights scaled by its styles per input channel and
    (``demodulate``) renormalized to unit norm per output channel. Computed as StyleGAN2's non-fused path
    (scale the input, one shared convolution, scale the output), which equals the per-sample grouped
    convolution and exports to ONNX with a dynamic batch (a grouped kernel of unknown shape does not)."""
    out_ch, in_ch = weight.shape[:2]
    x = x * styles.to(x.dtype).reshape(-1, in_ch, 1, 1)
    x = F.conv2d(x, weight.to(x.dtype), padding=padding)
    if demodulate:
        wgt = weight.unsqueeze(0) * styles.float().reshape(-1, 1, in_ch, 1, 1)  # [B, O, I, k, k]
        dcoefs = (wgt.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # [B, O]
        x = x * dcoefs.to(x.dtype).reshape(-1, out_ch, 1, 1)
    return x


class SynthesisLayer(nn.Module):
    """Modulated + demodulated 3x3 conv (after a 2x upsample with ``up``), per-pixel noise, bias, lrelu."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: tuple[int, int], up: bool = False):
        super().__init__()
        self.up = up
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.weight_gain = 1.0 / math.sqrt(in_channels * 9)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("noise_const", torch.randn(1, 1, *resolution))
        self.noise_strength = nn.Parameter(torch.zeros([]))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=True, padding=1)
        if noise_mode == "random":
            x = x + torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype) * self.noise_strength
        elif noise_mode == "const":
            x = x + self.noise_const.to(x.dtype) * self.noise_strength
        return F.leaky_relu(x + self.bias.to(x.dtype).view(1, -1, 1, 1), 0.2) * math.sqrt(2)


class ToLogitsLayer(nn.Module):
    """StyleGAN2's ``ToRGBLayer`` with num_classes outputs: a modulated 1x1 conv without demodulation."""

    def __init__(self, in_channels: int, num_classes: int, w_dim: int):
        super().__init__()
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(num_classes, in_channels, 1, 1))
        self.weight_gain = 1.0 / math.sqrt(in_channels)
        self.bias = nn.Parameter(torch.zeros(num_classes))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False)
        return x + self.bias.to(x.dtype).view(1, -1, 1, 1)


class SynthesisBlock(nn.Module):
    """One resolution: (constant | upsampling conv0), conv1, tologits; logits of the coarser block are
    upsampled and added (skip architecture)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: tuple[int, int], num_classes: int):
        super().__init__()
        self.is_first = in_channels == 0
        if self.is_first:
            self.const = nn.Parameter(torch.randn(out_channels, *resolution))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=True)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution)
        self.tologits = ToLogitsLayer(out_channels, num_classes, w_dim)
        self.num_conv = 1 if self.is_first else 2
        self.num_tologits = 1

    def forward(self, x, logits, ws: torch.Tensor, noise_mode: str):
        w_iter = iter(ws.unbind(dim=1))
        if self.is_first:
            x = self.const.unsqueeze(0).repeat(ws.shape[0], 1, 1, 1).to(ws.dtype)
        else:
            x = self.conv0(x, next(w_iter), noise_mode)
        x = self.conv1(x, next(w_iter), noise_mode)
        y = self.tologits(x, next(w_iter))
        if logits is not None:
            y = y + F.interpolate(logits, scale_factor=2, mode="bilinear", align_corners=False)
        return x, y


class SynthesisNetwork(nn.Module):
    """ws [B, num_ws, w_dim] -> logits [B, num_classes, H, W]."""

    def __init__(self, cfg: LayoutStyleGANConfig):
        super().__init__()
        h0, w0, n_up = base_grid(cfg.height, cfg.width)
        self.num_levels = n_up + 1
        self.num_ws = 0
        in_ch = 0
        for level in range(self.num_levels):
            out_ch = cfg.channels(level)
            block = SynthesisBlock(in_ch, out_ch, cfg.w_dim, (h0 << level, w0 << level), cfg.num_classes)
            setattr(self, f"b{level}", block)
            self.num_ws += block.num_conv
            in_ch = out_ch
        self.num_ws += 1  # the last block's tologits

    def forward(self, ws: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        if noise_mode not in NOISE_MODES:
            raise ConfigError(f"noise_mode must be one of {', '.join(NOISE_MODES)}, not {noise_mode!r}")
        x = logits = None
        w_idx = 0
        for level in range(self.num_levels):
            block = getattr(self, f"b{level}")
            x, logits = block(x, logits, ws[:, w_idx : w_idx + block.num_conv + block.num_tologits], noise_mode)
            w_idx += block.num_conv
        return logits


def mix_styles(ws: torch.Tensor, ws2: torch.Tensor, cutoff: int) -> torch.Tensor:
    """Style mixing: the layers from ``cutoff`` on take their styles from ``ws2``."""
    mixed = ws.clone()
    mixed[:, cutoff:] = ws2[:, cutoff:]
    return mixed


class LayoutGenerator(nn.Module):
    """z -> per-class logits of a street layout (StyleGAN2: ``mapping`` then ``synthesis``)."""

    def __init__(self, cfg: LayoutStyleGANConfig):
        super().__init__()
        self.cfg = cfg
        self.z_dim = cfg.z_dim
        self.synthesis = SynthesisNetwork(cfg)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(
            cfg.z_dim, cfg.w_dim, self.num_ws, cfg.mapping_layers, cfg.lr_multiplier, cfg.w_avg_beta
        )

    def forward(
        self,
        z: torch.Tensor,
        truncation_psi: float = 1.0,
        noise_mode: str = "random",
        mix_z: Optional[torch.Tensor] = None,
        mix_cutoff: Optional[int] = None,
        update_emas: bool = False,
    ) -> torch.Tensor:
        ws = self.mapping(z, truncation_psi, update_emas=update_emas)
        if mix_z is not None and mix_cutoff is not None:
            ws = mix_styles(ws, self.mapping(mix_z, truncation_psi, update_emas=False), mix_cutoff)
        return self.synthesis(ws, noise_mode)


# ---- discriminator -------------------------------------------------------------------------------------
@dataclasses.dataclass
class LayoutDiscriminatorConfig:
    num_classes: int = 35
    height: int = 128
    width: int = 256
    channel_base: int = 256  # channels at the base grid, halved per doubling above it
    channel_min: int = 32
    mbstd_group_size: int = 4  # 0: no minibatch standard deviation layer
    mbstd_num_channels: int = 1

    def __post_init__(self) -> None:
        base_grid(self.height, self.width)

    def channels(self, level: int) -> int:
        return max(self.channel_min, self.channel_base >> level)


class DiscriminatorBlock(nn.Module):
    """Residual: two 3x3 convs, 2x average-pool down, plus a 1x1 skip, summed with 1/sqrt(2)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv0 = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.avg_pool2d(self.skip(x), 2)
        x = F.leaky_relu(self.conv0(x), 0.2)
        x = F.avg_pool2d(F.leaky_relu(self.conv1(x), 0.2), 2)
        return (x + y) * (1 / math.sqrt(2))


class MinibatchStdLayer(nn.Module):
    """StyleGAN's minibatch standard deviation, appended as extra feature maps (groups divide the batch)."""

    def __init__(self, group_size: int, num_channels: int = 1):
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = max(d for d in range(1, min(self.group_size, n) + 1) if n % d == 0)
        f = self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w).float()
        y = (y - y.mean(dim=0)).square().mean(dim=0).add(1e-8).sqrt()
        y = y.mean(dim=[2, 3, 4]).reshape(-1, f, 1, 1).repeat(g, 1, h, w).to(x.dtype)
        return torch.cat([x, y], dim=1)


class LayoutDiscriminator(nn.Module):
    """One-hot (or soft one-hot) maps [B, num_classes, H, W] -> realness scores [B, 1]."""

    def __init__(self, cfg: LayoutDiscriminatorConfig):
        super().__init__()
        self.cfg = cfg
        h0, w0, n_up = base_grid(cfg.height, cfg.width)
        self.fromlogits = nn.Conv2d(cfg.num_classes, cfg.channels(n_up), 1)
        self.blocks = nn.ModuleList(
            DiscriminatorBlock(cfg.channels(lv), cfg.channels(lv - 1)) for lv in range(n_up, 0, -1)
        )
        c0 = cfg.channels(0)
        self.mbstd = MinibatchStdLayer(cfg.mbstd_group_size, cfg.mbstd_num_channels) if cfg.mbstd_group_size else None
        extra = cfg.mbstd_num_channels if self.mbstd is not None else 0
        self.conv = nn.Conv2d(c0 + extra, c0, 3, padding=1)
        self.fc = nn.Linear(c0 * h0 * w0, c0)
        self.out = nn.Linear(c0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.fromlogits(x), 0.2)
        for block in self.blocks:
            x = block(x)
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = F.leaky_relu(self.conv(x), 0.2)
        x = F.leaky_relu(self.fc(x.flatten(1)), 0.2)
        return self.out(x)


def soft_one_hot(logits: torch.Tensor, mode: str = "softmax", tau: float = 1.0) -> torch.Tensor:
    """What the discriminator sees of a fake: softmax(logits / tau), or a (soft) Gumbel-softmax sample."""
    if mode == "gumbel":
        return F.gumbel_softmax(logits.float(), tau=tau, hard=False, dim=1)
    if mode == "softmax":
        return torch.softmax(logits.float() / tau, dim=1)
    raise ConfigError(f"fake input must be softmax or gumbel, not {mode!r}")


def r1_penalty(D: nn.Module, real: torch.Tensor) -> torch.Tensor:
    """StyleGAN2's R1: the mean over the batch of |grad_x D(x)|^2 on real maps (multiply by gamma / 2)."""
    real = real.detach().requires_grad_(True)
    scores = D(real)
    (grad,) = torch.autograd.grad(scores.float().sum(), real, create_graph=True)
    return grad.float().square().sum(dim=[1, 2, 3]).mean()

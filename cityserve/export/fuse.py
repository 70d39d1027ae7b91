"""The fused SPADE inference form: fewer, wider convs; the same math.

In a ``SPADEResnetBlock`` the 2-3 SPADE norms (``norm_s``, ``norm_0``, ``norm_1``) each resize the
full-resolution label map to the block's size and run their own ``mlp_shared`` conv on it: the same
input, read 2-3 times. Here the resize happens once and the ``mlp_shared`` convs become one conv whose
output channels are theirs concatenated. Likewise each norm's ``mlp_gamma`` / ``mlp_beta`` read the
same hidden map: one conv producing ``2C`` channels, split into gamma and beta. Per output channel the
sums are the ones the separate convs compute, so outputs match the unfused model to float rounding;
the engine sees 1 Resize instead of 3 and 1 + n convs instead of 3n per block.

Works on the inference form (spectral norm folded: plain ``weight``), which ``build_from_card`` gives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.spectral_norm import SpectralNorm


def _concat_convs(convs: list[nn.Conv2d]) -> nn.Conv2d:
    """One conv whose output channels are ``convs``' outputs concatenated (same input, kernel, padding)."""
    first = convs[0]
    for c in convs[1:]:
        same = (c.in_channels, c.kernel_size, c.stride, c.padding, c.dilation, c.groups, c.padding_mode) == (
            first.in_channels,
            first.kernel_size,
            first.stride,
            first.padding,
            first.dilation,
            first.groups,
            first.padding_mode,
        )
        if not same:
            raise ValueError("convs to fuse must share input channels, kernel, stride, padding, dilation, groups")
    has_bias = any(c.bias is not None for c in convs)
    fused = nn.Conv2d(
        first.in_channels,
        sum(c.out_channels for c in convs),
        first.kernel_size,
        first.stride,
        first.padding,
        first.dilation,
        first.groups,
        has_bias,
        first.padding_mode,
    )
    fused = fused.to(device=first.weight.device, dtype=first.weight.dtype)
    with torch.no_grad():
        fused.weight.copy_(torch.cat([c.weight.detach() for c in convs], 0))
        if has_bias:
            fused.bias.copy_(
                torch.cat(
                    [
                        c.bias.detach() if c.bias is not None else torch.zeros(c.out_channels, dtype=first.weight.dtype)
                        for c in convs
                    ],
                    0,
                )
            )
    return fused


class FusedSPADE(nn.Module):
    """One SPADE norm whose shared hidden map is computed elsewhere: ``pfn(x) * (1 + gamma) + beta``."""

    def __init__(self, spade: nn.Module):
        super().__init__()
        self.param_free_norm = spade.param_free_norm
        self.norm_nc = spade.mlp_gamma.out_channels
        self.mlp_gamma_beta = _concat_convs([spade.mlp_gamma, spade.mlp_beta])

    def forward(self, x: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        gamma, beta = torch.split(self.mlp_gamma_beta(hidden), [self.norm_nc, self.norm_nc], dim=1)
        return self.param_free_norm(x) * (1 + gamma) + beta


class FusedSPADEResnetBlock(nn.Module):
    """A ``SPADEResnetBlock`` with its label-map branch shared by its 2-3 norms."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.learned_shortcut = bool(getattr(block, "learned_shortcut", False))
        names = (["norm_s"] if self.learned_shortcut else []) + ["norm_0", "norm_1"]
        spades = [getattr(block, n) for n in names]
        shared = [s.mlp_shared[0] for s in spades]
        self.hidden_sizes = [c.out_channels for c in shared]
        self.mlp_shared = nn.Sequential(_concat_convs(shared), nn.ReLU())
        self.conv_0, self.conv_1 = block.conv_0, block.conv_1
        self.norm_0, self.norm_1 = FusedSPADE(block.norm_0), FusedSPADE(block.norm_1)
        if self.learned_shortcut:
            self.conv_s = block.conv_s
            self.norm_s = FusedSPADE(block.norm_s)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        # conv_0 keeps the size (3x3, padding 1), so norm_1's resized label map is this one too
        seg = F.interpolate(seg, size=x.shape[-2:], mode="nearest")
        hidden = torch.split(self.mlp_shared(seg), self.hidden_sizes, dim=1)
        if self.learned_shortcut:
            h_s, h_0, h_1 = hidden
            x_s = self.conv_s(self.norm_s(x, h_s))
        else:
            h_0, h_1 = hidden
            x_s = x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, h_0), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, h_1), 0.2))
        return x_s + dx


def is_spade_block(m: nn.Module) -> bool:
    return (
        all(hasattr(m, a) for a in ("conv_0", "conv_1", "norm_0", "norm_1"))
        and hasattr(m.norm_0, "mlp_shared")
        and hasattr(m.norm_0, "mlp_gamma")
        and not isinstance(m, FusedSPADEResnetBlock)
    )


def fuse_spade(generator: nn.Module) -> nn.Module:
    """Replace every SPADE residual block of ``generator`` (in place) by its fused form; returns it.

    Spectral norm must already be folded (the inference form): fusing copies plain ``weight``s.
    """
    for m in generator.modules():
        if any(isinstance(h, SpectralNorm) for h in m._forward_pre_hooks.values()):
            raise ValueError("fold spectral norm first (build the model with inference=True)")
    count = 0
    for parent in list(generator.modules()):
        for name, child in list(parent.named_children()):
            if is_spade_block(child):
                setattr(parent, name, FusedSPADEResnetBlock(child))
                count += 1
    if count == 0:
        raise ValueError(f"{type(generator).__name__} has no SPADE residual blocks to fuse")
    return generator.eval()

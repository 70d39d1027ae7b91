"""The boundary SPADE inference form: gamma/beta convolutions only where the label map changes; exact.

In a SPADE norm, gamma and beta are functions of the label map alone (one-hot ids + instance edges):
``mlp_gamma(relu(mlp_shared(seg)))``. Wherever the receptive field of that pair of convs (at the norm's
resolution: 5x5 for 3x3 kernels, 1x1 for 1x1 kernels) lies inside the image and holds one class and no
instance edge, the input is the same constant one-hot vector everywhere and so gamma/beta equal a
per-class constant. This form computes those constants once from the weights (a table of
``num_classes + 1`` rows, the last for ids past the label set, whose one-hot is all zero), looks them up
on such *interior* pixels, and runs the real convolutions only on the *boundary* pixels: it gathers
each boundary pixel's k x k patch and multiplies it by the conv weight as a matrix, so the work scales
with the number of boundary pixels. The shared hidden map is computed, the same way, only where a
boundary pixel's gamma/beta conv reads it. Exact up to float summation order (tested to 1e-4).

A pixel whose input is not an exact one-hot vector (e.g. fed by hand) is never interior, so the form is
exact for any input; it only saves work on label maps. It cannot express generators whose SPADE input
carries per-image values (OASIS 3D noise, ``noise_dim``): those are refused. Works on the inference
form (spectral norm folded), which ``build_from_card`` gives.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.spectral_norm import SpectralNorm

from ..errors import ConfigError
from .fuse import FusedSPADEResnetBlock, is_spade_block


@dataclasses.dataclass(frozen=True)
class LabelLayout:
    """Where the generator's input keeps what: ``num_classes`` one-hot channels, then (optionally) the
    instance-edge channel (SPADE's and ``RenderGraph``'s order)."""

    num_classes: int
    use_instance: bool

    @property
    def channels(self) -> int:
        return self.num_classes + int(self.use_instance)


def pixel_codes(seg: torch.Tensor, layout: LabelLayout) -> torch.Tensor:
    """[B,S,h,w] semantics -> [B,1,h,w] float code: the class id of an exact one-hot pixel without an
    instance edge, ``num_classes`` for an all-zero one, -1 for anything else (never interior)."""
    k = layout.num_classes
    cls = seg[:, :k]
    ids = torch.arange(k, dtype=seg.dtype, device=seg.device).view(1, k, 1, 1)
    total = cls.sum(1, keepdim=True)
    idx = (cls * ids).sum(1, keepdim=True)
    binary = ((cls == 0) | (cls == 1)).all(1, keepdim=True)
    clean = binary & (total <= 1)
    if layout.use_instance:
        clean = clean & (seg[:, k : k + 1] == 0)
    code = torch.where(total == 0, torch.full_like(idx, float(k)), idx)
    return torch.where(clean, code, torch.full_like(idx, -1.0))


def interior_mask(code: torch.Tensor, radius: int) -> torch.Tensor:
    """[B,1,h,w] bool: the (2r+1)^2 window lies inside the image and holds one clean code."""
    if radius == 0:
        return code >= 0
    padded = F.pad(code, (radius,) * 4, value=-1.0)  # outside the image: never a class
    k = 2 * radius + 1
    hi = F.max_pool2d(padded, k, stride=1)
    lo = -F.max_pool2d(-padded, k, stride=1)
    return (hi == lo) & (lo >= 0)


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """[B,1,h,w] bool dilated by a (2r+1)^2 square (within the image)."""
    if radius == 0:
        return mask
    return F.max_pool2d(mask.to(torch.float32), 2 * radius + 1, stride=1, padding=radius) > 0


def conv_as_matrix(conv: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor]:
    """A stride-1 conv's weight as [kh*kw*Cin, Cout] (offset-major, the order ``patch_offsets``
    gathers in) and its bias [Cout]."""
    w = conv.weight.detach()
    mat = w.permute(2, 3, 1, 0).reshape(-1, w.shape[0]).contiguous()
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros(w.shape[0], dtype=w.dtype)
    return mat, bias


def _check_conv(conv: nn.Conv2d, where: str) -> int:
    """The pad of a conv this form can gather: odd square kernel, stride 1, 'same' zero padding."""
    kh, kw = conv.kernel_size
    ok = (
        kh == kw
        and kh % 2 == 1
        and tuple(conv.stride) == (1, 1)
        and tuple(conv.dilation) == (1, 1)
        and tuple(conv.padding) == (kh // 2, kh // 2)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
    )
    if not ok:
        raise ConfigError(f"boundary form: {where} is not an odd, stride-1, 'same'-padded conv; cannot gather it")
    return kh // 2


class PatchGather(nn.Module):
    """Indices of the k x k patches around chosen pixels in a zero-padded, channels-last flat map."""

    def __init__(self, pad: int):
        super().__init__()
        self.pad = pad

    def forward(self, flat_idx: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Unpadded flat pixel indices [N] -> (their padded indices [N], patch indices [N, k*k])."""
        p = self.pad
        hp, wp = h + 2 * p, w + 2 * p
        n = flat_idx // (h * w)
        rem = flat_idx - n * (h * w)
        y = rem // w
        x = rem - y * w
        centre = n * (hp * wp) + (y + p) * wp + (x + p)
        r = torch.arange(-p, p + 1, device=flat_idx.device)
        offsets = (r.view(-1, 1) * wp + r.view(1, -1)).reshape(1, -1)
        return centre, centre.unsqueeze(1) + offsets


def channels_last_padded(t: torch.Tensor, pad: int) -> torch.Tensor:
    """[B,C,h,w] -> [B*(h+2p)*(w+2p), C], zero-padded, one row per padded pixel."""
    if pad:
        t = F.pad(t, (pad,) * 4)
    return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])


class BoundarySPADE(nn.Module):
    """One SPADE norm: gamma/beta from the class table inside regions, from gathered convs on boundaries."""

    def __init__(self, spade: nn.Module, layout: LabelLayout, name: str):
        super().__init__()
        shared = spade.mlp_shared[0]
        if not (isinstance(spade.mlp_shared[1], nn.ReLU) and len(spade.mlp_shared) == 2):
            raise ConfigError(f"boundary form: {name}.mlp_shared is not conv + ReLU")
        if shared.in_channels != layout.channels:
            raise ConfigError(
                f"boundary form: {name}.mlp_shared reads {shared.in_channels} channels, but the label map has "
                f"{layout.channels} ({layout.num_classes} classes{' + instance edges' if layout.use_instance else ''})"
            )
        self.pad = _check_conv(shared, f"{name}.mlp_shared")
        for c in (spade.mlp_gamma, spade.mlp_beta):
            if _check_conv(c, f"{name}.mlp_gamma/beta") != self.pad:
                raise ConfigError(f"boundary form: {name}'s mlp_shared and mlp_gamma/beta kernels differ")
        self.param_free_norm = spade.param_free_norm
        self.norm_nc = spade.mlp_gamma.out_channels
        ws, bs = conv_as_matrix(shared)
        wg, bg = conv_as_matrix(spade.mlp_gamma)
        wb, bb = conv_as_matrix(spade.mlp_beta)
        self.register_buffer("shared_weight", ws)
        self.register_buffer("shared_bias", bs)
        # ``1 + gamma`` folded in: the table and the boundary convs give (1 + gamma) | beta
        self.register_buffer("gamma_beta_weight", torch.cat([wg, wb], 1).contiguous())
        self.register_buffer("gamma_beta_bias", torch.cat([bg + 1, bb], 0))
        table = self._class_table(spade, layout)
        table[:, : self.norm_nc] += 1
        self.register_buffer("table", table)

    @staticmethod
    @torch.no_grad()
    def _class_table(spade: nn.Module, layout: LabelLayout) -> torch.Tensor:
        """[num_classes + 1, 2C]: gamma|beta of a constant one-hot image per class (last: all-zero),
        computed by the norm's own convs, read at the centre of a window its receptive field fits in."""
        k = layout.num_classes
        r = 2 * (spade.mlp_shared[0].kernel_size[0] // 2)
        side = 2 * r + 1
        dtype = spade.mlp_gamma.weight.dtype
        seg = torch.zeros(k + 1, layout.channels, side, side, dtype=dtype, device=spade.mlp_gamma.weight.device)
        for c in range(k):
            seg[c, c] = 1.0
        actv = spade.mlp_shared(seg)
        g = spade.mlp_gamma(actv)[:, :, r, r]
        b = spade.mlp_beta(actv)[:, :, r, r]
        return torch.cat([g, b], 1).contiguous()

    def gamma_beta(self, seg_flat: torch.Tensor, plan: BoundaryPlan) -> torch.Tensor:
        """[B*h*w, 2C] channels-last (1 + gamma)|beta for the whole map."""
        cin = seg_flat.shape[1]
        nh = self.shared_weight.shape[1]
        # the hidden map, only where a boundary pixel's gamma/beta conv reads it; row 0 stands for zeros
        patches = seg_flat.index_select(0, plan.hidden_patches.reshape(-1)).reshape(-1, plan.k2 * cin)
        hidden = torch.relu(torch.addmm(self.shared_bias, patches, self.shared_weight))
        hidden = torch.cat([torch.zeros(1, nh, dtype=hidden.dtype, device=hidden.device), hidden], 0)
        hp = hidden.index_select(0, plan.boundary_hidden_rows.reshape(-1)).reshape(-1, plan.k2 * nh)
        gb_boundary = torch.addmm(self.gamma_beta_bias, hp, self.gamma_beta_weight)
        gb = F.embedding(plan.table_rows, self.table)
        return gb.index_put((plan.boundary,), gb_boundary)

    def forward(self, x: torch.Tensor, seg_flat: torch.Tensor, plan: BoundaryPlan) -> torch.Tensor:
        b, _, h, w = x.shape
        gb = self.gamma_beta(seg_flat, plan).reshape(b, h, w, 2 * self.norm_nc).permute(0, 3, 1, 2)
        gamma1, beta = gb[:, : self.norm_nc], gb[:, self.norm_nc :]
        return torch.addcmul(beta, self.param_free_norm(x), gamma1)


@dataclasses.dataclass
class BoundaryPlan:
    """What a block's norms share at its resolution: which pixels are boundary and where to gather."""

    k2: int  # kernel taps
    table_rows: torch.Tensor  # [B*h*w] class-table row of every pixel (clamped code)
    boundary: torch.Tensor  # [Nb] flat indices of the boundary pixels
    hidden_patches: torch.Tensor  # [Nh, k2] padded-map rows of the input patches of hidden pixels
    boundary_hidden_rows: torch.Tensor  # [Nb, k2] rows of the compact hidden map (0: outside / zeros)


def boundary_plan(code: torch.Tensor, pad: int, num_classes: int) -> BoundaryPlan:
    """The plan for one resolution from the pixel codes [B,1,h,w]."""
    b, _, h, w = code.shape
    gather = PatchGather(pad)
    interior = interior_mask(code, 2 * pad)
    boundary_map = ~interior
    hidden_map = dilate(boundary_map, pad)
    boundary = torch.nonzero(boundary_map.reshape(-1)).reshape(-1)
    hidden_idx = torch.nonzero(hidden_map.reshape(-1)).reshape(-1)
    hidden_centre, hidden_patches = gather(hidden_idx, h, w)
    _, boundary_patches = gather(boundary, h, w)
    # padded position -> row of the compact hidden map (+1; 0 = not computed, i.e. zero padding)
    size = b * (h + 2 * pad) * (w + 2 * pad)
    slot = torch.zeros(size, dtype=torch.int64, device=code.device)
    rows = torch.arange(1, hidden_idx.shape[0] + 1, dtype=torch.int64, device=code.device)
    slot = slot.scatter(0, hidden_centre, rows)
    boundary_hidden_rows = slot.index_select(0, boundary_patches.reshape(-1)).reshape(boundary_patches.shape)
    table_rows = code.reshape(-1).clamp(0, num_classes).to(torch.int64)
    return BoundaryPlan((2 * pad + 1) ** 2, table_rows, boundary, hidden_patches, boundary_hidden_rows)


class BoundarySPADEResnetBlock(nn.Module):
    """A ``SPADEResnetBlock`` whose 2-3 norms share one resize, one pixel-code map and one plan."""

    def __init__(self, block: nn.Module, layout: LabelLayout, name: str):
        super().__init__()
        self.layout = layout
        self.learned_shortcut = bool(getattr(block, "learned_shortcut", False))
        self.conv_0, self.conv_1 = block.conv_0, block.conv_1
        self.norm_0 = BoundarySPADE(block.norm_0, layout, f"{name}.norm_0")
        self.norm_1 = BoundarySPADE(block.norm_1, layout, f"{name}.norm_1")
        if self.learned_shortcut:
            self.conv_s = block.conv_s
            self.norm_s = BoundarySPADE(block.norm_s, layout, f"{name}.norm_s")
        pads = {self.norm_0.pad, self.norm_1.pad} | ({self.norm_s.pad} if self.learned_shortcut else set())
        if len(pads) != 1:
            raise ConfigError(f"boundary form: the norms of {name} use different kernel sizes")
        self.pad = pads.pop()

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        # conv_0 keeps the size (3x3, padding 1), so norm_1 works at this resolution too
        seg = F.interpolate(seg, size=x.shape[-2:], mode="nearest")
        plan = boundary_plan(pixel_codes(seg, self.layout), self.pad, self.layout.num_classes)
        seg_flat = channels_last_padded(seg, self.pad)
        x_s = self.conv_s(self.norm_s(x, seg_flat, plan)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg_flat, plan), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg_flat, plan), 0.2))
        return x_s + dx


def label_layout(generator: nn.Module) -> LabelLayout:
    """The generator's label-map layout from its config; refuses what the form cannot express."""
    cfg = getattr(generator, "cfg", None)
    if cfg is None or not hasattr(cfg, "num_classes"):
        raise ConfigError(f"boundary form: {type(generator).__name__} is not a SPADE generator (no SPADEConfig)")
    if getattr(cfg, "noise_dim", 0):
        raise ConfigError(
            f"boundary form: this generator concatenates {cfg.noise_dim} channels of OASIS 3D noise to the "
            "SPADE input, so gamma/beta depend on z as well as the label map and no per-class table is exact; "
            "export it with --form plain or fused"
        )
    return LabelLayout(int(cfg.num_classes), not cfg.no_instance)


def boundary_spade(generator: nn.Module) -> nn.Module:
    """Replace every SPADE residual block of ``generator`` (in place) by its boundary form; returns it."""
    for m in generator.modules():
        if any(isinstance(h, SpectralNorm) for h in m._forward_pre_hooks.values()):
            raise ConfigError("boundary form: fold spectral norm first (build the model with inference=True)")
        if isinstance(m, FusedSPADEResnetBlock):
            raise ConfigError("boundary form: start from the plain generator, not the fused form")
    layout = label_layout(generator)
    count = 0
    for parent_name, parent in list(generator.named_modules()):
        for name, child in list(parent.named_children()):
            if is_spade_block(child):
                full = f"{parent_name}.{name}" if parent_name else name
                setattr(parent, name, BoundarySPADEResnetBlock(child, layout, full))
                count += 1
    if count == 0:
        raise ConfigError(f"boundary form: {type(generator).__name__} has no SPADE residual blocks")
    return generator.eval()

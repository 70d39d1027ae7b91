"""The table SPADE inference form: gamma/beta of 1x1-kernel SPADE norms looked up per pixel code; exact.

With 1x1 kernels a SPADE norm's gamma and beta at a pixel are a function of that pixel's input vector
alone: ``[z, one-hot(class), edge]`` (OASIS 3D noise ``z`` is one vector per image, broadcast over the
map). A label map has only ``(num_classes + 1) x 2`` such vectors per image (each class or none, edge or
not), so this form computes gamma|beta for those few codes once per image (a [codes, 2C] table: tiny
matmuls of the norm's own weights) and gathers them by the pixel-code map, instead of running the
shared 1x1 conv, its ReLU and the gamma/beta convs over every pixel of every norm. The pixel code is
computed once per image at full size and nearest-resized per block, as the plain form resizes the label
map. Unlike the boundary form (``cityserve.export.boundary``) it keeps OASIS noise exact, and it does no
work per boundary pixel; it needs 1x1 SPADE kernels (the demo generator's ``spectralspade*1x1``).

The input must be a label map: exact one-hot class channels (all-zero for an id past the label set) and
0/1 instance edges, what ``RenderGraph`` builds from ids. Exact up to float summation order (tested to
1e-4 against the plain form). Works on the inference form (spectral norm folded).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.spectral_norm import SpectralNorm

from ..errors import ConfigError
from .boundary import LabelLayout
from .fuse import FusedSPADEResnetBlock, is_spade_block


@dataclasses.dataclass
class TableInput:
    """What every block of the table form reads instead of the SPADE input map."""

    code: torch.Tensor  # [B,1,H,W] float pixel code at full size: class id (num_classes: none) + (K/2) * edge
    z: Optional[torch.Tensor]  # [B, noise_dim] OASIS noise, or None


def num_codes(layout: LabelLayout) -> int:
    return (layout.num_classes + 1) * (2 if layout.use_instance else 1)


def pixel_code(seg: torch.Tensor, layout: LabelLayout) -> torch.Tensor:
    """[B,S,H,W] label map (one-hot classes, then the edge channel) -> [B,1,H,W] float code."""
    k = layout.num_classes
    cls = seg[:, :k]
    ids = torch.arange(k, dtype=seg.dtype, device=seg.device).view(1, k, 1, 1)
    code = (cls * ids).sum(1, keepdim=True)
    code = torch.where(cls.sum(1, keepdim=True) == 0, torch.full_like(code, float(k)), code)
    if layout.use_instance:
        code = code + (k + 1) * seg[:, k : k + 1]
    return code


def code_inputs(layout: LabelLayout, dtype: torch.dtype) -> torch.Tensor:
    """[codes, S]: the label-map vector of every code (the order ``pixel_code`` numbers them in)."""
    k = layout.num_classes
    rows = torch.zeros(num_codes(layout), layout.channels, dtype=dtype)
    for code in range(rows.shape[0]):
        cls, edge = code % (k + 1), code // (k + 1)
        if cls < k:
            rows[code, cls] = 1.0
        if edge:
            rows[code, k] = 1.0
    return rows


def _matrix(conv: nn.Conv2d, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if conv.kernel_size != (1, 1) or conv.stride != (1, 1) or conv.groups != 1:
        raise ConfigError(
            f"table form: {name} is a {conv.kernel_size[0]}x{conv.kernel_size[1]} conv; the form needs 1x1 "
            "SPADE kernels (use --form boundary for 3x3 ones)"
        )
    bias = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels, dtype=conv.weight.dtype)
    return conv.weight.detach()[:, :, 0, 0], bias.detach()


class TableSPADE(nn.Module):
    """One SPADE norm whose (1 + gamma)|beta come from a per-image table of pixel codes."""

    def __init__(self, spade: nn.Module, layout: LabelLayout, noise_dim: int, name: str):
        super().__init__()
        if not (isinstance(spade.mlp_shared[1], nn.ReLU) and len(spade.mlp_shared) == 2):
            raise ConfigError(f"table form: {name}.mlp_shared is not conv + ReLU")
        ws, bs = _matrix(spade.mlp_shared[0], f"{name}.mlp_shared")
        if ws.shape[1] != noise_dim + layout.channels:
            raise ConfigError(
                f"table form: {name}.mlp_shared reads {ws.shape[1]} channels, but noise + label map have "
                f"{noise_dim} + {layout.channels}"
            )
        wg, bg = _matrix(spade.mlp_gamma, f"{name}.mlp_gamma")
        wb, bb = _matrix(spade.mlp_beta, f"{name}.mlp_beta")
        self.param_free_norm = spade.param_free_norm
        self.norm_nc = wg.shape[0]
        self.noise_dim = noise_dim
        # the label part of the shared layer, per code (bias included); the noise part is added per image
        self.register_buffer("code_hidden", code_inputs(layout, ws.dtype) @ ws[:, noise_dim:].T + bs)
        self.register_buffer("noise_weight", ws[:, :noise_dim].T.contiguous())  # [noise, hidden]
        self.register_buffer("gamma_beta_weight", torch.cat([wg, wb], 0).T.contiguous())  # [hidden, 2C]
        self.register_buffer("gamma_beta_bias", torch.cat([bg + 1, bb], 0))  # ``1 + gamma`` folded in

    def tables(self, z: Optional[torch.Tensor], batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(1 + gamma) and beta of every code, [C, B * codes] each (image after image along the columns):
        gathering columns gives [C, B, h, w], the NCHW order, with no transpose at batch 1."""
        hidden = self.code_hidden.unsqueeze(0)  # [1, codes, hidden]
        if self.noise_dim:
            hidden = hidden + (z.to(hidden.dtype) @ self.noise_weight).unsqueeze(1)
        else:
            hidden = hidden.expand(batch, -1, -1)
        t = (torch.relu(hidden) @ self.gamma_beta_weight + self.gamma_beta_bias).reshape(-1, 2 * self.norm_nc).T
        return t[: self.norm_nc], t[self.norm_nc :]

    def forward(self, x: torch.Tensor, rows: torch.Tensor, z: Optional[torch.Tensor]) -> torch.Tensor:
        gamma1, beta = self.tables(z, x.shape[0])
        b, _, h, w = x.shape
        if b == 1:
            gamma1, beta = (t.index_select(1, rows.reshape(-1)).reshape(1, -1, h, w) for t in (gamma1, beta))
        else:
            gamma1, beta = (
                t.index_select(1, rows.reshape(-1)).reshape(-1, b, h, w).transpose(0, 1) for t in (gamma1, beta)
            )
        return torch.addcmul(beta, self.param_free_norm(x), gamma1)


class TableSPADEResnetBlock(nn.Module):
    """A ``SPADEResnetBlock`` whose 2-3 norms share one resize of the pixel-code map."""

    def __init__(self, block: nn.Module, layout: LabelLayout, noise_dim: int, name: str):
        super().__init__()
        self.learned_shortcut = block.learned_shortcut
        self.codes = num_codes(layout)
        self.conv_0, self.conv_1 = block.conv_0, block.conv_1
        self.norm_0 = TableSPADE(block.norm_0, layout, noise_dim, f"{name}.norm_0")
        self.norm_1 = TableSPADE(block.norm_1, layout, noise_dim, f"{name}.norm_1")
        if self.learned_shortcut:
            self.conv_s = block.conv_s
            self.norm_s = TableSPADE(block.norm_s, layout, noise_dim, f"{name}.norm_s")

    def forward(self, x: torch.Tensor, t: TableInput) -> torch.Tensor:
        b = x.shape[0]
        code = F.interpolate(t.code, size=x.shape[-2:], mode="nearest").to(torch.int64)[:, 0]  # [B,h,w]
        offset = torch.arange(b, dtype=torch.int64, device=code.device).view(b, 1, 1) * self.codes
        rows = code + offset
        x_s = self.conv_s(self.norm_s(x, rows, t.z)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, rows, t.z), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, rows, t.z), 0.2))
        return x_s + dx


class TableSPADEGenerator(nn.Module):
    """``forward(input, z)`` of a SPADE generator whose residual blocks are in the table form."""

    def __init__(self, generator: nn.Module, layout: LabelLayout):
        super().__init__()
        self.generator = generator
        self.cfg = generator.cfg
        self.layout = layout

    def forward(self, input: torch.Tensor, z: Optional[torch.Tensor] = None) -> torch.Tensor:
        g, cfg = self.generator, self.cfg
        b = input.shape[0]
        if cfg.use_vae:
            if z is None:
                z = torch.randn(b, cfg.z_dim, dtype=input.dtype, device=input.device)
            x = g.fc(z.to(input.dtype)).view(b, 16 * cfg.ngf, g.sh, g.sw)
            z = None  # the VAE latent feeds fc only; the norms read the label map alone
        else:
            low = F.interpolate(input, size=(g.sh, g.sw), mode="nearest")
            if cfg.noise_dim:
                if z is None:
                    z = torch.randn(b, cfg.noise_dim, dtype=input.dtype, device=input.device)
                zmap = z.to(input.dtype).reshape(b, cfg.noise_dim, 1, 1).expand(b, cfg.noise_dim, g.sh, g.sw)
                low = torch.cat([zmap, low], 1)
            x = g.fc(low)
        return g.synthesize(x, TableInput(pixel_code(input, self.layout), z if cfg.noise_dim else None))


def table_spade(generator: nn.Module) -> nn.Module:
    """``generator`` with every SPADE residual block (in place) in the table form, wrapped so its forward
    computes the pixel codes once; refuses what the form cannot express."""
    cfg = getattr(generator, "cfg", None)
    if cfg is None or not hasattr(generator, "synthesize"):
        raise ConfigError(f"table form: {type(generator).__name__} is not a SPADE generator")
    if getattr(cfg, "extra_condition_nc", 0):
        raise ConfigError("table form: this generator's norms read a depth map (continuous values): no code table")
    for m in generator.modules():
        if any(isinstance(h, SpectralNorm) for h in m._forward_pre_hooks.values()):
            raise ConfigError("table form: fold spectral norm first (build the model with inference=True)")
        if isinstance(m, FusedSPADEResnetBlock):
            raise ConfigError("table form: start from the plain generator, not the fused form")
    layout = LabelLayout(int(cfg.num_classes), not cfg.no_instance)
    noise_dim = int(cfg.noise_dim)
    count = 0
    for parent_name, parent in list(generator.named_modules()):
        for name, child in list(parent.named_children()):
            if is_spade_block(child):
                full = f"{parent_name}.{name}" if parent_name else name
                setattr(parent, name, TableSPADEResnetBlock(child, layout, noise_dim, full))
                count += 1
    if count == 0:
        raise ConfigError(f"table form: {type(generator).__name__} has no SPADE residual blocks")
    return TableSPADEGenerator(generator, layout).eval()

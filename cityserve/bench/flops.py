"""FLOPs per image, counted from the model by running it once under ``torch.utils.flop_counter``.

The counter sees every convolution, matmul and (transposed) convolution the graph executes, with
the real shapes, so SPADE's per-layer resized label maps and the segmenters' upsampling heads are
counted as they run. One multiply-accumulate = 2 FLOPs. Element-wise work (norms, activations) is not
counted, as is customary for these figures. ``boundary_levels`` counts what SPADE's boundary form
(``cityserve.export.boundary``) skips, per resolution.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Optional

import torch
from torch.utils.flop_counter import FlopCounterMode


def count_flops(module: torch.nn.Module, inputs: Sequence[Any]) -> int:
    """Total FLOPs of ``module(*inputs)`` (for the whole batch in ``inputs``)."""
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        module(*inputs)
    return int(counter.get_total_flops())


def conv2d_flops(cin: int, cout: int, kh: int, kw: int, hout: int, wout: int, groups: int = 1) -> int:
    """Hand formula for one Conv2d: 2 * Cout * Hout * Wout * (Cin / groups) * kh * kw."""
    return 2 * cout * hout * wout * (cin // groups) * kh * kw


@dataclasses.dataclass
class BoundaryLevel:
    """One SPADE block's resolution: its pixels, how many are interior, and the FLOPs of its norms'
    label-map convs in the plain form and in the boundary form (``cityserve.export.boundary``)."""

    block: str
    height: int
    width: int
    pixels: int  # over the batch
    interior: int  # pixels whose gamma/beta come from the class table
    hidden: int  # pixels where the boundary form computes mlp_shared
    gamma_beta_plain: int
    gamma_beta_boundary: int
    shared_plain: int
    shared_boundary: int

    @property
    def interior_fraction(self) -> float:
        return self.interior / self.pixels if self.pixels else 0.0


def spade_blocks_at(generator: torch.nn.Module, inputs: Sequence[Any]) -> list[tuple[str, torch.nn.Module, int, int]]:
    """The plain SPADE generator's residual blocks with the (h, w) each runs at, from one pass."""
    from ..export.fuse import is_spade_block

    seen: list[tuple[str, torch.nn.Module, int, int]] = []
    hooks = [
        m.register_forward_pre_hook(lambda mod, args, name=name: seen.append((name, mod, *args[0].shape[-2:])))
        for name, m in generator.named_modules()
        if is_spade_block(m)
    ]
    try:
        with torch.inference_mode():
            generator(*inputs)
    finally:
        for h in hooks:
            h.remove()
    return seen


def boundary_levels(
    generator: torch.nn.Module,
    inputs: Sequence[Any],
    blocks: Optional[list[tuple[str, torch.nn.Module, int, int]]] = None,
) -> list[BoundaryLevel]:
    """Count, per residual block of the *plain* SPADE ``generator`` on ``inputs`` (the semantics
    first), what the boundary form skips: the gamma/beta convs on interior pixels and mlp_shared where
    no boundary pixel reads it, from the same masks the boundary form builds. ``blocks``: from
    ``spade_blocks_at`` (one generator pass; made here when not given)."""
    from ..export.boundary import dilate, interior_mask, label_layout, pixel_codes

    layout = label_layout(generator)
    seg = inputs[0]
    b = seg.shape[0]
    levels = []
    for name, block, h, w in blocks if blocks is not None else spade_blocks_at(generator, inputs):
        norms = [block.norm_0, block.norm_1] + ([block.norm_s] if getattr(block, "learned_shortcut", False) else [])
        k = norms[0].mlp_shared[0].kernel_size[0]
        pad = k // 2
        code = pixel_codes(torch.nn.functional.interpolate(seg, size=(h, w), mode="nearest"), layout)
        interior = interior_mask(code, 2 * pad)
        n_interior = int(interior.sum())
        n_hidden = int(dilate(~interior, pad).sum())
        pixels = b * h * w
        gb = sum(conv2d_flops(n.mlp_gamma.in_channels, 2 * n.mlp_gamma.out_channels, k, k, h, w) * b for n in norms)
        sh = sum(conv2d_flops(n.mlp_shared[0].in_channels, n.mlp_shared[0].out_channels, k, k, h, w) * b for n in norms)
        levels.append(
            BoundaryLevel(
                name,
                h,
                w,
                pixels,
                n_interior,
                n_hidden,
                gb,
                gb * (pixels - n_interior) // pixels,
                sh,
                sh * n_hidden // pixels,
            )
        )
    return levels

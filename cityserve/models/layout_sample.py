"""A layout card -> its generator, and seeds -> layout logits, the same way everywhere.

A seed names a layout: z is drawn from ``torch.Generator().manual_seed(seed)`` on the CPU (so a seed
gives the same z on every machine), the card's ``layout`` section says the truncation and the synthesis
noise (``const``: the noise buffers stored with the weights), and the generator runs in eval mode.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Optional

import torch
from torch import nn

from ..cards import ModelCard
from ..checkpoints import load_strict, load_weights
from ..errors import CheckpointError, ConfigError
from .layout_dcgan import DCGANGenerator, LayoutDCGANConfig
from .layout_stylegan import LayoutGenerator, LayoutStyleGANConfig

LAYOUT_ARCHS: dict[str, tuple[type, type]] = {
    "layout-stylegan2": (LayoutStyleGANConfig, LayoutGenerator),
    "layout-dcgan": (LayoutDCGANConfig, DCGANGenerator),
}


def generator_from_config(arch: str, config: dict[str, Any]) -> nn.Module:
    """A layout generator (random init) from a card's ``arch`` and ``config`` (unknown keys refused)."""
    if arch not in LAYOUT_ARCHS:
        raise ConfigError(f"not a layout generator: arch {arch!r:.40} (one of {', '.join(LAYOUT_ARCHS)})")
    cfg_cls, net_cls = LAYOUT_ARCHS[arch]
    names = {f.name for f in dataclasses.fields(cfg_cls)}
    unknown = set(config) - names
    if unknown:
        raise ConfigError(f"{arch} config has unknown field(s) {', '.join(sorted(map(str, unknown)))[:200]}")
    try:
        return net_cls(cfg_cls(**config))
    except TypeError as e:
        raise ConfigError(f"{arch} config: {e}") from None


def layout_generator_from_card(card: ModelCard, verify: bool = True) -> nn.Module:
    """The card's generator with its weights (sha256 checked), in eval mode, gradients off."""
    if card.kind != "layout" or card.layout is None:
        raise CheckpointError(f"{card.name}: a {card.kind} card, not a layout generator")
    G = generator_from_config(card.arch, card.config)
    load_strict(G, load_weights(card, verify), card.weights_path, "layout generator")
    return G.eval().requires_grad_(False)


def seed_latents(seeds: Sequence[int], z_dim: int) -> torch.Tensor:
    """float32 [len(seeds), z_dim]: z ~ N(0, 1) from each seed's own CPU generator."""
    out = []
    for s in seeds:
        s = int(s)
        if not 0 <= s < 2**63:
            raise ConfigError(f"a layout seed must be 0..2^63-1, not {s}")
        out.append(torch.randn(z_dim, generator=torch.Generator().manual_seed(s)))
    return torch.stack(out)


@torch.no_grad()
def sample_logits(
    G: nn.Module, card: ModelCard, seeds: Sequence[int], truncation_psi: Optional[float] = None
) -> torch.Tensor:
    """float32 logits [len(seeds), num_classes, H, W] of the layouts ``seeds`` name. Each seed runs as a
    batch of one: batched convolutions may differ in the last bits, and a seed must name one layout."""
    psi = card.layout.truncation_psi if truncation_psi is None else float(truncation_psi)
    out = []
    for z in seed_latents(seeds, card.layout.z_dim).split(1):
        if isinstance(G, LayoutGenerator):
            out.append(G(z, truncation_psi=psi, noise_mode=card.layout.noise_mode).float())
        else:
            out.append(G(z).float())
    return torch.cat(out)

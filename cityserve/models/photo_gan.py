"""A photo-GAN card (kind ``photo-gan``: ``train/layouts.py --target photos``) -> its generator, and seeds
-> photos, for the scripts that compare it with the two-stage path (``benchmarks/two_stage_comparison.py``).

It is the layout StyleGAN2 with 3 outputs read as RGB in [-1, 1]. A seed names a photo the way it names a
layout (``layout_sample.seed_latents``), with no truncation and the stored (``const``) synthesis noise.
Nothing serves these cards: they exist to be measured against.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..cards import ModelCard
from ..checkpoints import load_strict, load_weights
from ..errors import CheckpointError
from .layout_sample import generator_from_config, seed_latents
from .layout_stylegan import LayoutGenerator

PHOTO_KIND = "photo-gan"


def photo_generator_from_card(card: ModelCard, verify: bool = True) -> LayoutGenerator:
    """The card's generator with its weights (sha256 checked), in eval mode, gradients off."""
    if card.kind != PHOTO_KIND or card.arch != "photo-stylegan2":
        raise CheckpointError(f"{card.name}: a {card.kind} card ({card.arch}), not a photo GAN")
    G = generator_from_config("layout-stylegan2", card.config)
    if G.cfg.num_classes != 3:
        raise CheckpointError(f"{card.name}: a photo GAN has 3 outputs, not {G.cfg.num_classes}")
    load_strict(G, load_weights(card, verify), card.weights_path, "photo generator")
    return G.eval().requires_grad_(False)


@torch.no_grad()
def sample_photos(G: LayoutGenerator, seeds: Sequence[int]) -> np.ndarray:
    """uint8 RGB photos [len(seeds), H, W, 3] of ``seeds`` (each a batch of one, as layouts are)."""
    out = []
    for z in seed_latents(seeds, G.z_dim).split(1):
        x = G(z, truncation_psi=1.0, noise_mode="const").float()[0]
        out.append(((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy())
    return np.stack(out)

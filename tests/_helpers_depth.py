"""Tiny depth-aware SPADE pairs for the serving tests: real stage cards (ngf 2, 32x64, Cityscapes with
instance edges, seeded random weights), saved as ``train/spade.py --stage`` saves them (the depth
section and its normalisation), so the repository builder exports them as users' cards are."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from cityserve.card_sections import ServingOptions
from cityserve.cards import ModelCard, load_card
from cityserve.checkpoints import save_checkpoint
from cityserve.data.depth import LogDepth, depth_section

H, W = 32, 64


def tiny_depth_pair(out_dir: Path, max_batch_size: int = 4) -> tuple[ModelCard, ModelCard]:
    """(stage 1 ``depth`` card, stage 2 ``photo-from-depth`` card), stage 2 linked to stage 1."""
    from cityserve.models.registry import family
    from cityserve.training.spade_trainer import spade_config_for, stage_config

    fam = family("spade")
    base = spade_config_for("cityscapes", (H, W), ngf=2, nhidden=8)
    cards = []
    for k, stage in enumerate(("depth", "photo-from-depth")):
        cfg = stage_config(base, stage)
        torch.manual_seed(10 + k)
        model = fam.build(cfg).eval()
        facts = {}
        if stage == "photo-from-depth":
            facts = {"depth_source": "predicted", "depth_model": {"name": cards[0].name, "sha256": cards[0].sha256}}
        name = f"tiny-{stage}"
        card = ModelCard(
            name=name,
            kind="generator",
            arch="spade",
            config=dataclasses.asdict(cfg),
            label_set="cityscapes",
            height=H,
            width=W,
            provenance={"source": "random weights, depth serving tests"},
            serving=ServingOptions(max_batch_size=max_batch_size),
            depth=depth_section(stage, LogDepth(), **facts),
        )
        cards.append(load_card(save_checkpoint(card, model.state_dict(), Path(out_dir) / name, name)))
    return cards[0], cards[1]

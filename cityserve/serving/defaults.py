"""What ``cityserve serve`` and ``cityserve demo`` serve when told nothing: the shipped demo model.

The trained demo models ship as package data, ``cityserve/assets/demo/`` (in a checkout a link to
``models/demo/``: a SPADE generator and an FCHarDNet segmenter, cards + weights), found with
``importlib.resources`` so an installed wheel serves them as a checkout does. Only when they are
missing (a trimmed install, or ``CITYSERVE_DEMO_MODEL`` pointing elsewhere) is a clearly labelled
placeholder made instead: a small SPADE with seeded RANDOM weights, so the whole serving path can
still be exercised; its photos are noise, and every command that uses it says so. A depth-aware pair
among the shipped cards (a depth card and the photo-from-depth card linked to it, ``depth_models.
linked_pairs``) is served too (label2depth, label2depth2photo, depth2photo): ``depth-demo`` and
``depth2photo-demo`` (128x256, models/demo/README.md).
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import os
from pathlib import Path
from typing import Optional

import torch

from ..card_sections import ServingOptions
from ..cards import ModelCard, load_card
from ..checkpoints import save_checkpoint
from ..export.onnx_export import export_onnx
from ..models.registry import family
from .depth_models import linked_pairs

ASSETS = Path(str(importlib.resources.files("cityserve") / "assets"))
DEMO_DIR = Path(os.environ.get("CITYSERVE_DEMO_MODEL", ASSETS / "demo"))  # models/demo/ in a checkout
EXAMPLES_DIR = ASSETS / "examples"  # examples/ in a checkout
PLACEHOLDER_NAME = "placeholder-random-spade"
PLACEHOLDER_CONFIG = dict(
    label_nc=35,
    contain_dontcare_label=False,
    no_instance=False,
    ngf=8,
    num_upsampling_layers="normal",
    crop_size=256,
    aspect_ratio=2.0,
)  # 128x256


@dataclasses.dataclass
class DemoModels:
    cards: list[ModelCard]
    placeholder: bool
    warning: str = ""
    depth_pair: Optional[tuple[ModelCard, ModelCard]] = None  # (stage 1, stage 2), when one is shipped


def shipped_demo_cards(directory: Path = DEMO_DIR) -> list[ModelCard]:
    """The cards in ``models/demo/``: generators first, then segmenters, then layout generators (served
    as ``random_layout`` / ``random2photo``), one card per model."""
    if not directory.is_dir():
        return []
    cards = [load_card(p) for p in sorted(directory.glob("*.card.json"))]
    cards = [
        c for c in cards if c.kind in ("generator", "segmenter", "layout") and c.depth is None
    ]  # depth pairs: apart
    # one card per model: an exported copy (same weights, artifacts["onnx"]) stands for its source card
    chosen: dict[tuple[str, str], ModelCard] = {}
    for c in cards:
        key = (c.kind, c.sha256 or c.name)
        if key not in chosen or ("onnx" in c.artifacts and "onnx" not in chosen[key].artifacts):
            chosen[key] = c
    order = {"generator": 0, "segmenter": 1, "layout": 2}
    return sorted(chosen.values(), key=lambda c: (order[c.kind], c.name))


def placeholder_card(cache_dir: Path, export: bool = True) -> ModelCard:
    """A small SPADE (Cityscapes, 128x256, ngf 8) with seeded random weights, saved once in
    ``cache_dir`` (and exported to ONNX there once, with ``export``)."""
    path = cache_dir / f"{PLACEHOLDER_NAME}.card.json"
    exported = cache_dir / "onnx" / "render.card.json"
    if export and exported.is_file():
        return load_card(exported)
    if path.is_file():
        return _export(load_card(path), exported.parent) if export else load_card(path)
    fam = family("spade")
    torch.manual_seed(0)
    model = fam.build(fam.config_cls(**PLACEHOLDER_CONFIG)).eval()
    card = ModelCard(
        name=PLACEHOLDER_NAME,
        kind="generator",
        arch="spade",
        config=dict(PLACEHOLDER_CONFIG),
        label_set="cityscapes",
        height=128,
        width=256,
        provenance={"source": "PLACEHOLDER: random weights, not trained; the demo models were not found"},
        serving=ServingOptions(max_batch_size=4),
    )
    card = load_card(save_checkpoint(card, model.state_dict(), cache_dir, PLACEHOLDER_NAME))
    return _export(card, exported.parent) if export else card


def _export(card: ModelCard, out_dir: Path) -> ModelCard:
    """Export once, so later runs start from the cached graph (the exported card names it)."""
    export_onnx(card, out_dir)
    return load_card(out_dir / "render.card.json")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    path = Path(base) / "cityserve"
    path.mkdir(parents=True, exist_ok=True)
    return path


def shipped_depth_pair(directory: Path = DEMO_DIR) -> Optional[tuple[ModelCard, ModelCard]]:
    """The depth-aware pair in ``models/demo/`` (source cards, not exported copies), if one is shipped."""
    if not directory.is_dir():
        return None
    cards = [load_card(p) for p in sorted(directory.glob("*.card.json"))]
    pairs = linked_pairs([c for c in cards if c.depth is not None and "graph" not in c.depth])
    return pairs[0] if pairs else None


def demo_models(placeholder_dir: Optional[Path] = None) -> DemoModels:
    cards = shipped_demo_cards()
    pair = shipped_depth_pair()
    if any(c.kind == "generator" for c in cards):
        return DemoModels(cards, placeholder=False, depth_pair=pair)
    card = placeholder_card(placeholder_dir or cache_dir() / "placeholder")
    warning = (
        f"WARNING: the trained demo models are missing ({DEMO_DIR} has no generator card); serving "
        f"a PLACEHOLDER SPADE with RANDOM weights ({card.height}x{card.width}): its photos are noise."
    )
    return DemoModels([card] + cards, placeholder=True, warning=warning, depth_pair=pair)

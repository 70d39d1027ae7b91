"""The shipped demo models (``models/demo/``, ``models/baselines/``): valid cards, the size budget, the
demo's default model, and held-out figures in the cards that ``cityserve eval`` reproduces."""

from __future__ import annotations

import json

import pytest
from conftest import REPO

from cityserve.cards import load_card, sha256_file
from cityserve.cli import main
from cityserve.serving.defaults import shipped_demo_cards

DEMO_DIR = REPO / "models" / "demo"
BASELINE = DEMO_DIR.parent / "baselines" / "pix2pix-demo" / "pix2pix-demo.card.json"
PHOTO_GAN = DEMO_DIR.parent / "baselines" / "photo-gan-demo" / "photo-gan-demo.card.json"
SPADE = DEMO_DIR / "spade-demo.card.json"
SEGMENTER = DEMO_DIR / "segmenter-demo.card.json"


def test_shipped_cards_are_valid_and_fit_the_budget():
    cards = shipped_demo_cards(DEMO_DIR)
    # the generator is the demo's default; the layout card serves random_layout / random2photo
    assert [c.name for c in cards] == ["spade-demo", "segmenter-demo", "layout-demo"]
    total = 0
    photo_gan = load_card(PHOTO_GAN)  # the two-stage comparison's baseline: not a layout card, not served
    assert photo_gan.kind == "photo-gan" and photo_gan.layout is None and photo_gan.provenance["step"] == 1000
    for c in cards + [load_card(BASELINE), photo_gan]:
        weights = c.directory / c.weights
        assert sha256_file(weights) == c.sha256, c.name
        assert c.provenance["source"] == "trained" and c.provenance["training_run"]["wall_s"] > 0
        assert c.provenance["training_run"]["hardware"]["nproc"] >= 1
        if c.directory == DEMO_DIR:
            total += weights.stat().st_size
    assert total < 30e6, f"models/demo weights are {total / 1e6:.1f} MB"
    gen = cards[0]
    assert (gen.height, gen.width) == (256, 512) and gen.arch == "spade"
    layout = cards[2]
    assert layout.kind == "layout" and layout.label_set == gen.label_set and gen.width // layout.width == 4
    m = layout.metrics
    command = m["heldout/command"].split()
    assert command[:2] == ["python", "benchmarks/layout_metrics.py"] and m["heldout/seeds"] == "10000-10049"
    assert command[command.index("--seeds") + 1] == "10000-10049" and m["heldout/real_maps"] == 50
    for key in ("class_frequency_jsd", "adjacency_jsd", "components_distance", "layout_fd"):
        assert m[f"heldout/{key}"] >= m[f"heldout/floor_{key}"] >= 0, key  # generated maps are no closer than real


@pytest.mark.parametrize("card_path", [SPADE, BASELINE], ids=["spade", "pix2pix"])
def test_card_heldout_figures_are_what_cityserve_eval_gives(card_path, tmp_path):
    """The card's ``heldout/...`` metrics, recomputed from scratch by the command the card names."""
    card = load_card(card_path)
    m = card.metrics
    command = m["heldout/command"].split()
    assert command[:3] == ["cityserve", "eval", "generator"]
    seeds = command[command.index("--seeds") + 1]
    assert seeds == m["heldout/seeds"] and min(int(s) for s in seeds.split("-")) >= 10000  # held out
    out = tmp_path / "eval.json"
    assert (
        main(["eval", "generator", str(card_path), "--segmenter", str(SEGMENTER), "--seeds", seeds, "--out", str(out)])
        == 0
    )
    r = json.loads(out.read_text())
    sc = r["segmentation_consistency"]
    assert sc["miou_generated"] == pytest.approx(m["heldout/consistency_miou_generated"], abs=6e-4)
    assert sc["miou_real"] == pytest.approx(m["heldout/consistency_miou_real"], abs=6e-4)
    assert r["l1"] == pytest.approx(m["heldout/l1"], abs=6e-5)
    assert r["ssim"] == pytest.approx(m["heldout/ssim"], abs=6e-5)
    if "heldout/segfeat_frechet" in m:  # recorded since the OASIS demo generator
        assert r["segfeat_frechet"] == pytest.approx(m["heldout/segfeat_frechet"], abs=2e-3)
    assert r["size"] == f"{card.height}x{card.width}"

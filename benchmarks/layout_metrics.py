#!/usr/bin/env python
"""The layout metrics of a layout card against held-out synthetic scenes, with the noise floor.

    python benchmarks/layout_metrics.py --card runs/layout-demo --seeds 5000-5063 --out results.json

Real maps: the synthetic scenes of ``--seeds`` (drawn at the card's size); generated maps: the card's
layouts of seeds 0..N-1 (argmax, specks under the card's ``min_area`` merged). The floor row compares
the real maps with the scenes of other seeds (``--floor-seeds``, the same distribution), so a figure is
read against it. The Fréchet distance is on a fixed random-init encoder (``cityserve.metrics_layouts``):
comparable only between runs at the same size and encoder seed. Writes JSON with the command, versions
and the wall time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cityserve.cards import environment, load_card, portable_path  # noqa: E402
from cityserve.cliutil import parse_seeds  # noqa: E402
from cityserve.data.synthetic import generate_scene  # noqa: E402
from cityserve.labels import get_label_set  # noqa: E402
from cityserve.labels.snapping import logits_to_ids, remove_specks  # noqa: E402
from cityserve.metrics_layouts import layout_report  # noqa: E402
from cityserve.models.layout_sample import layout_generator_from_card, sample_logits  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--card", required=True)
    p.add_argument("--seeds", default="5000-5063", help="held-out synthetic scenes (the real maps)")
    p.add_argument("--floor-seeds", default="6000-6063", help="other scenes: the same-distribution floor")
    p.add_argument("--truncation", type=float, default=None)
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)
    t0 = time.time()
    card = load_card(a.card)
    n = get_label_set(card.label_set).num_ids
    h, w = card.height, card.width
    real = [generate_scene(s, h, w).labels for s in parse_seeds(a.seeds)]
    floor = [generate_scene(s, h, w).labels for s in parse_seeds(a.floor_seeds)]
    G = layout_generator_from_card(card)
    logits = sample_logits(G, card, list(range(len(real))), a.truncation).numpy()
    fake = [remove_specks(logits_to_ids(lg, n), card.layout.min_area) for lg in logits]
    doc = {
        "command": " ".join(["python", "benchmarks/layout_metrics.py", *(argv if argv is not None else sys.argv[1:])]),
        "card": portable_path(card.path),
        "card_sha256": card.sha256,
        "steps": card.provenance.get("step"),
        "size": [h, w],
        "generated_vs_real": layout_report(real, fake, n),
        "floor_real_vs_real": layout_report(real, floor, n),
        "environment": environment(),
        "seconds": round(time.time() - t0, 1),
    }
    text = json.dumps(doc, indent=1)
    print(text)
    if a.out:
        a.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""docs/img/layouts.png: street layouts drawn by the demo layout card and their photos by the demo SPADE.

    python models/demo/layout_figure.py --layout models/demo/layout-demo.card.json \\
        --photo models/demo/spade-demo.card.json --seeds 0-7 --out docs/img/layouts.png

Each generated pair is what ``cityserve generate --seed N --photo-model ...`` writes for seed N (argmax,
specks merged, the instance map of the thing components, the layout nearest-resized to the SPADE's
size, the photo's noise seeded with N); the last row shows held-out synthetic scenes (seeds 10000-10001,
which neither model saw) with their SPADE photos, for comparison. Tiles are halved (area) to keep the
figure small.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from cityserve.cards import load_card
from cityserve.cliutil import parse_seeds
from cityserve.data.synthetic import generate_scene
from cityserve.engines.base import Renderer
from cityserve.files import atomic_write_bytes
from cityserve.labels import encode_png, fit_nearest, get_label_set
from cityserve.labels.snapping import instance_map, logits_to_ids, remove_specks
from cityserve.models.layout_sample import layout_generator_from_card, sample_logits

GAP = 4


def half(img: np.ndarray) -> np.ndarray:
    return cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)


def pair(colors: np.ndarray, photo: np.ndarray) -> np.ndarray:
    h = photo.shape[0]
    colors = cv2.resize(colors, (photo.shape[1], h), interpolation=cv2.INTER_NEAREST)
    return np.concatenate([half(colors), np.full((h // 2, GAP, 3), 255, np.uint8), half(photo)], axis=1)


def grid(tiles: list[np.ndarray], cols: int) -> np.ndarray:
    h, w = tiles[0].shape[:2]
    rows = []
    for r in range(0, len(tiles), cols):
        row = tiles[r : r + cols] + [np.full((h, w, 3), 255, np.uint8)] * (cols - len(tiles[r : r + cols]))
        sep = np.full((h, 3 * GAP, 3), 255, np.uint8)
        rows.append(np.concatenate([x for t in row for x in (t, sep)][:-1], axis=1))
    out = []
    for row in rows:
        out += [row, np.full((3 * GAP, row.shape[1], 3), 255, np.uint8)]
    return np.concatenate(out[:-1], axis=0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layout", required=True)
    p.add_argument("--photo", required=True)
    p.add_argument("--seeds", default="0-7")
    p.add_argument("--real-seeds", default="10000-10001")
    p.add_argument("--truncation", type=float)
    p.add_argument("--cols", type=int, default=2)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    card = load_card(a.layout)
    ls = get_label_set(card.label_set)
    renderer = Renderer.from_card(a.photo)
    G = layout_generator_from_card(card)
    seeds = parse_seeds(a.seeds)
    tiles = []
    for seed, lg in zip(seeds, sample_logits(G, card, seeds, a.truncation).numpy()):
        ids = remove_specks(logits_to_ids(lg, lg.shape[0]), card.layout.min_area)
        inst = instance_map(ids, card.label_set, card.layout.instance_connectivity)
        lab, ins, _ = fit_nearest(ids, renderer.height, renderer.width, inst)
        photo = renderer.render(lab, instances=ins if renderer.io.use_instance else None, seed=seed)[0]
        tiles.append(pair(ls.ids_to_colors(ids), photo))
    for seed in parse_seeds(a.real_seeds):
        scene = generate_scene(seed, renderer.height, renderer.width)
        photo = renderer.render(
            scene.labels, instances=scene.instances if renderer.io.use_instance else None, seed=seed
        )
        tiles.append(pair(ls.ids_to_colors(scene.labels), photo[0]))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(a.out, encode_png(grid(tiles, a.cols)))
    print(f"wrote {a.out}: {len(seeds)} generated layouts + {len(tiles) - len(seeds)} real scenes (layout | photo)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

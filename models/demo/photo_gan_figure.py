#!/usr/bin/env python
"""docs/img/photo_gan.png: the photo GAN's samples beside the two-stage photos and real photos, all at 64x128.

    python models/demo/photo_gan_figure.py --photo-gan models/baselines/photo-gan-demo/photo-gan-demo.card.json \\
        --layout models/demo/layout-demo.card.json --spade models/demo/spade-demo.card.json --out docs/img/photo_gan.png

Rows (``--cols`` tiles each): the photo GAN's samples of seeds 0..; the demo SPADE's photos of the layout
GAN's layouts of the same seeds (area-resized from 256x512, as ``benchmarks/two_stage_comparison.py``
compares them); real held-out scenes ``--real-seeds`` (rendered at 256x512, area-resized). Every tile is
shown 2x with nearest-neighbour so the 64x128 pixels stay visible.
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
from cityserve.data.transforms import resize_photo
from cityserve.engines.base import Renderer
from cityserve.files import atomic_write_bytes
from cityserve.labels import encode_png, fit_nearest, get_label_set
from cityserve.labels.snapping import instance_map, logits_to_ids, remove_specks
from cityserve.models.layout_sample import layout_generator_from_card, sample_logits
from cityserve.models.photo_gan import photo_generator_from_card, sample_photos

GAP = 4


def row(tiles: list[np.ndarray]) -> np.ndarray:
    big = [cv2.resize(t, (t.shape[1] * 2, t.shape[0] * 2), interpolation=cv2.INTER_NEAREST) for t in tiles]
    sep = np.full((big[0].shape[0], GAP, 3), 255, np.uint8)
    return np.concatenate([x for t in big for x in (t, sep)][:-1], axis=1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photo-gan", required=True)
    p.add_argument("--layout", required=True)
    p.add_argument("--spade", required=True)
    p.add_argument("--cols", type=int, default=4)
    p.add_argument("--gan-rows", type=int, default=2)
    p.add_argument("--real-seeds", default="10000-10003")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    pcard, lcard = load_card(a.photo_gan), load_card(a.layout)
    size = (pcard.height, pcard.width)
    gan = list(sample_photos(photo_generator_from_card(pcard), list(range(a.cols * a.gan_rows))))
    renderer = Renderer.from_card(a.spade)
    G = layout_generator_from_card(lcard)
    n = get_label_set(lcard.label_set).num_ids
    seeds = list(range(a.cols))
    two = []
    for seed, lg in zip(seeds, sample_logits(G, lcard, seeds).numpy()):
        ids = remove_specks(logits_to_ids(lg, n), lcard.layout.min_area)
        inst = instance_map(ids, lcard.label_set, lcard.layout.instance_connectivity)
        lab, ins, _ = fit_nearest(ids, renderer.height, renderer.width, inst)
        photo = renderer.render(lab, instances=ins if renderer.io.use_instance else None, seed=seed)[0]
        two.append(resize_photo(photo, *size))
    real = [
        resize_photo(generate_scene(s, renderer.height, renderer.width).photo, *size) for s in parse_seeds(a.real_seeds)
    ]
    rows = [row(gan[i : i + a.cols]) for i in range(0, len(gan), a.cols)] + [row(two), row(real[: a.cols])]
    sep = np.full((3 * GAP, rows[0].shape[1], 3), 255, np.uint8)
    img = np.concatenate([x for r in rows for x in (r, sep)][:-1], axis=0)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(a.out, encode_png(img))
    print(f"wrote {a.out}: {len(gan)} photo-GAN samples, {len(two)} two-stage photos, {len(real)} real photos")
    return 0


if __name__ == "__main__":
    sys.exit(main())

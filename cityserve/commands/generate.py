"""``cityserve generate``: a random street from a seed, with a layout model card (and a photo of it)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..cards import load_card
from ..errors import ConfigError
from ..files import atomic_write_bytes
from ..labels import encode_png, write_color_png, write_id_png

DESCRIPTION = """\
Draw street layouts from nothing with a layout generator card (train/layouts.py: StyleGAN2-style or
DCGAN): seed N gives z ~ N(0, 1) from a generator seeded with N, so the same seed gives the same layout
on every machine. The generator's logits become label ids by argmax; components under --min-area pixels
(default: the card's) are merged into their neighbours; the instance map numbers the connected
components of the label set's thing classes (class id * 1000 + k). With --photo-model, a SPADE / OASIS /
pix2pix card renders each layout into a photo (the layout is resized with nearest neighbour to the
photo model's size when the aspect ratio matches).

Per seed, in --out: seed_N_labelIds.png (uint8, the label set's ids), seed_N_color.png (palette colors),
seed_N_instanceIds.png (16-bit), and with --photo-model seed_N_photo.png."""

EPILOG = """\
examples:
  cityserve generate --layout-model runs/layout-smoke --seed 3 --out street3/
  cityserve generate --layout-model runs/layout-smoke --seed 0 --count 4 --truncation 0.7 --out streets/
  cityserve generate --layout-model runs/layout-smoke --seed 3 --photo-model models/demo/spade-demo.card.json \\
      --out street3/
"""


def register(sub, groups) -> None:
    p = sub.add_parser(
        "generate",
        help="draw a random street layout (and its photo) from a seed",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--layout-model", required=True, metavar="CARD", help="layout generator card (kind 'layout')")
    p.add_argument("--seed", type=int, required=True, help="the first layout's seed")
    p.add_argument("--count", type=int, default=1, help="layouts: seeds SEED..SEED+COUNT-1 (default 1)")
    p.add_argument("--truncation", type=float, help="truncation psi toward the mean w, 0..2 (default: the card's)")
    p.add_argument("--min-area", type=int, help="merge components smaller than this many pixels (default: the card's)")
    p.add_argument("--photo-model", metavar="CARD", help="also render each layout into a photo with this card")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..engines.base import Renderer
    from ..labels import fit_nearest
    from ..labels.snapping import instance_map, logits_to_ids, remove_specks
    from ..models.layout_sample import layout_generator_from_card, sample_logits

    if not 1 <= args.count <= 1024:
        raise ConfigError(f"--count must be 1..1024, not {args.count}")
    if args.truncation is not None and not 0.0 <= args.truncation <= 2.0:
        raise ConfigError(f"--truncation must be 0..2, not {args.truncation}")
    if args.min_area is not None and args.min_area < 0:
        raise ConfigError(f"--min-area must be >= 0, not {args.min_area}")
    card = load_card(args.layout_model)
    if card.kind != "layout":
        raise ConfigError(f"--layout-model {args.layout_model}: a {card.kind} card, not a layout generator")
    renderer = Renderer.from_card(args.photo_model) if args.photo_model else None
    G = layout_generator_from_card(card)
    min_area = card.layout.min_area if args.min_area is None else args.min_area
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = list(range(args.seed, args.seed + args.count))
    logits = sample_logits(G, card, seeds, args.truncation).numpy()
    for seed, lg in zip(seeds, logits):
        ids = remove_specks(logits_to_ids(lg, lg.shape[0]), min_area)
        inst = instance_map(ids, card.label_set, card.layout.instance_connectivity)
        stem = out / f"seed_{seed}"
        write_id_png(f"{stem}_labelIds.png", ids, card.label_set)
        write_color_png(f"{stem}_color.png", ids, card.label_set)
        atomic_write_bytes(f"{stem}_instanceIds.png", encode_png(inst.astype(np.uint16)))
        wrote = [f"{stem.name}_labelIds.png", f"{stem.name}_color.png", f"{stem.name}_instanceIds.png"]
        if renderer is not None:
            lab, ins, _ = fit_nearest(ids, renderer.height, renderer.width, inst)
            photo = renderer.render(lab, instances=ins if renderer.io.use_instance else None, seed=seed)[0]
            atomic_write_bytes(f"{stem}_photo.png", encode_png(photo))
            wrote.append(f"{stem.name}_photo.png")
        print(f"seed {seed}: wrote {', '.join(wrote)} in {out}")
    return 0

"""Regenerate docs/img/demo_heldout.png: label | SPADE | pix2pix | real photo for held-out scenes.

    .venv/bin/python docs/make_demo_figure.py                  # the figure in models/demo/README.md
    .venv/bin/python docs/make_demo_figure.py --seeds 10000-10003 --out /tmp/fig.png

The scenes are synthetic seeds >= 10000, which the demo models never saw (they train on seeds below
10000). Each generator renders through ``cityserve.engines.Renderer`` (torch engine) from the label
ids and instance ids, exactly as ``cityserve render`` / the served ``render`` model do. Panels are shown
at the models' resolution (256x512), enlarged ``--zoom`` times (nearest neighbour) if asked.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from cityserve.cards import load_card
from cityserve.cliutil import parse_seeds
from cityserve.data.synthetic import generate_scene
from cityserve.engines import Renderer
from cityserve.labels import get_label_set

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "img" / "demo_heldout.png"
DEFAULT_SPADE = ROOT / "models" / "demo" / "spade-demo.card.json"
DEFAULT_PIX2PIX = ROOT / "models" / "baselines" / "pix2pix-demo" / "pix2pix-demo.card.json"
DEFAULT_HINGE = ROOT / "models" / "baselines" / "spade-hinge-demo" / "spade-demo.card.json"


def montage(seeds: list[int], generators: list[tuple[str, str, int]], zoom: int = 1) -> np.ndarray:
    """Rows of label | each generator (rendered with noise seed = scene seed + its shift) | real."""
    renderers = [
        (title, Renderer.from_card(load_card(path), engine="torch"), shift) for title, path, shift in generators
    ]
    h, w = renderers[0][1].height, renderers[0][1].width
    palette = get_label_set("cityscapes")
    H, W = h * zoom, w * zoom
    titles = ["label map"] + [t for t, _, _ in renderers] + ["real (synthetic) photo"]
    rows = []
    for seed in seeds:
        sc = generate_scene(seed, h, w)
        panels = [palette.ids_to_colors(sc.labels)]
        panels += [rd.render(sc.labels, instances=sc.instances, seed=seed + shift)[0] for _, rd, shift in renderers]
        rows.append((f"seed {seed}", panels + [sc.photo]))
    return labelled_grid(titles, rows, (H, W), header=28, title_y=20, title_scale=0.6, label_scale=0.5)


def labelled_grid(
    titles: list[str],
    rows: list[tuple[str, list[np.ndarray]]],
    size: tuple[int, int],
    header: int,
    title_y: int,
    title_scale: float,
    label_scale: float,
    gap: int = 4,
) -> np.ndarray:
    """A white RGB sheet: a title over each column, then per (label, panels) row its panels nearest-resized to
    ``size`` (H, W) and the label written white at the row's bottom left (docs' figures share this layout)."""
    H, W = size
    cols = len(titles)
    out = np.full((header + len(rows) * (H + gap), cols * W + (cols - 1) * gap, 3), 255, np.uint8)
    font, aa = cv2.FONT_HERSHEY_SIMPLEX, cv2.LINE_AA
    for c, t in enumerate(titles):
        cv2.putText(out, t, (c * (W + gap) + 4, title_y), font, title_scale, (30, 30, 30), 1, aa)
    for r, (label, panels) in enumerate(rows):
        y = header + r * (H + gap)
        for c, p in enumerate(panels):
            big = cv2.resize(np.ascontiguousarray(p), (W, H), interpolation=cv2.INTER_NEAREST)
            out[y : y + H, c * (W + gap) : c * (W + gap) + W] = big
        cv2.putText(out, label, (6, y + H - 8), font, label_scale, (255, 255, 255), 1, aa)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=parse_seeds, default=parse_seeds("10000-10003"))
    ap.add_argument("--spade", default=str(DEFAULT_SPADE), help="SPADE card")
    ap.add_argument("--pix2pix", default=str(DEFAULT_PIX2PIX), help="pix2pix card")
    ap.add_argument("--hinge", default=str(DEFAULT_HINGE), help="the previous SPADE (hinge + feature matching) card")
    ap.add_argument("--zoom", type=int, default=1)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    if min(args.seeds) < 10000:
        ap.error("--seeds: held-out scenes are seeds >= 10000 (the demo models trained on 0-9999)")
    generators = [
        ("SPADE OASIS, noise A", args.spade, 0),
        ("SPADE OASIS, noise B", args.spade, 1),
        ("SPADE hinge+FM (old)", args.hinge, 0),
        ("pix2pix", args.pix2pix, 0),
    ]
    img = montage(args.seeds, generators, args.zoom)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), img[..., ::-1])
    print(f"wrote {args.out} ({img.shape[1]}x{img.shape[0]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

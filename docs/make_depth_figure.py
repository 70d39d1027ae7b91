"""Regenerate docs/img/depth_heldout.png: label | true depth | stage 1's depth | two-stage photo |
single-stage photo | real photo, for held-out scenes.

    .venv/bin/python docs/make_depth_figure.py                  # the figure in the README's depth section
    .venv/bin/python docs/make_depth_figure.py --seeds 10000-10003 --out /tmp/fig.png

The scenes are synthetic seeds >= 10000, which the demo models never saw (they train on seeds below
10000), at the pair's 128x256. The two-stage photo is stage 2 fed stage 1's predicted depth, as the
served ``label2depth2photo`` chain renders it (``cityserve.evaluation.DepthAwareRenderer``, torch); the
single-stage photo is the baseline SPADE of the same budget through ``cityserve.engines.Renderer``.
Depth panels share one colour scale: log-depth from 2 m (bright) to the 1000 m sky cap (black), the
scale and colour map of docs/img/synthetic_pairs.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from make_demo_figure import labelled_grid  # docs/: the figures' shared grid

from cityserve.cards import load_card
from cityserve.cliutil import parse_seeds
from cityserve.data.synthetic import generate_scene
from cityserve.engines import Renderer
from cityserve.evaluation import DepthAwareRenderer
from cityserve.export.depth_export import depth_graph_from_card
from cityserve.labels import get_label_set

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "img" / "depth_heldout.png"
DEFAULT_DEPTH = ROOT / "models" / "demo" / "depth-demo.card.json"
DEFAULT_PHOTO = ROOT / "models" / "demo" / "depth2photo-demo.card.json"
DEFAULT_SINGLE = ROOT / "models" / "baselines" / "spade128-demo" / "spade128-demo.card.json"


def depth_image(depth: np.ndarray) -> np.ndarray:
    """Metres -> RGB, near bright, far dark (log scale, 2 m .. 1000 m, magma as docs/make_synthetic_figure.py)."""
    d = np.clip(np.log(np.maximum(depth, 2.0) / 2.0) / np.log(1000.0 / 2.0), 0, 1)
    return cv2.applyColorMap((255 * (1 - d)).astype(np.uint8), cv2.COLORMAP_MAGMA)[..., ::-1]


def montage(seeds: list[int], depth_card: str, photo_card: str, single_card: str, zoom: int = 1) -> np.ndarray:
    import torch

    dcard = load_card(depth_card)
    chain = DepthAwareRenderer(load_card(photo_card), dcard)
    stage1 = depth_graph_from_card(dcard)
    single = Renderer.from_card(load_card(single_card), engine="torch")
    h, w = chain.height, chain.width
    palette = get_label_set("cityscapes")
    H, W = h * zoom, w * zoom
    titles = ["label map", "true depth", "stage 1 depth", "two-stage photo", "single-stage photo", "real photo"]
    rows = []
    for seed in seeds:
        sc = generate_scene(seed, h, w)
        lab = torch.from_numpy(sc.labels.astype(np.int64))[None, None]
        inst = torch.from_numpy(sc.instances.astype(np.int32))[None, None]
        with torch.no_grad():
            pred = stage1(lab, inst)[0, 0].numpy()
        panels = [
            palette.ids_to_colors(sc.labels),
            depth_image(sc.depth),
            depth_image(pred),
            chain.render(sc.labels, sc.instances, None)[0],
            single.render(sc.labels, instances=sc.instances, seed=seed)[0],
            sc.photo,
        ]
        rows.append((f"seed {seed}", panels))
    return labelled_grid(titles, rows, (H, W), header=24, title_y=17, title_scale=0.5, label_scale=0.45)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=parse_seeds, default=parse_seeds("10000-10003"))
    ap.add_argument("--depth-model", default=str(DEFAULT_DEPTH), help="stage 1 card")
    ap.add_argument("--photo-model", default=str(DEFAULT_PHOTO), help="stage 2 (photo-from-depth) card")
    ap.add_argument("--single", default=str(DEFAULT_SINGLE), help="single-stage SPADE card")
    ap.add_argument("--zoom", type=int, default=1)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    if min(args.seeds) < 10000:
        ap.error("--seeds: held-out scenes are seeds >= 10000 (the demo models trained on 0-9999)")
    img = montage(args.seeds, args.depth_model, args.photo_model, args.single, args.zoom)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), img[..., ::-1])
    print(f"wrote {args.out} ({img.shape[1]}x{img.shape[0]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Regenerate docs/img/synthetic_pairs.png: label map | rendered photo | depth for a few seeds.

    .venv/bin/python docs/make_synthetic_figure.py                      # the README figure
    .venv/bin/python docs/make_synthetic_figure.py --seeds 0,1,2 --size 128x256 --out /tmp/fig.png

Scenes come from ``cityserve.data.synthetic.generate_scene`` (deterministic by seed), so the figure is
the same on every machine. Depth is shown on a log scale from 2 m (bright) to 1000 m (sky, dark).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from cityserve.cliutil import parse_seeds, parse_size
from cityserve.data.synthetic import SKY_DEPTH, generate_scene
from cityserve.labels import get_label_set

DEFAULT_OUT = Path(__file__).resolve().parent / "img" / "synthetic_pairs.png"


def depth_image(depth: np.ndarray) -> np.ndarray:
    d = np.clip(np.log(np.maximum(depth, 2.0) / 2.0) / np.log(SKY_DEPTH / 2.0), 0, 1)
    return cv2.applyColorMap((255 * (1 - d)).astype(np.uint8), cv2.COLORMAP_MAGMA)[..., ::-1]


def montage(seeds: list[int], size: tuple[int, int], with_depth: bool = True) -> np.ndarray:
    palette = get_label_set("cityscapes")
    h, w = size
    gap = max(2, w // 128)
    header = max(16, h // 10)
    titles = ["label map (Cityscapes ids)", "rendered photo"] + (["depth (log, m)"] if with_depth else [])
    cols = len(titles)
    H = header + len(seeds) * (h + gap)
    W = cols * w + (cols - 1) * gap
    out = np.full((H, W, 3), 255, np.uint8)
    scale = header / 34
    for c, t in enumerate(titles):
        cv2.putText(
            out,
            t,
            (c * (w + gap) + 4, int(header * 0.72)),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (30, 30, 30),
            max(1, int(round(scale * 2))),
            cv2.LINE_AA,
        )
    for r, seed in enumerate(seeds):
        sc = generate_scene(seed, h, w)
        panels = [palette.ids_to_colors(sc.labels), sc.photo] + ([depth_image(sc.depth)] if with_depth else [])
        y = header + r * (h + gap)
        for c, p in enumerate(panels):
            out[y : y + h, c * (w + gap) : c * (w + gap) + w] = p
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=parse_seeds, default=parse_seeds("1,8,12,17"))
    ap.add_argument("--size", type=parse_size, default=(256, 512), metavar="HxW")
    ap.add_argument("--no-depth", action="store_true", help="only label/photo pairs")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    img = montage(args.seeds, args.size, not args.no_depth)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out} ({img.shape[1]}x{img.shape[0]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

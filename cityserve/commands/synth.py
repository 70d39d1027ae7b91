"""``cityserve synth``: write procedural street scenes as Cityscapes files (photo, ids, instances,
colors, depth) for training, tests, demos and benchmarks."""

from __future__ import annotations

import argparse
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..cliutil import parse_seeds, parse_size
from ..data.synthetic import generate_scene, scene_stem, write_scene
from ..errors import ConfigError
from ..labels import write_color_png

DESCRIPTION = """\
Generate synthetic street scenes (cityserve.data.synthetic) and write them as Cityscapes files.

Each seed is one scene, identical on every machine and drawn directly at --size (the same seed is the
same street at every size). Per scene it writes:
  STEM_leftImg8bit.png          the rendered RGB photo
  STEM_gtFine_labelIds.png      Cityscapes label ids (uint8)
  STEM_gtFine_instanceIds.png   instance ids (uint16; id*1000+k for cars, people, ..., else the label id)
  STEM_gtFine_color.png         the label map in the Cityscapes palette
  STEM_depth.npy                float32 depth in metres along the camera axis (sky = 1000)
with STEM = synthetic_SSSSSS_000019 (SSSSSS = the seed). --layout cityscapes (the default) writes the
dataset tree leftImg8bit/SPLIT/synthetic/ and gtFine/SPLIT/synthetic/ that `--dataset cityscapes`
training reads; --layout flat puts every file in OUT; --layout demo writes only the label maps people
feed to `cityserve render`: street_01.png, street_02.png, ... (Cityscapes color PNGs, numbered in
--seeds order) and street_NN_instanceIds.png (how examples/ was made).

Some scenes include the bonnet of the recording car (Cityscapes "ego vehicle", id 1). Its palette color
is black like "unlabeled" (id 0), so a color PNG cannot tell them apart; --ego-vehicle no leaves it out
(the demo layout does so unless told otherwise)."""

EPILOG = """\
examples:
  cityserve synth --seeds 0-9 --size 256x512 --out data/synthetic
  cityserve synth --seeds 0-999 --size 256x512 --out data/synthetic --workers 4
  cityserve synth --seeds 100-149 --split val --out data/synthetic
  cityserve synth --seeds 3,7 --size 512x1024 --layout flat --out /tmp/scenes
  cityserve synth --seeds 1,8,12,17 --size 256x512 --layout demo --out examples
"""


def register(sub, groups) -> None:
    p = sub.add_parser(
        "synth",
        help="write synthetic street scenes as Cityscapes files",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--seeds",
        type=parse_seeds,
        default=parse_seeds("0-9"),
        metavar="SEEDS",
        help="scene seeds: 0-99, 1,5,7 or 0-9,20 (default 0-9)",
    )
    p.add_argument("--size", type=parse_size, default=(256, 512), metavar="HxW", help="resolution (default 256x512)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (created)")
    p.add_argument(
        "--layout",
        choices=("cityscapes", "flat", "demo"),
        default="cityscapes",
        help="cityscapes: leftImg8bit/ + gtFine/ tree (default); flat: all files in DIR; "
        "demo: street_NN.png color label maps + instance PNGs only",
    )
    p.add_argument(
        "--ego-vehicle",
        choices=("auto", "yes", "no"),
        default=None,
        help="draw the recording car's bonnet: auto = the seed decides (default; 'no' for demo)",
    )
    p.add_argument("--split", default="train", help="split folder of the cityscapes layout (default train)")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="worker processes (default 1)")
    p.set_defaults(func=run)


def _one(job: tuple) -> int:
    seed, (h, w), out, layout, split, ego, index = job
    scene = generate_scene(seed, h, w, ego_vehicle=ego)
    if layout == "demo":
        Path(out).mkdir(parents=True, exist_ok=True)
        write_color_png(Path(out) / f"street_{index:02d}.png", scene.labels, "cityscapes")
        if not cv2.imwrite(
            os.fspath(Path(out) / f"street_{index:02d}_instanceIds.png"), scene.instances.astype(np.uint16)
        ):
            raise OSError(f"could not write {out}/street_{index:02d}_instanceIds.png")
    else:
        write_scene(scene, out, scene_stem(seed), layout=layout, split=split)
    return seed


def run(args: argparse.Namespace) -> int:
    if args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    ego_arg = args.ego_vehicle or ("no" if args.layout == "demo" else "auto")
    ego = {"auto": None, "yes": True, "no": False}[ego_arg]
    seeds = list(dict.fromkeys(args.seeds))
    out = Path(args.out)
    jobs = [(s, args.size, os.fspath(out), args.layout, args.split, ego, i + 1) for i, s in enumerate(seeds)]
    bar = tqdm(total=len(jobs), desc="synth", unit="scene")
    if args.workers == 1:
        for job in jobs:
            _one(job)
            bar.update()
    else:
        with ProcessPoolExecutor(args.workers) as ex:
            for _ in ex.map(_one, jobs, chunksize=4):
                bar.update()
    bar.close()
    where = out / "leftImg8bit" / args.split / "synthetic" if args.layout == "cityscapes" else out
    print(f"wrote {len(jobs)} scenes ({args.size[0]}x{args.size[1]}) to {where}")
    return 0

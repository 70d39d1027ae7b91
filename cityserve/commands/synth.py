"""``cityserve synth``: write procedural street scenes as Cityscapes files (photo, ids, instances,
colors, depth) for training, tests, demos and benchmarks."""
from __future__ import annotations

import argparse
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from ..cliutil import parse_seeds, parse_size

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
training reads; --layout flat puts every file in OUT."""

EPILOG = """\
examples:
  cityserve synth --seeds 0-9 --size 256x512 --out data/synthetic
  cityserve synth --seeds 0-999 --size 256x512 --out data/synthetic --workers 4
  cityserve synth --seeds 100-149 --split val --out data/synthetic
  cityserve synth --seeds 3,7 --size 512x1024 --layout flat --out /tmp/scenes
"""


def register(sub, groups) -> None:
    p = sub.add_parser("synth", help="write synthetic street scenes as Cityscapes files",
                       description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=parse_seeds, default=parse_seeds("0-9"), metavar="SEEDS",
                   help="scene seeds: 0-99, 1,5,7 or 0-9,20 (default 0-9)")
    p.add_argument("--size", type=parse_size, default=(256, 512), metavar="HxW", help="resolution (default 256x512)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (created)")
    p.add_argument("--layout", choices=("cityscapes", "flat"), default="cityscapes",
                   help="cityscapes: leftImg8bit/ + gtFine/ tree (default); flat: all files in DIR")
    p.add_argument("--split", default="train", help="split folder of the cityscapes layout (default train)")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="worker processes (default 1)")
    p.set_defaults(func=run)


def _one(job: tuple[int, tuple[int, int], str, str, str]) -> int:
    from ..data.synthetic import generate_scene, scene_stem, write_scene

    seed, (h, w), out, layout, split = job
    write_scene(generate_scene(seed, h, w), out, scene_stem(seed), layout=layout, split=split)
    return seed


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..errors import ConfigError

    if args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    seeds = list(dict.fromkeys(args.seeds))
    out = Path(args.out)
    jobs = [(s, args.size, os.fspath(out), args.layout, args.split) for s in seeds]
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
    where = out if args.layout == "flat" else out / "leftImg8bit" / args.split / "synthetic"
    print(f"wrote {len(jobs)} scenes ({args.size[0]}x{args.size[1]}) to {where}")
    return 0

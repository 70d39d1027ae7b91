"""Time one label-map -> photo render of a generator card on the CPU (torch engine, batch 1).

    .venv/bin/python models/demo/time_render.py models/demo/spade-demo.card.json --threads 2 \\
        --out models/demo/spade_render_time.json

Renders held-out synthetic scenes (seeds 10000+) after two warm-up renders and reports the median and
the minimum of the timed runs, with the 1-minute load average before and after: on a shared machine
the load says how much of the CPU the timing really had.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from cityserve.cards import environment, load_card
from cityserve.data.synthetic import generate_scene
from cityserve.engines import Renderer


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("card")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--engine", default="torch")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    card = load_card(args.card)
    r = Renderer.from_card(card, engine=args.engine)
    scenes = [generate_scene(10000 + i, r.height, r.width) for i in range(args.runs)]
    for sc in scenes[:2]:
        r.render(sc.labels, instances=sc.instances, seed=0)
    load_before = os.getloadavg()[0]
    times = []
    for i, sc in enumerate(scenes):
        t = time.perf_counter()
        r.render(sc.labels, instances=sc.instances, seed=10000 + i)
        times.append(time.perf_counter() - t)
    res = {
        "model": card.name,
        "size": f"{r.height}x{r.width}",
        "engine": args.engine,
        "threads": args.threads,
        "runs": args.runs,
        "median_s": round(statistics.median(times), 4),
        "min_s": round(min(times), 4),
        "loadavg_1min_before": round(load_before, 2),
        "loadavg_1min_after": round(os.getloadavg()[0], 2),
        "environment": environment(),
    }
    print(json.dumps(res, indent=2))
    if args.out:
        args.out.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

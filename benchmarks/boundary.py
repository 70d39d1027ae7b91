#!/usr/bin/env python
"""What SPADE's boundary form (cityserve.export.boundary) saves on the full-size Cityscapes generator.

    nice -n 10 python benchmarks/boundary.py                 # ngf 64, 'more', 256x512, seeds 10000-10049
    python benchmarks/boundary.py --quick                    # the tiny stand-in, seconds

Counts, over the held-out synthetic scenes (seeds 10000-10049), the interior fraction at every SPADE
resolution and the share of the gamma/beta (and mlp_shared) FLOPs the boundary form skips; then times,
engine after engine on the first scenes, torch eager plain vs boundary and onnxruntime plain vs
boundary (random weights with calibrated batch-norm statistics: timing and counts do not depend on
the weights). Writes benchmarks/results/<device>/<date>-boundary.json and .md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from cityserve.bench import devices
from cityserve.bench import models as M
from cityserve.bench.engines import ENGINES, Unavailable, torch_graph
from cityserve.bench.flops import boundary_levels, count_flops, spade_blocks_at
from cityserve.cards import command_line, environment
from cityserve.data.scenes import SyntheticScenes
from cityserve.export.boundary import boundary_spade
from cityserve.models.render import instance_edges, one_hot

REPO = Path(__file__).resolve().parents[1]
ENGINE_ROWS = ["torch-eager-fp32", "torch-eager-boundary", "onnxruntime", "onnxruntime-boundary"]


def feeds_of(scene) -> dict[str, np.ndarray]:
    return {
        "labels": scene.labels.astype(np.uint8)[None, None],
        "instances": scene.instances.astype(np.int32)[None, None],
    }


def semantics(generator, feeds) -> torch.Tensor:
    cfg = generator.cfg
    x = one_hot(torch.from_numpy(feeds["labels"]), cfg.num_classes)
    return torch.cat([x, instance_edges(torch.from_numpy(feeds["instances"]))], 1) if not cfg.no_instance else x


def count(card, scenes) -> dict:
    """Interior fractions and skipped FLOPs per resolution, summed over ``scenes``."""
    generator = torch_graph(card).generator
    first = semantics(generator, feeds_of(scenes[0]))
    blocks = spade_blocks_at(generator, [first])
    total_plain = count_flops(generator, [first])
    total_boundary = []
    per_block: dict[str, dict] = {}
    for i, scene in enumerate(scenes):
        x = first if i == 0 else semantics(generator, feeds_of(scene))
        for lv in boundary_levels(generator, [x], blocks):
            row = per_block.setdefault(
                lv.block,
                {"block": lv.block, "height": lv.height, "width": lv.width, "pixels": 0, "interior": 0}
                | {k: 0 for k in ("gamma_beta_plain", "gamma_beta_boundary", "shared_plain", "shared_boundary")},
            )
            for k in (
                "pixels",
                "interior",
                "gamma_beta_plain",
                "gamma_beta_boundary",
                "shared_plain",
                "shared_boundary",
            ):
                row[k] += getattr(lv, k)
        if i == 0:  # the FLOP counter on the boundary form itself: a cross-check of the mask arithmetic
            total_boundary.append(count_flops(boundary_spade_copy(card), [x]))
    rows = list(per_block.values())
    for r in rows:
        r["interior_fraction"] = r["interior"] / r["pixels"]
        r["gamma_beta_skipped"] = 1 - r["gamma_beta_boundary"] / r["gamma_beta_plain"]
    gb_plain = sum(r["gamma_beta_plain"] for r in rows)
    gb_bnd = sum(r["gamma_beta_boundary"] for r in rows)
    sh_plain = sum(r["shared_plain"] for r in rows)
    sh_bnd = sum(r["shared_boundary"] for r in rows)
    n = len(scenes)
    skipped_per_image = (gb_plain - gb_bnd + sh_plain - sh_bnd) / n
    return {
        "scenes": SyntheticScenes([s for s in range(10000, 10000 + n)]).describe(),
        "flops_per_image_plain": total_plain,
        "flops_per_image_boundary_mean": total_plain - skipped_per_image,
        "flops_per_image_boundary_counted": total_boundary,  # FlopCounterMode on the boundary form, first scene
        "gamma_beta_flops_per_image_plain": gb_plain / n,
        "gamma_beta_share_of_plain": gb_plain / n / total_plain,
        "gamma_beta_skipped": 1 - gb_bnd / gb_plain,
        "mlp_shared_skipped": 1 - sh_bnd / sh_plain,
        "all_flops_skipped": skipped_per_image / total_plain,
        "per_resolution": rows,
    }


def boundary_spade_copy(card):
    return boundary_spade(torch_graph(card).generator)


def time_engines(card, scenes, rounds: int, cache: Path) -> dict:
    """Each engine on its own (made, warmed up, timed, dropped), so that no idle session's threads
    compete with the one being timed."""
    out, first = {}, None
    feeds = [feeds_of(s) for s in scenes]
    for name in ENGINE_ROWS:
        t0 = time.perf_counter()
        try:
            run = ENGINES[name](card, "cpu", graph_dir=cache / "graphs")
        except Unavailable as e:
            out[name] = {"status": f"not measured: {e}"}
            continue
        image = np.asarray(run(feeds[0]))  # warm-up, and the image to compare
        first = image if first is None else first
        seconds = []
        for r in range(rounds):
            t = time.perf_counter()
            run(feeds[r % len(feeds)])
            seconds.append(time.perf_counter() - t)
        d = np.abs(image.astype(np.int16) - first.astype(np.int16))
        out[name] = {
            "status": "ok",
            "setup_s": time.perf_counter() - t0 - sum(seconds),
            "seconds": seconds,
            "median_s": statistics.median(seconds),
            "vs_torch_eager_fp32": {"max_diff": int(d.max()), "identical": float((d == 0).mean())},
        }
        print(f"  {name}: " + ", ".join(f"{x:.2f}s" for x in seconds), flush=True)
        del run
        gc.collect()
    return out


def markdown(doc: dict) -> str:
    c, t = doc["counts"], doc["timing"]
    lines = [
        f"# SPADE boundary form: {doc['model']} ({doc['date'][:10]})",
        "",
        f"Command: `{doc['command']}`  ",
        f"Device: {doc['device']['cpu']} ({doc['device']['cpu_count']} cores, torch threads "
        f"{doc['device']['torch_threads']}); torch {doc['environment']['torch']}, onnxruntime {doc['onnxruntime']}",
        "",
        f"Scenes: synthetic seeds {c['scenes']['seeds']} ({c['scenes']['n_images']} images), 256x512.",
        "",
        f"- FLOPs per image, plain: {c['flops_per_image_plain'] / 1e9:.1f} G; boundary form (mean): "
        f"{c['flops_per_image_boundary_mean'] / 1e9:.1f} G ({c['all_flops_skipped'] * 100:.1f} % skipped)",
        f"- gamma/beta convs: {c['gamma_beta_share_of_plain'] * 100:.1f} % of the plain FLOPs; "
        f"{c['gamma_beta_skipped'] * 100:.1f} % of them skipped; mlp_shared: {c['mlp_shared_skipped'] * 100:.1f} % skipped",
        "",
        "| block | resolution | interior pixels | gamma/beta FLOPs skipped |",
        "| --- | --- | ---: | ---: |",
    ]
    for r in c["per_resolution"]:
        lines.append(
            f"| {r['block']} | {r['height']}x{r['width']} | {r['interior_fraction'] * 100:.1f} % | "
            f"{r['gamma_beta_skipped'] * 100:.1f} % |"
        )
    lines += [
        "",
        f"Timing, batch 1, {doc['rounds']} rounds per engine after a warm-up, engine after engine (seconds per image):",
        "",
    ]
    lines += ["| engine | median s | all runs | max diff vs torch eager (levels) |", "| --- | ---: | --- | ---: |"]
    for name, e in t.items():
        if e["status"] != "ok":
            lines.append(f"| {name} | {e['status']} | | |")
            continue
        runs = ", ".join(f"{s:.2f}" for s in e["seconds"])
        lines.append(f"| {name} | {e['median_s']:.2f} | {runs} | {e['vs_torch_eager_fp32']['max_diff']} |")
    lines += ["", doc["note"], ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="the tiny stand-in model and 4 scenes: seconds")
    p.add_argument("--scenes", type=int, default=50, help="held-out scenes counted, from seed 10000 (default 50)")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds per engine (default 3)")
    p.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    p.add_argument("--cache", type=Path, help="where the random-weights card and exports go (default: a temp dir)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="results root")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = M.TINY_SPADE if args.quick else M.SPADE_CITYSCAPES
    n = 4 if args.quick else args.scenes
    cache = args.cache or Path(tempfile.mkdtemp(prefix="cityserve-boundary-"))
    card = spec.card(cache)
    scenes = list(SyntheticScenes(range(10000, 10000 + n)).scenes((card.height, card.width)))
    print(f"counting over {n} scenes ...", flush=True)
    counts = count(card, scenes)
    print(f"  {counts['all_flops_skipped'] * 100:.1f} % of all FLOPs skipped", flush=True)
    print("timing ...", flush=True)
    timing = time_engines(card, scenes, args.rounds, cache)
    doc = {
        "name": "boundary",
        "model": spec.name,
        "model_note": spec.note,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(),
        "device": devices.describe("cpu"),
        "device_label": devices.device_label("cpu"),
        "environment": environment(),
        "onnxruntime": onnxruntime.__version__,
        "rounds": args.rounds,
        "counts": counts,
        "timing": timing,
        "note": "Random weights (batch-norm statistics calibrated on synthetic scenes). Wall-clock times come "
        "from a shared 2-core machine and vary from run to run; the FLOP figures do not.",
    }
    out = args.out / doc["device_label"] / f"{doc['date'][:10]}-boundary{'-quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, default=float) + "\n")
    out.with_suffix(".md").write_text(markdown(doc))
    print(f"wrote {out} and {out.with_suffix('.md').name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

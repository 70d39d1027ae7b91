#!/usr/bin/env python
"""Training-step speed of the SPADE trainer under each precision / memory format, side by side in one run.

    python benchmarks/train_speed.py                          # the demo configurations at 256x512
    python benchmarks/train_speed.py --size 64x128 --steps 3  # quick
    python benchmarks/train_speed.py --size 64x128 --rounds 2 --steps 2 --compare-steps 200  # + loss curves

One "step" is what ``train/spade.py`` does per batch: a generator update and a discriminator update
(both objectives). Settings are timed in interleaved rounds (each round runs every setting once), so a
machine whose load changes during the run affects all of them alike; the median over rounds is
reported with the load average. ``--compare-steps N`` also trains each config for N steps in FP32 and in
BF16 from the same seed on the same batches and records both loss curves (to show BF16 trains to
comparable losses; on a CPU without BF16 instructions that run is slow but still says it). Settings the machine cannot run (BF16 without BF16 instructions is
emulated: it is timed, and flagged) are still measured, because the point is to know. Results go to
``benchmarks/results/<device>/<date>-train-speed-<H>x<W>.{json,md}``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from cityserve.bench.devices import describe, device_label
from cityserve.cliutil import parse_size
from cityserve.data.datasets import build_dataset
from cityserve.training.runner import RunConfig, Runner
from cityserve.training.spade_trainer import SPADETrainConfig, SPADETrainer, spade_config_for

REPO = Path(__file__).resolve().parents[1]

# name -> (generator options, training options): the shipped demo model's configuration and the OASIS one
CONFIGS = {
    "spade-demo": (
        dict(ngf=8, norm_G="spectralspadebatch1x1", nhidden=32),
        dict(objective="spade", ndf=16, n_layers_D=3, num_D=2),
    ),
    "oasis-demo": (
        dict(ngf=16, norm_G="spectralspadeinstance1x1", nhidden=32, noise_dim=16),
        dict(objective="oasis", ndf=16, num_res_blocks_D=6, beta2=0.999, ema_decay=0.999),
    ),
}
SETTINGS = {  # name -> (precision, channels_last, torch.compile)
    "fp32": ("fp32", False, False),
    "fp32-channels-last": ("fp32", True, False),
    "bf16": ("bf16", False, False),
    "bf16-channels-last": ("bf16", True, False),
}


def build(
    config: str, setting: str, size: tuple[int, int], out: Path, n_batches: int = 2
) -> tuple[SPADETrainer, list[dict]]:
    gen, train = CONFIGS[config]
    precision, channels_last, _ = SETTINGS[setting]
    cfg = RunConfig(out=out, precision=precision, channels_last=channels_last, tensorboard=False, progress=False)
    runner = Runner(cfg)
    trainer = SPADETrainer(runner, spade_config_for("cityscapes", size, **gen), "cityscapes", SPADETrainConfig(**train))
    ds = build_dataset("synthetic", None, label_set="cityscapes", size=size, seeds=list(range(n_batches)))
    batches = [{k: v[None] if isinstance(v, torch.Tensor) else v for k, v in ds[i].items()} for i in range(n_batches)]
    return trainer, batches


def compare_losses(config: str, size: tuple[int, int], steps: int, tmp: Path, window: int = 20) -> dict:
    """``steps`` training steps in FP32 and in BF16 from the same seed on the same 16 batches: every
    loss per step, and the mean of each over the last ``window`` steps for both precisions."""
    curves: dict[str, dict[str, list[float]]] = {}
    seconds: dict[str, float] = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        trainer, batches = build(config, precision, size, tmp / f"curve-{config}-{precision}", n_batches=16)
        trainer.train()
        t0 = time.perf_counter()
        for step in range(1, steps + 1):
            losses = trainer.train_step(batches[(step - 1) % len(batches)], step)
            for name, value in losses.items():
                curves.setdefault(precision, {}).setdefault(name, []).append(round(float(value), 5))
        seconds[precision] = round(time.perf_counter() - t0, 1)
        print(f"{config} {precision}: {steps} steps in {seconds[precision]:.0f} s", flush=True)
    summary = {
        name: {p: round(statistics.fmean(curves[p][name][-window:]), 4) for p in ("fp32", "bf16") if name in curves[p]}
        for name in curves["fp32"]
    }
    return {"steps": steps, "window": window, "seconds": seconds, "last_window_mean": summary, "curves": curves}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, of {', '.join(CONFIGS)}")
    p.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, of {', '.join(SETTINGS)}")
    p.add_argument("--size", default="256x512", help="HxW (default 256x512)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--steps", type=int, default=4, help="timed steps per setting per round (default 4)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)")
    p.add_argument("--compare-steps", type=int, default=0, help="also train N steps in FP32 and BF16 (loss curves)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    size = parse_size(args.size)
    configs, settings = args.configs.split(","), args.settings.split(",")
    times: dict[tuple[str, str], list[float]] = {}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        built = {(c, s): build(c, s, size, Path(tmp) / f"{c}-{s}") for c in configs for s in settings}
        for trainer, batches in built.values():  # warm-up: allocator, oneDNN primitive caches
            trainer.train()
            trainer.train_step(batches[0], 1)
        for r in range(args.rounds):
            for key, (trainer, batches) in built.items():
                t0 = time.perf_counter()
                for i in range(args.steps):
                    trainer.train_step(batches[i % 2], 2 + r * args.steps + i)
                times.setdefault(key, []).append((time.perf_counter() - t0) / args.steps)
            loads.append(os.getloadavg()[0])
            print(f"round {r + 1}/{args.rounds} done, load {loads[-1]:.2f}", flush=True)
        comparisons = (
            {c: compare_losses(c, size, args.compare_steps, Path(tmp)) for c in configs} if args.compare_steps else {}
        )
        loads.append(os.getloadavg()[0])
    rows = []
    for c in configs:
        base = statistics.median(times[(c, "fp32")]) if (c, "fp32") in times else None
        for s in settings:
            med = statistics.median(times[(c, s)])
            rows.append(
                {
                    "config": c,
                    "setting": s,
                    "s_per_step_median": round(med, 4),
                    "steps_per_s": round(1 / med, 3),
                    "x_fp32": round(base / med, 3) if base else None,
                    "s_per_step_rounds": [round(t, 4) for t in times[(c, s)]],
                }
            )
    result = {
        "kind": "train-speed",
        "command": "python benchmarks/train_speed.py " + " ".join(argv if argv is not None else os.sys.argv[1:]),
        "date": datetime.date.today().isoformat(),
        "size": list(size),
        "threads": args.threads,
        "device": describe("cpu"),
        "torch": torch.__version__,
        "load_average_1min": loads,
        "configs": {k: {"generator": CONFIGS[k][0], "training": CONFIGS[k][1]} for k in configs},
        "settings": {k: dict(zip(("precision", "channels_last", "compile"), SETTINGS[k])) for k in settings},
        "rows": rows,
        "loss_curves": comparisons,
    }
    folder = args.out / device_label("cpu")
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"{result['date']}-train-speed-{size[0]}x{size[1]}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        f"# Training-step speed ({size[0]}x{size[1]}, batch 1, G + D update)",
        "",
        f"`{result['command']}` · {result['date']} · torch {torch.__version__} · {args.threads} threads · "
        f"BF16 instructions: {'yes' if result['device']['cpu_bf16'] else 'no (BF16 is emulated)'} · "
        f"1-min load average {min(loads):.2f}-{max(loads):.2f} (shared machine)",
        "",
        "| config | setting | s / step (median) | steps / s | x fp32 |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r['config']} | {r['setting']} | {r['s_per_step_median']:.3f} | {r['steps_per_s']:.2f} | {r['x_fp32']} |"
        for r in rows
    ]
    for c, comp in comparisons.items():
        lines += [
            "",
            f"## {c}: {comp['steps']} steps from the same seed, FP32 vs BF16 "
            f"(mean of the last {comp['window']} steps; {comp['seconds']['fp32']:.0f} s vs {comp['seconds']['bf16']:.0f} s)",
            "",
            "| loss | fp32 | bf16 |",
            "| --- | ---: | ---: |",
        ]
        lines += [f"| {n} | {v.get('fp32')} | {v.get('bf16')} |" for n, v in comp["last_window_mean"].items()]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {stem}.json and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

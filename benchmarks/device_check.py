#!/usr/bin/env python
"""The GPU benchmark as one prepared command, for a GPU machine lent for minutes (run it through
``benchmarks/device_check.sh``, which needs nothing installed but torch with CUDA and numpy).

    benchmarks/device_check.sh                      # on a GPU: results under benchmarks/results/<gpu>/
    benchmarks/device_check.sh --dry-run            # here, on the CPU, tiny models: the plumbing in seconds
    benchmarks/device_check.sh --stages spade       # one stage only
    benchmarks/device_check.sh --budget-s 300       # start no stage after 300 s

Stages, in order (each writes its own ``<date>-device-<stage>.json`` + .md as soon as it ends, so a
run cut short keeps what it measured; ``<date>-device-check.json`` lists what ran and what was skipped):

* ``spade``: the official full-size SPADE-Cityscapes generator (256x512, ngf 64, 562.6 GFLOP) at batch
  1 and 8;
* ``demo``: the shipped demo generator and segmenter and their photo2photo chain, batch 1 and 8;
* ``segmenters``: FCHarDNet at 1024x2048 and DeepLabV3+ (ResNet-50) at 512x1024, batch 1 and 4.

Engines: torch eager FP32 (NCHW and channels_last), FP16 and BF16 autocast with channels_last, CUDA
graphs (FP16), ``torch.compile`` (FP16), onnxruntime (CUDA provider where installed) and TensorRT FP16
(where installed). What cannot run is recorded as "not measured: <reason>", never guessed. Random
weights for the official architectures (speed does not depend on them), the shipped weights for the
demo models. The time budget counts from the start: a stage that would start after it is skipped
and listed as such. Exit codes: 0 ran, 3 no CUDA GPU (without --dry-run).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from cityserve.bench import models as M
from cityserve.bench.devices import device_label
from cityserve.bench.report import write_reports
from cityserve.bench.runner import Plan, run, save

REPO = Path(__file__).resolve().parents[1]

GPU_ENGINES = [
    "torch-eager-fp32",
    "torch-eager-fp32-channels-last",
    "torch-fp16-channels-last",
    "torch-bf16-channels-last",
    "torch-cuda-graphs-fp16",
    "torch-compile-fp16",
    "onnxruntime",
    "tensorrt-fp16",
]
# the dry run leaves torch.compile out (minutes of C++ compilation on a CPU for nothing it checks)
DRY_ENGINES = [e for e in GPU_ENGINES if "compile" not in e]


@dataclass
class Stage:
    name: str
    models: list
    batches: list[int]
    engines: list[str]


def gpu_stages() -> list[Stage]:
    demo = M.demo_cards()
    chain = [M.ChainCard(demo["segmenter"], demo["generator"])] if all(demo.values()) else []
    return [
        Stage("spade", [M.SPADE_CITYSCAPES], [1, 8], GPU_ENGINES),
        Stage("demo", [c for c in demo.values() if c] + chain, [1, 8], GPU_ENGINES),
        Stage("segmenters", [M.FCHARDNET_2K, M.DEEPLAB_R50], [1, 4], GPU_ENGINES),
    ]


def dry_stages() -> list[Stage]:
    return [
        Stage("spade", [M.TINY_SPADE], [1, 2], DRY_ENGINES),
        Stage("segmenters", [M.TINY_DEEPLAB], [1], DRY_ENGINES),
    ]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="on the CPU with tiny models, 2 runs: checks the script")
    p.add_argument("--stages", help="comma-separated stages to run (default: all, in order)")
    p.add_argument("--budget-s", type=float, default=420.0, help="start no stage after this many seconds (420)")
    p.add_argument("--runs", type=int, help="timed runs per point (default 10; dry run 2)")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT_RESULTS", REPO / "benchmarks" / "results")))
    args = p.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print(
            "device_check: no CUDA GPU here (torch.cuda.is_available() is False); --dry-run checks the script on a CPU",
            file=sys.stderr,
        )
        return 3
    device = "cpu" if args.dry_run else "cuda"
    stages = dry_stages() if args.dry_run else gpu_stages()
    if args.stages:
        wanted = args.stages.split(",")
        unknown = sorted(set(wanted) - {s.name for s in stages})
        if unknown:
            print(
                f"device_check: unknown stage(s) {', '.join(unknown)}; stages: {', '.join(s.name for s in stages)}",
                file=sys.stderr,
            )
            return 2
        stages = [s for s in stages if s.name in wanted]
    if device == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest algorithms

    t0 = time.monotonic()
    index = {
        "kind": "device-check",
        "date": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "command": " ".join(["benchmarks/device_check.sh", *(argv if argv is not None else sys.argv[1:])]),
        "device_label": device_label(device),
        "dry_run": args.dry_run,
        "budget_s": args.budget_s,
        "stages": [],
    }
    for stage in stages:
        started = time.monotonic() - t0
        if started > args.budget_s:
            index["stages"].append(
                {"stage": stage.name, "status": "skipped", "reason": f"time budget: {started:.0f} s"}
            )
            print(f"[{started:5.0f} s] {stage.name}: skipped (past the {args.budget_s:.0f} s budget)", flush=True)
            continue
        print(
            f"[{started:5.0f} s] {stage.name}: {', '.join(getattr(m, 'name', 'chain') for m in stage.models)}",
            flush=True,
        )
        plan = Plan(
            name=f"device-{stage.name}" + ("-dry-run" if args.dry_run else ""),
            device=device,
            models=stage.models,
            engines=stage.engines,
            batches=stage.batches,
            warmup=1 if args.dry_run else 3,
            runs=args.runs or (2 if args.dry_run else 10),
            triton=False,
            matmul_n=256 if args.dry_run else 8192,
        )
        out = save(run(plan, progress=False), args.out)
        write_reports(out)
        index["stages"].append(
            {
                "stage": stage.name,
                "status": "ran",
                "seconds": round(time.monotonic() - t0 - started, 1),
                "result": out.name,
            }
        )
    index["seconds"] = round(time.monotonic() - t0, 1)
    folder = args.out / index["device_label"]
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{index['date'][:10]}-device-check" + ("-dry-run" if args.dry_run else "") + ".json"
    (folder / name).write_text(json.dumps(index, indent=2) + "\n")
    print(f"wrote {folder / name} ({index['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

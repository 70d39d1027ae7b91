#!/usr/bin/env python
"""Benchmark cityserve's engines and its Triton server; results go to benchmarks/results/<device>/.

    python benchmarks/run.py --profile cpu            # this kind of machine: CPU engines + Triton cpu target
    python benchmarks/run.py --profile h100           # a GPU: eager/FP16/compile/ORT-CUDA/TensorRT
    python benchmarks/run.py --quick                  # tiny models, seconds (what the test suite runs)

Each run writes <date>-<name>.json (every figure, the device, versions and this command), a markdown
summary and PNG plots beside it. Engines that cannot run here are listed as "not measured" with the
reason. `python benchmarks/summarize.py` regenerates the README's performance section from the
committed result files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from cityserve.bench import models as M
from cityserve.bench.report import write_reports
from cityserve.bench.runner import Plan, run, save

REPO = Path(__file__).resolve().parents[1]

CPU_ENGINES = ["torch-eager-fp32", "torch-lowp-channels-last", "torch-compile-bf16", "onnxruntime", "aot-bf16"]
GPU_ENGINES = ["torch-eager-fp32", "torch-lowp-channels-last", "torch-compile-fp32", "onnxruntime", "tensorrt-fp16"]

PROFILES = {
    # name: (device, batches, engines)
    "cpu": ("cpu", [1, 2], CPU_ENGINES),
    "t4": ("cuda", [1, 2, 4, 8], GPU_ENGINES),
    "v100": ("cuda", [1, 2, 4, 8, 16], GPU_ENGINES),
    "a100": ("cuda", [1, 2, 4, 8, 16, 32], GPU_ENGINES),
    "h100": ("cuda", [1, 2, 4, 8, 16, 32], GPU_ENGINES),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", choices=sorted(PROFILES), default="cpu", help="device preset (default cpu)")
    p.add_argument("--quick", action="store_true", help="tiny models and few runs: seconds, for tests")
    p.add_argument("--models", help="comma-separated model names to keep (default: all of the profile)")
    p.add_argument("--engines", help="comma-separated engines (default: the profile's)")
    p.add_argument("--batches", help="comma-separated batch sizes (default: the profile's)")
    p.add_argument("--runs", type=int, help="timed runs per point (default 10, quick 3)")
    p.add_argument("--no-triton", action="store_true", help="skip the Triton end-to-end sweep")
    p.add_argument("--name", help="result name (default: the profile, or 'quick')")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="results root")
    p.add_argument(
        "--triton-concurrency", help="comma-separated client concurrencies of the Triton sweep (default 1,2,4,8)"
    )
    p.add_argument("--triton-requests", type=int, help="requests per Triton sweep point (default 32)")
    p.add_argument(
        "--triton-engine",
        choices=["auto", "aot", "onnxruntime", "openvino"],
        help="render model of the Triton cpu target (default: auto = OpenVINO BF16, or without openvino "
        "the AOT BF16 package, where the CPU has BF16; onnxruntime in --quick, which has no time to compile)",
    )
    p.add_argument("--threads", type=int, help="torch / onnxruntime threads (default: all cores)")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)

    device, batches, engines = PROFILES[args.profile]
    if args.quick:
        models, batches, runs, warmup, matmul_n = (
            list(M.QUICK) + [M.ChainSpec(M.TINY_DEEPLAB, M.TINY_SPADE)],
            [1, 2],
            3,
            1,
            512,
        )
        engines = ["torch-eager-fp32", "torch-lowp-channels-last", "onnxruntime", "tensorrt-fp16"]
    else:
        demo = M.demo_cards()
        chain = [M.ChainCard(demo["segmenter"], demo["generator"])] if all(demo.values()) else []
        # the shipped demo models first: Triton's sweep serves the first generator of the list
        models, runs, warmup, matmul_n = [c for c in demo.values() if c] + chain + M.OFFICIAL, 10, 2, 4096
    if args.models:
        keep = set(args.models.split(","))
        models = [
            m
            for m in models
            if getattr(m, "name", None) in keep or (isinstance(m, (M.ChainSpec, M.ChainCard)) and "photo2photo" in keep)
        ]
    if args.engines:
        engines = args.engines.split(",")
    if args.batches:
        batches = [int(b) for b in args.batches.split(",")]
    plan = Plan(
        name=args.name or ("quick" if args.quick else args.profile),
        device=device,
        models=models,
        engines=engines,
        batches=batches,
        warmup=warmup,
        runs=args.runs or runs,
        triton=not args.no_triton and device == "cpu",
        matmul_n=matmul_n,
        triton_concurrency=(
            [int(c) for c in args.triton_concurrency.split(",")]
            if args.triton_concurrency
            else [1, 2, 4]
            if args.quick
            else [1, 2, 4, 8]
        ),
        triton_requests=args.triton_requests or (8 if args.quick else 32),
        triton_cpu_engine=args.triton_engine or ("onnxruntime" if args.quick else "auto"),
    )
    doc = run(plan)
    out = save(doc, args.out)
    written = write_reports(out)
    print(f"wrote {out}")
    for w in written:
        print(f"wrote {w}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

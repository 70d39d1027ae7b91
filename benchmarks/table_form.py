#!/usr/bin/env python
"""What SPADE's table form (cityserve.export.table) does to the shipped demo generator's render time.

    nice -n 5 python benchmarks/table_form.py                      # models/demo/spade-demo, 3 rounds
    python benchmarks/table_form.py --rounds 1 --runs 1 --out /tmp/x   # a smoke run

The demo generator has 1x1 SPADE kernels and OASIS 3D noise, so every SPADE norm's gamma/beta is a
per-image table of pixel codes (exact; the boundary form cannot take noise). This times, interleaved
round by round so machine load hits every row alike, torch eager FP32 / onnxruntime FP32 / OpenVINO
BF16 (the cpu target's engine, when the ``openvino`` extra is installed), each in the plain and the table
form, at batch 1 on held-out scenes 10000-10002, and the largest difference of each row's image from
torch eager plain. Writes <out>/<date>-table-form.json and .md (out: benchmarks/results/<device>/).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from cityserve.bench import devices
from cityserve.cards import command_line, environment, load_card
from cityserve.data.synthetic import generate_scene
from cityserve.export.onnx_export import build_graph, export_onnx, run_torch

REPO = Path(__file__).resolve().parents[1]
CARD = REPO / "models" / "demo" / "spade-demo.card.json"
FORMS = ("plain", "table")


def scene_feeds(card, seed: int, z_dim: int) -> dict[str, np.ndarray]:
    s = generate_scene(seed, card.height, card.width)
    z = np.random.default_rng(seed).standard_normal((1, z_dim)).astype(np.float32)
    return {
        "labels": s.labels.astype(np.uint8)[None, None],
        "instances": s.instances.astype(np.int32)[None, None],
        "z": z,
    }


def runners(card, threads: int, tmp: Path) -> dict:
    """engine row -> feeds -> uint8 image."""
    torch.set_num_threads(threads)
    rows = {}
    for form in FORMS:
        module, names, _ = build_graph(card, form=form)
        rows[f"torch-eager-fp32-{form}"] = lambda f, m=module, n=names: run_torch(m, f, n)
        path = export_onnx(card, tmp / form, form=form)
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = threads
        sess = onnxruntime.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        rows[f"onnxruntime-fp32-{form}"] = lambda f, s=sess: s.run(None, f)[0]
        try:
            import openvino as ov
        except ImportError:
            continue
        compiled = ov.Core().compile_model(
            str(path), "CPU", {"INFERENCE_PRECISION_HINT": "bf16", "INFERENCE_NUM_THREADS": threads}
        )
        request = compiled.create_infer_request()
        rows[f"openvino-bf16-{form}"] = lambda f, r=request: next(iter(r.infer(f).values())).copy()
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--card", type=Path, default=CARD)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--runs", type=int, default=3, help="timed runs per row and round (one per scene)")
    p.add_argument("--out", type=Path, default=None, help="result folder (default benchmarks/results/<device>/)")
    a = p.parse_args(argv)
    card = load_card(a.card)
    z_dim = int(card.config.get("noise_dim", 0))
    feeds = [scene_feeds(card, 10000 + i, z_dim) for i in range(max(a.runs, 1))]
    load_start = [round(x, 1) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        rows = runners(card, a.threads, Path(tmp))
        reference = [rows["torch-eager-fp32-plain"](f) for f in feeds]
        diffs = {}
        for name, run in rows.items():
            d = [np.abs(run(f).astype(np.int16) - r.astype(np.int16)) for f, r in zip(feeds, reference)]
            diffs[name] = {"max": int(max(x.max() for x in d)), "mean": float(np.mean([x.mean() for x in d]))}
        times = {name: [] for name in rows}
        for _ in range(a.rounds):
            for name, run in rows.items():
                run(feeds[0])  # warm
                for f in feeds[: a.runs]:
                    t = time.perf_counter()
                    run(f)
                    times[name].append(time.perf_counter() - t)
    doc = {
        "benchmark": "table-form",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(),
        "card": card.name,
        "size": f"{card.height}x{card.width}",
        "device": devices.describe("cpu"),
        "threads": a.threads,
        "versions": environment(),
        "load_average": {"start": load_start, "end": [round(x, 1) for x in os.getloadavg()]},
        "rows": {
            name: {"median_ms": 1000 * statistics.median(t), "runs_ms": [round(1000 * x, 1) for x in t], **diffs[name]}
            for name, t in times.items()
        },
    }
    out = a.out or REPO / "benchmarks" / "results" / devices.device_label()
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{doc['date'][:10]}-table-form"
    stem.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(doc))
    print(markdown(doc))
    return 0


def markdown(doc: dict) -> str:
    lines = [
        f"# SPADE table form: {doc['card']} {doc['size']} ({doc['date'][:10]})",
        "",
        f"Command: `{doc['command']}`  ",
        f"Device: {doc['device']['cpu']} ({doc['device']['cpu_count']} CPUs, threads {doc['threads']}); load average at start {doc['load_average']['start']}, "
        f"at end {doc['load_average']['end']}",
        "",
        "Batch 1, held-out scenes 10000-, rows interleaved round by round; difference from torch eager plain in",
        "uint8 levels.",
        "",
        "| engine | form | median ms | x plain (same engine) | max diff | mean diff |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    rows = doc["rows"]
    for name, r in rows.items():
        engine, form = name.rsplit("-", 1)
        plain = rows[f"{engine}-plain"]["median_ms"]
        lines.append(
            f"| {engine} | {form} | {r['median_ms']:.1f} | {plain / r['median_ms']:.2f} | {r['max']} | {r['mean']:.3f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())

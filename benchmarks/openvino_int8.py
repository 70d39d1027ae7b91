#!/usr/bin/env python
"""Whether OpenVINO INT8 (NNCF post-training quantization, avx512_vnni) beats OpenVINO BF16 within the
accuracy budget (max <= 8, mean <= 1 uint8 level against FP32) on the shipped demo generator.

    pip install 'cityserve[int8]'                         # nncf
    nice -n 10 python benchmarks/openvino_int8.py         # the demo generator, 20 interleaved rounds
    python benchmarks/openvino_int8.py --rounds 3 --calibration 4    # a quick look

NNCF calibrates on scene-like label maps (``export.aot.calibration_inputs``, the AOT check's), and each
*scope* quantizes a different part of the graph (the rest stays BF16): every layer; the main 3x3
convolutions (``conv_0``/``conv_1``/``conv_s``); those except in the last up block; only the SPADE
gamma/beta convolutions. Each compiled model is compared with OpenVINO FP32 on held-out maps (other
seeds than the calibration's) and timed in interleaved rounds with OpenVINO BF16 (ratios from one
run: this machine is shared). Writes benchmarks/results/<device>/<date>-openvino-int8.json and .md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cityserve.bench import devices
from cityserve.bench.engines import BUDGET_MAX_LEVELS, BUDGET_MEAN_LEVELS
from cityserve.cards import command_line, environment, load_card
from cityserve.export.aot import calibration_inputs
from cityserve.export.onnx_export import export_onnx

REPO = Path(__file__).resolve().parents[1]
SCOPES = {  # name -> regex of the nodes NNCF leaves alone (None: quantize everything it can)
    "all layers": None,
    "main convs": r"^(?!.*/conv_(0|1|s)/).*$",
    "main convs but the last up block": r"^(?!.*/(head_0|G_middle_\d|up_[0-2])/conv_(0|1|s)/).*$",
    "gamma/beta convs": r"^(?!.*mlp_(gamma|beta)).*$",
}


def feeds_list(card, names: list[str], images: int, seed: int) -> list[dict[str, np.ndarray]]:
    tensors = [t for t in calibration_inputs(card, images=images, seed=seed) if t is not None]
    return [{n: t[i : i + 1].numpy() for n, t in zip(names, tensors)} for i in range(images)]


def level_error(compiled, reference: list[np.ndarray], feeds: list[dict]) -> dict:
    request = compiled.create_infer_request()
    diffs = [
        np.abs(np.array(request.infer(f)[0]).astype(np.int16) - r.astype(np.int16)).ravel()
        for f, r in zip(feeds, reference)
    ]
    d = np.concatenate(diffs)
    return {"max_levels": int(d.max()), "mean_levels": round(float(d.mean()), 4)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--card", default=str(REPO / "models" / "demo" / "spade-demo.card.json"), help="generator card")
    p.add_argument("--rounds", type=int, default=20, help="interleaved timed rounds (default 20)")
    p.add_argument("--calibration", type=int, default=16, help="calibration maps (default 16)")
    p.add_argument("--threads", type=int, default=2, help="OpenVINO inference threads (default 2)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="results root")
    args = p.parse_args(argv)
    try:
        import nncf
        import openvino as ov
    except ImportError as e:
        print(f"error: {e.name} is missing: pip install 'cityserve[int8]'", file=sys.stderr)
        return 3

    card = load_card(args.card)
    onnx_path = export_onnx(card, Path(tempfile.mkdtemp(prefix="cityserve-int8-")))
    core = ov.Core()
    model = core.read_model(str(onnx_path))
    names = [min(i.get_names(), key=len) for i in model.inputs]
    calibration = feeds_list(card, names, args.calibration, seed=0)
    held_out = feeds_list(card, names, 4, seed=1)
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": args.threads}
    fp32 = core.compile_model(model, "CPU", {**config, "INFERENCE_PRECISION_HINT": "f32"})
    request = fp32.create_infer_request()
    reference = [np.array(request.infer(f)[0]) for f in held_out]
    compiled = {"openvino-bf16": core.compile_model(model, "CPU", {**config, "INFERENCE_PRECISION_HINT": "bf16"})}
    for scope, pattern in SCOPES.items():
        print(f"quantizing: {scope} ...", flush=True)
        ignored = nncf.IgnoredScope(patterns=[pattern], validate=False) if pattern else None
        q = nncf.quantize(model, nncf.Dataset(calibration), subset_size=len(calibration), ignored_scope=ignored)
        compiled[f"int8 {scope}"] = core.compile_model(q, "CPU", {**config, "INFERENCE_PRECISION_HINT": "bf16"})
    rows = {name: {"accuracy": level_error(c, reference, held_out), "times_s": []} for name, c in compiled.items()}
    requests = {name: c.create_infer_request() for name, c in compiled.items()}
    for r in requests.values():  # warm-up
        r.infer(held_out[0])
    for _ in range(args.rounds):
        for name, r in requests.items():
            t = time.perf_counter()
            r.infer(held_out[0])
            rows[name]["times_s"].append(time.perf_counter() - t)
    base = float(np.median(rows["openvino-bf16"]["times_s"]))
    for row in rows.values():
        row["median_ms"] = round(1000 * float(np.median(row["times_s"])), 1)
        row["speedup_vs_bf16"] = round(base / float(np.median(row["times_s"])), 3)
        a = row["accuracy"]
        row["within_budget"] = a["max_levels"] <= BUDGET_MAX_LEVELS and a["mean_levels"] <= BUDGET_MEAN_LEVELS
    doc = {
        "name": "openvino-int8",
        "model": card.name,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(),
        "device": devices.describe("cpu"),
        "device_label": devices.device_label("cpu"),
        "environment": environment(),
        "versions": {"openvino": ov.__version__, "nncf": nncf.__version__},
        "load_average": list(os.getloadavg()),
        "budget": {"max_levels": BUDGET_MAX_LEVELS, "mean_levels": BUDGET_MEAN_LEVELS},
        "rows": rows,
    }
    out = args.out / doc["device_label"] / f"{doc['date'][:10]}-openvino-int8.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(doc))
    print(out.with_suffix(".md").read_text())
    return 0


def markdown(doc: dict) -> str:
    lines = [
        f"# OpenVINO INT8 (NNCF) vs BF16: {doc['model']} ({doc['date'][:10]})",
        "",
        f"Command: `{doc['command']}`  ",
        f"Device: {doc['device']['cpu']} ({doc['device']['cpu_count']} cores); openvino {doc['versions']['openvino']}, "
        f"nncf {doc['versions']['nncf']}; load average at the end {', '.join(f'{x:.1f}' for x in doc['load_average'])}",
        "",
        f"Accuracy against OpenVINO FP32 on 4 held-out scene-like maps; budget max <= {doc['budget']['max_levels']},"
        f" mean <= {doc['budget']['mean_levels']} uint8 levels. Timing: batch 1, rounds interleaved.",
        "",
        "| engine | max levels | mean levels | within budget | median ms | x OpenVINO BF16 |",
        "| --- | ---: | ---: | --- | ---: | ---: |",
    ]
    for name, r in doc["rows"].items():
        a = r["accuracy"]
        lines.append(
            f"| {name} | {a['max_levels']} | {a['mean_levels']:.3f} | {'yes' if r['within_budget'] else 'no'} "
            f"| {r['median_ms']} | {r['speedup_vs_bf16']:.2f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

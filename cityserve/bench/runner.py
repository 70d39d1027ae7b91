"""One benchmark run: models x engines x batch sizes (+ Triton end to end), as one JSON document.

The document is self-describing: device, versions, the command that produced it, every figure with
its unit, and for every engine that could not run, the reason ("not measured: ...") instead of a
number. ``report.py`` turns it into markdown and plots; nothing in those is computed elsewhere.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.util
import json
import os
import tempfile
import traceback
from pathlib import Path
from typing import Optional

import numpy as np
import onnxruntime
import torch
from tqdm import tqdm

from .. import contract
from ..cards import command_line, environment
from ..data.synthetic import generate_scene
from ..models.registry import render_io
from . import devices
from .engines import ENGINES, Unavailable, torch_graph
from .flops import count_flops
from .timing import measure
from .triton_bench import run_triton


@dataclasses.dataclass
class Plan:
    name: str
    device: str  # "cpu" | "cuda"
    models: list  # ModelSpec or ModelCard
    engines: list[str]
    batches: list[int]
    warmup: int = 2
    runs: int = 10
    min_seconds: float = 0.0
    triton: bool = False
    triton_concurrency: list[int] = dataclasses.field(default_factory=lambda: [1, 2, 4, 8])
    triton_requests: int = 32
    perf_analyzer: bool = False
    matmul_n: int = 4096
    triton_cpu_engine: str = "auto"  # the cpu target's render model: auto | aot | onnxruntime | openvino
    cache: Optional[Path] = None


def example_feeds(card, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs of the card's graph at ``batch``: synthetic street scenes where the model is a
    Cityscapes one (realistic label statistics), random otherwise."""
    rng = np.random.default_rng(seed)
    h, w = card.height, card.width
    if card.kind in ("segmenter", "chain"):
        if card.kind == "chain" or card.label_set == "cityscapes":  # street photos, not noise
            return {contract.IMAGE: np.stack([generate_scene(seed + i, h, w).photo for i in range(batch)])}
        return {contract.IMAGE: rng.integers(0, 256, (batch, h, w, 3), dtype=np.uint8)}

    io = render_io(card)
    feeds = {
        contract.LABELS: rng.integers(0, io.num_classes, (batch, 1, h, w)).astype(contract.label_dtype(io.num_classes))
    }
    if card.label_set == "cityscapes":
        scenes = [generate_scene(seed + i, h, w) for i in range(batch)]
        feeds[contract.LABELS] = np.stack([s.labels for s in scenes])[:, None].astype(feeds[contract.LABELS].dtype)
        inst = np.stack([s.instances for s in scenes])[:, None].astype(np.int32)
    else:
        inst = feeds[contract.LABELS].astype(np.int32)
    if io.use_instance:
        feeds[contract.INSTANCES] = inst
    if io.z_dim:
        feeds[contract.Z] = rng.standard_normal((batch, io.z_dim)).astype(np.float32)
    return feeds


def flops_per_image(card) -> int:
    graph = torch_graph(card)
    feeds = example_feeds(card, 1)
    return count_flops(graph, [torch.from_numpy(v) for v in feeds.values()])


def run(plan: Plan, progress: bool = True) -> dict:
    cache = plan.cache = plan.cache or Path(tempfile.mkdtemp(prefix="cityserve-bench-"))
    env = environment()
    env["onnxruntime"] = onnxruntime.__version__
    if importlib.util.find_spec("openvino") is not None:
        import openvino

        env["openvino"] = openvino.__version__
    info = devices.describe(plan.device)
    peak = {"fp32_matmul_tflops": devices.measure_matmul_tflops(torch.float32, plan.matmul_n, device=plan.device)}
    if plan.device == "cpu" and devices.cpu_supports_bf16():
        peak["bf16_matmul_tflops"] = devices.measure_matmul_tflops(torch.bfloat16, plan.matmul_n)
    if plan.device == "cuda":
        peak["fp16_matmul_tflops"] = devices.measure_matmul_tflops(torch.float16, plan.matmul_n, device="cuda")
    doc = {
        "name": plan.name,
        "date": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "command": command_line(),
        "device": info,
        "device_label": devices.device_label(plan.device),
        "versions": env,
        "measured_peaks": peak,
        "datasheet_peaks_tflops": devices.GPU_PEAKS_TFLOPS,
        "settings": {
            "warmup": plan.warmup,
            "runs": plan.runs,
            "min_seconds": plan.min_seconds,
            "batches": plan.batches,
            "torch_threads": torch.get_num_threads(),
        },
        "models": [],
        "triton": None,
        "load_average_at_start": list(os.getloadavg()),  # other work on the machine skews timings
    }
    bar = tqdm(total=len(plan.models) * len(plan.engines), desc="benchmark", disable=not progress)
    for spec in plan.models:
        card = spec.card(cache) if callable(getattr(spec, "card", None)) else spec
        entry = {
            "model": card.name,
            "arch": card.arch,
            "kind": card.kind,
            "height": card.height,
            "width": card.width,
            "weights": card.provenance.get("source", "trained"),
            "flops_per_image": flops_per_image(card),
            "engines": {},
        }
        for engine in plan.engines:
            bar.set_postfix_str(f"{card.name} / {engine}")
            entry["engines"][engine] = _run_engine(plan, card, engine, entry["flops_per_image"], peak, cache)
            bar.update(1)
        doc["models"].append(entry)
    bar.close()
    if plan.triton:
        doc["triton"] = run_triton(plan, doc, cache)
    doc["load_average_at_end"] = list(os.getloadavg())
    return doc


def _peak_for(engine: str, device: str, peak: dict, info_peaks: dict) -> tuple[Optional[float], str]:
    if device == "cpu":
        if "bf16" in engine or "lowp" in engine:
            return peak.get("bf16_matmul_tflops"), "measured BF16 matmul"
        return peak["fp32_matmul_tflops"], "measured FP32 matmul"
    lowp = "fp16" in engine or "lowp" in engine or "bf16" in engine
    sheet = info_peaks.get("fp16" if lowp else "fp32")
    return sheet, "datasheet " + ("FP16 tensor" if lowp else "FP32")


def _run_engine(plan: Plan, card, engine: str, flops: int, peak: dict, cache: Path) -> dict:
    try:
        runner = ENGINES[engine](card, plan.device, graph_dir=cache / card.name / "graphs")
    except Unavailable as e:
        return {"status": "not measured", "reason": str(e)}
    except Exception as e:  # a failing engine must not sink the whole run; its reason is recorded
        return {
            "status": "failed",
            "reason": f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}",
            "trace": traceback.format_exc(limit=3),
        }
    ref_peak, peak_kind = _peak_for(
        engine, plan.device, peak, devices.describe(plan.device).get("gpu_peaks_tflops", {})
    )
    results = []
    for b in plan.batches:
        feeds = example_feeds(card, b)
        try:
            t = measure(
                lambda feeds=feeds: runner(feeds),
                b,
                plan.warmup,
                plan.runs,
                plan.min_seconds,
                cuda=plan.device == "cuda",
            )
        except Exception as e:
            results.append({"batch": b, "status": "failed", "reason": f"{type(e).__name__}: {str(e)[:300]}"})
            continue
        row = t.to_dict()
        achieved = flops * b / (t.latency_ms["mean"] / 1e3) / 1e12
        row["achieved_tflops"] = achieved
        row["fraction_of_peak"] = achieved / ref_peak if ref_peak else None
        row["peak_reference"] = f"{peak_kind}: {ref_peak:.3f} TFLOP/s" if ref_peak else "no reference peak"
        results.append(row)
    out = {"status": "ok", "batches": results}
    if getattr(runner, "info", None):
        out["info"] = runner.info  # e.g. an AOT package's compile time and accuracy vs FP32
    return out


def save(doc: dict, out_root: Path) -> Path:
    day = doc["date"][:10]
    out = out_root / doc["device_label"] / f"{day}-{doc['name']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, default=float) + "\n")
    return out

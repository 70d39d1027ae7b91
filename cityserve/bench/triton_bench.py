"""Triton end to end: a real server on loopback, the cpu-target repository of one generator, and a
concurrency sweep over gRPC for the raw-tensor ``render`` model and the PNG ``label2photo`` ensemble.

"Outside the engine" is the share of the client's end-to-end latency not spent running the graph:
1 - (in-process onnxruntime latency of the same graph at batch 1) / (gRPC latency at concurrency 1 and
above). The server's own per-model compute time (Triton's statistics API) is recorded beside it.
perf_analyzer runs too when it is installed (``make perf-analyzer``; see benchmarks/README.md).
"""

from __future__ import annotations

import csv
import json as _json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import cv2
import numpy as np
import tritonclient.grpc as grpcclient

from ..cards import ModelCard
from ..data.synthetic import generate_scene
from ..labels import get_label_set
from ..models.registry import render_io
from ..serving.repo import build_repository
from ..serving.server import TritonServer
from .load import closed_loop


def _pick_generator(plan, doc) -> Optional[ModelCard]:

    for spec in plan.models:
        card = spec.card(plan.cache) if callable(getattr(spec, "card", None)) else spec
        if card.kind == "generator":
            return card
    return None


def _engine_ms(doc: dict, model: str, engine: str = "onnxruntime") -> Optional[float]:
    for m in doc["models"]:
        if m["model"] == model:
            e = m["engines"].get(engine, {})
            for r in e.get("batches", []):
                if r.get("batch") == 1 and "latency_ms" in r:
                    return r["latency_ms"]["p50"]
    return None


def _compute_ns(client, model: str) -> tuple[int, int]:
    stats = client.get_inference_statistics(model_name=model)
    s = stats.model_stats[0].inference_stats
    return int(s.compute_infer.ns), int(s.compute_infer.count)


def _sweep_point(url: str, endpoint: str, make_inputs, concurrency: int, requests: int) -> dict:
    """``requests`` infer calls on ``endpoint``, ``concurrency`` at a time, each thread with its own client."""

    def per_thread() -> SimpleNamespace:
        client = grpcclient.InferenceServerClient(url)
        inputs, outputs = make_inputs(grpcclient)
        return SimpleNamespace(client=client, inputs=inputs, outputs=outputs, close=client.close)

    def call(t: SimpleNamespace, _i: int) -> None:
        t.client.infer(endpoint, t.inputs, outputs=t.outputs, client_timeout=120)

    loop = closed_loop(call, concurrency, requests, per_thread=per_thread)
    ms = np.array(loop.latencies_s) * 1e3 if loop.latencies_s else np.array([np.nan])
    return {
        "endpoint": endpoint,
        "concurrency": concurrency,
        "requests": len(loop.latencies_s),
        "errors": loop.errors[:3],
        "latency_ms": {
            "p50": float(np.percentile(ms, 50)),
            "p90": float(np.percentile(ms, 90)),
            "p99": float(np.percentile(ms, 99)),
            "mean": float(ms.mean()),
        },
        "throughput_ips": len(loop.latencies_s) / loop.wall_s,
    }


def run_triton(plan, doc: dict, cache: Path) -> dict:
    card = _pick_generator(plan, doc)
    if card is None:
        return {"status": "not measured", "reason": "no generator in this run", "target": "cpu", "model": None}
    try:
        import tritonclient.grpc as grpcclient
    except ImportError:
        return {
            "status": "not measured",
            "reason": "tritonclient is not installed (pip install 'cityserve[serve]')",
            "target": "cpu",
            "model": card.name,
        }
    repo_dir = cache / f"triton-repo-{card.name}"
    if repo_dir.exists():
        shutil.rmtree(repo_dir)
    built = build_repository(
        [card],
        "cpu",
        repo_dir,
        work_dir=cache / "triton-work",
        overrides={"cpu_engine": getattr(plan, "triton_cpu_engine", "auto")},
    )
    render_engine = built.models["render"].get("engine", "onnxruntime")
    if render_engine == "aot":  # the in-process figure to compare with: the same package
        dtype = _json.loads((repo_dir / "render" / "1" / "card.json").read_text())["artifacts"]["aot"]["dtype"]
        render_engine = f"aot-{dtype}"
    scene = generate_scene(0, card.height, card.width)
    ids = scene.labels[None, None].astype(np.uint8)
    inst = scene.instances[None, None].astype(np.int32)

    png = cv2.imencode(".png", get_label_set(card.label_set).ids_to_colors(scene.labels)[:, :, ::-1])[1].tobytes()

    io = render_io(card)

    def raw_inputs(g):
        ins = [g.InferInput("labels", list(ids.shape), "UINT8")]
        ins[0].set_data_from_numpy(ids)
        if io.use_instance:
            i = g.InferInput("instances", list(inst.shape), "INT32")
            i.set_data_from_numpy(inst)
            ins.append(i)
        if io.z_dim:
            z = g.InferInput("z", [1, io.z_dim], "FP32")
            z.set_data_from_numpy(np.zeros((1, io.z_dim), np.float32))
            ins.append(z)
        return ins, [g.InferRequestedOutput("image")]

    def png_inputs(g):
        i = g.InferInput("LABELS_PNG", [1, 1], "BYTES")
        i.set_data_from_numpy(np.array([[png]], dtype=object))
        return [i], None

    engine_ms = _engine_ms(doc, card.name, render_engine)
    out = {
        "status": "ok",
        "target": "cpu",
        "model": card.name,
        "render_engine": render_engine,
        "engine_ms_in_process": engine_ms,
        "sweep": [],
        "perf_analyzer": {"status": "not measured"},
    }
    # the model whose compute runs the render engine: the fused label2photo runs it itself (its
    # compute includes the PNG decode and encode), the ensemble through "render"
    fused = built.models["label2photo"].get("pipeline") == "fused"
    compute_model = {"render": "render", "label2photo": "label2photo" if fused else "render"}
    with TritonServer(repo_dir) as server:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        for endpoint, make in (("render", raw_inputs), ("label2photo", png_inputs)):
            _sweep_point(server.grpc_url, endpoint, make, 1, 2)  # warm-up
            for c in plan.triton_concurrency:
                before = _compute_ns(client, compute_model[endpoint])
                row = _sweep_point(server.grpc_url, endpoint, make, c, max(plan.triton_requests, c))
                after = _compute_ns(client, compute_model[endpoint])
                n = after[1] - before[1]
                row["server_compute_model"] = compute_model[endpoint]
                row["server_render_compute_ms"] = (after[0] - before[0]) / n / 1e6 if n else None
                row["engine_ms"] = engine_ms
                row["outside_engine_share"] = (1 - engine_ms / row["latency_ms"]["p50"]) if engine_ms else None
                out["sweep"].append(row)
        out["perf_analyzer"] = run_perf_analyzer(
            server.grpc_url, "render", ids.shape, io, cache, quick=plan.triton_requests < 16, engine_ms=engine_ms
        )
        client.close()
    return out


def find_perf_analyzer() -> Optional[Path]:
    """$PERF_ANALYZER, else the ``.venv-pa/`` that ``make perf-analyzer`` sets up beside this
    environment's ``.venv/``, else ``perf_analyzer`` on PATH."""
    env = os.environ.get("PERF_ANALYZER")
    candidates = [Path(env)] if env else []
    candidates += [Path(sys.prefix).parent / ".venv-pa" / "bin" / "perf_analyzer"]
    which = shutil.which("perf_analyzer")
    if which:
        candidates.append(Path(which))
    return next((c for c in candidates if c.is_file()), None)


def parse_perf_analyzer_csv(text: str) -> list[dict]:
    """perf_analyzer's ``-f`` CSV -> one row per concurrency, ordered by concurrency (perf_analyzer
    orders its rows by throughput, which on a busy machine puts a higher concurrency first)."""
    lines = text.strip().splitlines()
    table = lines[: lines.index("")] if "" in lines else lines  # a second section may follow a blank line
    rows = [
        {
            "concurrency": int(v["Concurrency"]),
            "throughput_ips": float(v["Inferences/Second"]),
            "p50_ms": float(v["p50 latency"]) / 1e3,
            "p99_ms": float(v["p99 latency"]) / 1e3,
        }
        for v in csv.DictReader(table)
    ]
    return sorted(rows, key=lambda r: r["concurrency"])


def run_perf_analyzer(
    url: str, model: str, shape, io, cache: Path, quick: bool = False, engine_ms: Optional[float] = None
) -> dict:
    """perf_analyzer over concurrency 1..4 (1..2 in quick mode, with a loose stability criterion so a
    busy 2-core machine still converges; the settings are recorded with the command)."""
    exe = find_perf_analyzer()
    if exe is None:
        return {"status": "not measured", "reason": "perf_analyzer not installed (make perf-analyzer)"}
    csv_path = cache / "perf_analyzer.csv"
    shapes = [f"--shape=labels:{','.join(map(str, shape[1:]))}"]
    if io.use_instance:
        shapes.append(f"--shape=instances:{','.join(map(str, shape[1:]))}")
    # Each window must hold several requests: at least 6 engine latencies long. Heavy models (> 0.5 s)
    # sweep concurrency 1..2 only; quick mode also loosens the stability criterion for busy machines.
    ms = engine_ms or 0.0
    window = max(1000 if quick else 5000, int(6 * ms))
    settings = [
        "--concurrency-range",
        "1:2:1" if quick or ms > 500 else "1:4:1",
        "--measurement-interval",
        str(window),
        "-s",
        "1000" if quick else "20",
        "-r",
        "10",
    ]
    cmd = [
        str(exe),
        "-m",
        model,
        "-u",
        url,
        "-i",
        "grpc",
        "-b",
        "1",
        "--input-data",
        "zero",
        *settings,
        "-f",
        str(csv_path),
        *shapes,
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"status": "failed", "reason": str(e)[:300], "command": " ".join(cmd)}
    if proc.returncode != 0 or not csv_path.is_file():
        return {"status": "failed", "reason": (proc.stderr or proc.stdout)[-300:], "command": " ".join(cmd)}
    rows = parse_perf_analyzer_csv(csv_path.read_text())
    return {"status": "ok", "command": " ".join(cmd), "rows": rows}

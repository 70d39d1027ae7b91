"""What Triton costs on top of the engine: the shipped demo model's label2photo, fused and as an ensemble.

    python benchmarks/triton_overhead.py                       # ~3-4 min on 2 cores
    python benchmarks/triton_overhead.py --pipelines fused --no-perf-analyzer --rounds 1 --requests 10

In one run, on one cpu-target repository build per pipeline (the same exported graph, the engine the
cpu target picks, ``--cpu-engine auto``: OpenVINO BF16 on a CPU with AVX-512 BF16), with a
``cityserve serve`` (a real tritonserver) per pipeline up at once, in ``--rounds`` interleaved rounds
(so that a shared machine's changing load falls on every part alike), each round measuring in turn:

1. the engine alone, in this process: the render model's own engine loaded from the repository's
   files with the render model's own parameters (``graph_runners.graph_runner``, all cores), and per
   image the server's own PNG decode (``codec.LabelPngDecoder``), prepare (``codec.RenderInputs``) and
   encode (``codec.encode_rgb_png``): batch 1 latency, then images/s at batch 1/2/4/8;
2. each pipeline's ``label2photo`` through the project's client (``cityserve.client.CityserveClient``)
   at concurrency 1 (latency) and 16 (images/s).

Then perf_analyzer (``make perf-analyzer``) on each label2photo, concurrency 1 and 16, and the
server's per-request queue and compute times (Triton's statistics). Ratios against the issue's goals
(#16 point 4): Triton c=1 median latency / the engine's batch-1 median (goal <= 1.15) and Triton c=16
images/s / the engine's best batched images/s (goal >= 0.8). The 1-minute load average is recorded
after each round. Writes ``benchmarks/results/<device>/<date>-triton-overhead.{json,md}``.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "models" / "demo" / "spade-demo.card.json"
PIPELINES = ("fused", "ensemble")


def load() -> float:
    return round(os.getloadavg()[0], 2)


def label_pngs(card, n: int) -> list[bytes]:
    """``n`` synthetic street scenes at the card's size as palette-color PNGs (what the canvas sends)."""
    from cityserve.data.synthetic import generate_scene
    from cityserve.labels import get_label_set

    colors = get_label_set(card.label_set).ids_to_colors
    return [
        cv2.imencode(".png", colors(generate_scene(i, card.height, card.width).labels)[:, :, ::-1])[1].tobytes()
        for i in range(n)
    ]


def model_view(repo: Path, name: str):
    """What a python model sees of itself (its parameters, name, files), read from the repository."""
    from cityserve.serving.repo import parse_config

    cfg = parse_config((repo / name / "config.pbtxt").read_text())
    params = {k: v.string_value for k, v in cfg.parameters.items()}
    version = str(repo / name / "1")
    return types.SimpleNamespace(
        name=name,
        params=params,
        version_dir=version,
        version_file=lambda param, default: os.path.join(version, params.get(param, default)),
    )


class EngineAlone:
    """The render model's engine (``engine``, from the manifest) in this process, loaded from the render
    model's files with its parameters, with the server's decode / prepare / encode around it."""

    def __init__(self, repo: Path, card, engine: str, pngs: list[bytes], batches: list[int]):
        from cityserve.models.registry import render_io
        from cityserve.serving import codec
        from cityserve.serving.graph_runners import graph_runner

        io = render_io(card)
        self.view = model_view(repo, "render")
        self.run, self.engine = graph_runner(engine, self.view, ["image"])
        self.decoder = codec.LabelPngDecoder(card.label_set, card.height, card.width, io.num_classes)
        self.prepare = codec.RenderInputs(
            card.height, card.width, io.num_classes, use_instance=io.use_instance, z_dim=io.z_dim
        ).prepare
        self.encode = codec.encode_rgb_png
        self.pngs = pngs
        for b in sorted(set(batches) | {1}):  # warm-up: OpenVINO compiles per batch shape
            self.once(self.items(b))

    def items(self, n: int, start: int = 0) -> list[bytes]:
        return [self.pngs[(start + i) % len(self.pngs)] for i in range(n)]

    def once(self, items: list[bytes]) -> float:
        """Decode, prepare, render and encode ``items`` as one batch; returns the render call's seconds."""
        prepared = [self.prepare(self.decoder.decode(p)) for p in items]
        feeds = {k: np.stack([p[k] for p in prepared]) for k in prepared[0]}
        t = time.perf_counter()
        images = self.run(feeds)[0]
        render_s = time.perf_counter() - t
        [self.encode(img, 1) for img in images]
        return render_s

    def timed(self, batch: int, calls: int) -> list[tuple[float, float]]:
        """(whole request, render call) seconds of ``calls`` batches of ``batch``."""
        out = []
        for i in range(calls):
            t = time.perf_counter()
            render_s = self.once(self.items(batch, i))
            out.append((time.perf_counter() - t, render_s))
        return out


def engine_summary(engine: EngineAlone, batch1: list[tuple[float, float]], batched: dict[int, list]) -> dict:
    lat = [t for t, _ in batch1]
    rows = []
    for b, times in batched.items():
        whole = [t for t, _ in times]
        rows.append(
            {
                "batch": b,
                "calls": len(whole),
                "s_per_call_median": round(statistics.median(whole), 4),
                "images_per_s": round(b * len(whole) / sum(whole), 2),  # all calls of all rounds
            }
        )
    best = max(rows, key=lambda r: r["images_per_s"])
    return {
        "engine": engine.engine,
        "threads": engine.view.params.get("intra_op_threads", "0") + " (0: every core this process may use)",
        "batch1_ms_median": round(statistics.median(lat) * 1e3, 2),
        "batch1_ms_p90": round(float(np.percentile(lat, 90)) * 1e3, 2),
        "batch1_render_only_ms_median": round(statistics.median([r for _, r in batch1]) * 1e3, 2),
        "repeats": len(lat),
        "batches": rows,
        "best_images_per_s": best["images_per_s"],
        "best_batch": best["batch"],
    }


def client_load(client, pngs: list[bytes], concurrency: int, requests: int, want: tuple[int, int]) -> dict:
    """``requests`` label2photo calls, ``concurrency`` threads each sending one after another through
    one shared ``CityserveClient``; every answer must be a PNG of size ``want``. Raw latencies."""
    from cityserve.bench.load import closed_loop
    from cityserve.serving.codec import png_header

    def call(_state, i: int) -> None:
        header = png_header(client.label2photo(pngs[i % len(pngs)]))
        if (header.height, header.width) != want:
            raise ValueError(f"answer of the wrong size {header.height}x{header.width}")

    loop = closed_loop(call, concurrency, requests)
    return {"lat": loop.latencies_s, "errors": loop.errors, "wall": loop.wall_s}


def client_summary(concurrency: int, chunks: list[dict]) -> dict:
    lat = [x for c in chunks for x in c["lat"]]
    errors = [e for c in chunks for e in c["errors"]]
    wall = sum(c["wall"] for c in chunks)
    ms = np.array(lat) * 1e3 if lat else np.array([np.nan])
    return {
        "concurrency": concurrency,
        "requests": len(lat),
        "errors": len(errors),
        "first_errors": errors[:3],
        "latency_ms": {k: round(float(np.percentile(ms, q)), 2) for k, q in (("p50", 50), ("p90", 90), ("p99", 99))},
        "images_per_s": round(len(lat) / wall, 2),
        "wall_s": round(wall, 2),
    }


def server_stats(url: str, model: str) -> dict:
    """Triton's cumulative statistics of ``model``: requests, executions (batches) and mean times."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    try:
        s = client.get_inference_statistics(model_name=model).model_stats[0]
    finally:
        client.close()
    st = s.inference_stats
    n = max(1, st.success.count)
    return {
        "requests": int(st.success.count),
        "executions": int(s.execution_count),
        "queue_ms_mean": round(st.queue.ns / n / 1e6, 2),
        "compute_ms_mean": round((st.compute_input.ns + st.compute_infer.ns + st.compute_output.ns) / n / 1e6, 2),
    }


def perf_analyzer(url: str, png: bytes, work: Path, concurrency: str, window_ms: int) -> dict:
    """perf_analyzer on label2photo with one real label PNG as its input (JSON input data, base64)."""
    from cityserve.bench.triton_bench import find_perf_analyzer, parse_perf_analyzer_csv

    exe = find_perf_analyzer()
    if exe is None:
        return {"status": "not measured", "reason": "perf_analyzer not installed (make perf-analyzer)"}
    data = work / "label2photo-input.json"
    # BYTES as perf_analyzer reads base64 data: each element a 4-byte little-endian length, then its bytes
    element = struct.pack("<I", len(png)) + png
    data.write_text(json.dumps({"data": [{"LABELS_PNG": {"b64": base64.b64encode(element).decode()}}]}))
    csv_path = work / "perf_analyzer.csv"
    csv_path.unlink(missing_ok=True)
    cmd = [str(exe), "-m", "label2photo", "-u", url, "-i", "grpc", "-b", "1", "--input-data", str(data)]
    cmd += ["--shape", "LABELS_PNG:1", "--concurrency-range", concurrency, "--measurement-interval", str(window_ms)]
    cmd += ["-s", "1000", "-r", "3", "-f", str(csv_path)]  # 3 windows per point (a busy shared machine never settles)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"status": "failed", "reason": str(e)[:300], "command": " ".join(cmd)}
    if proc.returncode != 0 or not csv_path.is_file():
        return {"status": "failed", "reason": (proc.stderr or proc.stdout)[-400:], "command": " ".join(cmd)}
    return {"status": "ok", "command": " ".join(cmd), "rows": parse_perf_analyzer_csv(csv_path.read_text())}


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": sys.version.split()[0]}
    for pkg in (
        "torch",
        "openvino",
        "onnxruntime",
        "numpy",
        "tritonclient",
        "nvidia-pytriton",
        "opencv-python-headless",
    ):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def ratios(engine: dict, triton: dict) -> dict:
    c1 = next(r for r in triton["client"] if r["concurrency"] == 1)
    c16 = max((r for r in triton["client"] if r["concurrency"] > 1), key=lambda r: r["concurrency"])
    out = {
        "client_c1_latency_x_engine": round(c1["latency_ms"]["p50"] / engine["batch1_ms_median"], 3),
        "client_c16_throughput_x_engine_best": round(c16["images_per_s"] / engine["best_images_per_s"], 3),
    }
    pa = triton.get("perf_analyzer", {})
    if pa.get("status") == "ok":
        rows = {r["concurrency"]: r for r in pa["rows"]}
        if 1 in rows:
            out["perf_analyzer_c1_latency_x_engine"] = round(rows[1]["p50_ms"] / engine["batch1_ms_median"], 3)
        top = max(rows)
        if top > 1:
            out["perf_analyzer_c16_throughput_x_engine_best"] = round(
                rows[top]["throughput_ips"] / engine["best_images_per_s"], 3
            )
    return out


def markdown(doc: dict) -> str:
    e = doc["engine_alone"]
    lines = [
        "# Triton's cost over the engine: the demo model's label2photo, fused and as an ensemble",
        "",
        f"`{doc['command']}` · {doc['date']} · {doc['device']['cpu']}, {doc['device']['cpu_count']} cores · "
        f"engine {e['engine']} · 1-min load average {min(doc['load_average_1min'].values()):.2f}-"
        f"{max(doc['load_average_1min'].values()):.2f} (shared machine) · wall {doc['wall_s']:.0f} s",
        "",
        f"Model: {doc['model']} ({doc['size'][0]}x{doc['size'][1]}). Versions: "
        + ", ".join(f"{k} {v}" for k, v in doc["versions"].items() if v),
        "",
        "## The engine alone (in process: PNG decode + prepare + render + PNG encode)",
        "",
        f"Batch 1: median {e['batch1_ms_median']} ms (p90 {e['batch1_ms_p90']} ms; the render call alone "
        f"{e['batch1_render_only_ms_median']} ms), {e['repeats']} requests.",
        "",
        "| batch | s / call (median) | images / s |",
        "| ---: | ---: | ---: |",
        *[f"| {r['batch']} | {r['s_per_call_median']:.4f} | {r['images_per_s']:.2f} |" for r in e["batches"]],
        "",
        f"Best: {e['best_images_per_s']} images/s at batch {e['best_batch']}.",
        "",
        "## label2photo through tritonserver (cityserve serve, gRPC, the project's client)",
        "",
        "| pipeline | concurrency | requests | errors | p50 ms | p90 ms | images / s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, t in doc["pipelines"].items():
        for r in t["client"]:
            lat = r["latency_ms"]
            lines.append(
                f"| {name} | {r['concurrency']} | {r['requests']} | {r['errors']} | {lat['p50']} | {lat['p90']} | "
                f"{r['images_per_s']} |"
            )
    lines += ["", "perf_analyzer (label2photo, one real label PNG, gRPC):", ""]
    lines += ["| pipeline | concurrency | p50 ms | p99 ms | images / s |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, t in doc["pipelines"].items():
        pa = t["perf_analyzer"]
        if pa.get("status") != "ok":
            lines.append(f"| {name} | not measured: {pa.get('reason', '')[:80]} | | | |")
            continue
        for r in pa["rows"]:
            lines.append(
                f"| {name} | {r['concurrency']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['throughput_ips']:.2f} |"
            )
    lines += [
        "",
        "## Ratios (issue #16 point 4: c=1 latency <= 1.15x the engine's batch 1; c=16 >= 0.8x its best batched rate)",
        "",
        "| pipeline | client c=1 latency / engine | client c=16 rate / engine best | "
        "perf_analyzer c=1 / engine | perf_analyzer c=16 / engine best |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, t in doc["pipelines"].items():
        r = t["ratios"]
        lines.append(
            f"| {name} | {r['client_c1_latency_x_engine']} | {r['client_c16_throughput_x_engine_best']} | "
            f"{r.get('perf_analyzer_c1_latency_x_engine', '-')} | "
            f"{r.get('perf_analyzer_c16_throughput_x_engine_best', '-')} |"
        )
    lines += ["", "Server statistics of label2photo over the whole run (Triton's statistics API):", ""]
    lines += [
        "| pipeline | requests | executions | queue ms (mean) | compute ms (mean) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, t in doc["pipelines"].items():
        s = t["server_label2photo"]
        lines.append(
            f"| {name} | {s['requests']} | {s['executions']} | {s['queue_ms_mean']} | {s['compute_ms_mean']} |"
        )
    lines += [
        "",
        "Batching of the fused model (from its config): "
        + json.dumps(doc["pipelines"].get("fused", {}).get("batching", {})),
    ]
    notes = [*doc.get("notes", []), *outlier_notes(doc)]
    if notes:
        lines += ["", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def outlier_notes(doc: dict) -> list[str]:
    """Where a pipeline's tail at concurrency 1 is far from its median (p99 over 3x p50): say so."""
    notes = []
    for name, t in doc["pipelines"].items():
        rows = [
            ("client", r["latency_ms"]["p50"], r["latency_ms"]["p99"]) for r in t["client"] if r["concurrency"] == 1
        ]
        if t["perf_analyzer"].get("status") == "ok":
            rows += [
                ("perf_analyzer", r["p50_ms"], r["p99_ms"]) for r in t["perf_analyzer"]["rows"] if r["concurrency"] == 1
            ]
        for tool, p50, p99 in rows:
            if p99 > 3 * p50:
                notes.append(
                    f"{name}, {tool}, concurrency 1: p99 {p99:.0f} ms against p50 {p50:.0f} ms: a few requests took "
                    "far longer (the ratios use medians)."
                )
    return notes


def batching_of(repo: Path) -> dict:
    from cityserve.serving.repo import parse_config

    cfg = parse_config((repo / "label2photo" / "config.pbtxt").read_text())
    if cfg.platform == "ensemble":
        return {"ensemble": True}
    if not cfg.HasField("dynamic_batching"):
        return {"max_batch_size": cfg.max_batch_size, "dynamic_batching": False, "instances": _instances(cfg)}
    return {
        "max_batch_size": cfg.max_batch_size,
        "dynamic_batching": True,
        "preferred_batch_size": list(cfg.dynamic_batching.preferred_batch_size),
        "max_queue_delay_us": cfg.dynamic_batching.max_queue_delay_microseconds,
        "instances": _instances(cfg),
    }


def _instances(cfg) -> int:
    return sum(g.count for g in cfg.instance_group)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--card", type=Path, default=DEMO, help="generator card (default: the shipped demo SPADE)")
    p.add_argument("--pipelines", default=",".join(PIPELINES), help="comma-separated, of fused, ensemble")
    p.add_argument("--cpu-engine", default="auto", help="the repositories' --cpu-engine (default auto)")
    p.add_argument("--batches", default="1,2,4,8", help="engine-alone batch sizes (default 1,2,4,8)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds: engine, each pipeline (default 3)")
    p.add_argument("--repeats", type=int, default=30, help="engine-alone batch-1 requests, all rounds (default 30)")
    p.add_argument("--requests", type=int, default=45, help="client requests at concurrency 1, all rounds (default 45)")
    p.add_argument("--concurrency", type=int, default=16, help="the loaded point (default 16)")
    p.add_argument(
        "--loaded-requests", type=int, default=192, help="client requests at --concurrency, all rounds (default 192)"
    )
    p.add_argument("--window-ms", type=int, default=3000, help="perf_analyzer measurement window (default 3000)")
    p.add_argument("--no-perf-analyzer", action="store_true", help="skip perf_analyzer")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--date", default=datetime.date.today().isoformat(), help="date in the file name")
    p.add_argument("--report", type=Path, metavar="JSON", help="only rewrite the .md of this result file")
    args = p.parse_args(argv)
    if args.report:
        args.report.with_suffix(".md").write_text(markdown(json.loads(args.report.read_text())))
        return 0

    from cityserve.bench.devices import describe, device_label
    from cityserve.bench.serve_process import ServeProcess
    from cityserve.cards import load_card
    from cityserve.client import CityserveClient
    from cityserve.export.onnx_export import export_onnx
    from cityserve.models.registry import render_io
    from cityserve.serving.repo import build_repository

    t_start = time.perf_counter()
    loads = {"start": load()}
    card = load_card(args.card)
    pipelines = [s for s in args.pipelines.split(",") if s]
    doc: dict = {
        "kind": "triton-overhead",
        "command": "python benchmarks/triton_overhead.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": args.date,
        "device": describe("cpu"),
        "versions": versions(),
        "model": card.name,
        "size": [card.height, card.width],
        "pipelines": {},
        "notes": [],
    }
    with tempfile.TemporaryDirectory(prefix="triton-overhead-") as tmp:
        work = Path(tmp)
        exported = export_onnx(card, work / "onnx").with_name("render.card.json")  # one graph for every build
        repos = {}
        for name in pipelines:
            overrides = {"pipeline": name, "cpu_engine": args.cpu_engine}
            repos[name] = build_repository([exported], "cpu", work / f"repo-{name}", overrides=overrides).path
        print(f"repositories built ({time.perf_counter() - t_start:.0f} s)", flush=True)
        pngs = label_pngs(card, 8)
        first = repos[pipelines[0]]
        render_engine = json.loads((first / "cityserve_repo.json").read_text())["models"]["render"]["engine"]
        batches = [int(b) for b in args.batches.split(",")]
        servers = {}
        try:
            for name in pipelines:  # both up at once, so that every round measures each in turn
                servers[name] = ServeProcess(repos[name]).start(timeout=300)
            clients = {name: CityserveClient(servers[name].grpc_url, timeout=300) for name in pipelines}
            engine = EngineAlone(first, card, render_engine, pngs, batches)
            want = (card.height, card.width)
            for client in clients.values():  # warm-up
                for p in pngs[:4]:
                    client.label2photo(p)
            print(f"servers up ({time.perf_counter() - t_start:.0f} s)", flush=True)
            batch1, batched = [], {b: [] for b in batches}
            c1 = {name: [] for name in pipelines}
            loaded = {name: [] for name in pipelines}
            per_round = max(1, args.requests // args.rounds)
            for r in range(args.rounds):
                batch1 += engine.timed(1, max(1, args.repeats // args.rounds))
                for name in pipelines:
                    c1[name].append(client_load(clients[name], pngs, 1, per_round, want))
                for b in batches:
                    batched[b] += engine.timed(b, max(2, args.repeats // args.rounds // b))
                for name in pipelines:
                    n = max(args.concurrency, args.loaded_requests // args.rounds)
                    loaded[name].append(client_load(clients[name], pngs, args.concurrency, n, want))
                loads[f"after_round_{r + 1}"] = load()
                print(f"round {r + 1}/{args.rounds} ({time.perf_counter() - t_start:.0f} s)", flush=True)
            doc["engine_alone"] = engine_summary(engine, batch1, batched)
            for name in pipelines:
                t = {
                    "batching": batching_of(repos[name]),
                    "client": [client_summary(1, c1[name]), client_summary(args.concurrency, loaded[name])],
                }
                t["perf_analyzer"] = (
                    {"status": "not measured", "reason": "--no-perf-analyzer"}
                    if args.no_perf_analyzer
                    else perf_analyzer(
                        servers[name].grpc_url,
                        pngs[0],
                        work,
                        f"1:{args.concurrency}:{args.concurrency - 1}",
                        args.window_ms,
                    )
                )
                t["server_label2photo"] = server_stats(servers[name].grpc_url, "label2photo")
                t["ratios"] = ratios(doc["engine_alone"], t)
                loads[f"after_{name}_perf_analyzer"] = load()
                doc["pipelines"][name] = t
                print(f"{name}: {json.dumps(t['ratios'])} ({time.perf_counter() - t_start:.0f} s)", flush=True)
            for client in clients.values():
                client.close()
        finally:
            for server in servers.values():
                server.terminate()
    doc["load_average_1min"] = loads
    doc["wall_s"] = round(time.perf_counter() - t_start, 1)
    if render_io(card).z_dim:
        doc["notes"].append(
            "This generator takes a random latent per request (--latent random), so photos differ between "
            "requests; bit-exactness of fused vs ensemble is checked in tests/test_serving.py on a tiny model."
        )
    folder = args.out / device_label("cpu")
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"{args.date}-triton-overhead"
    stem.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
    stem.with_suffix(".md").write_text(markdown(doc))
    print(f"wrote {stem}.json and .md ({doc['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

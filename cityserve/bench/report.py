"""A benchmark JSON -> markdown summary + PNG plots. Every number shown is read from the JSON."""

from __future__ import annotations

import json
from pathlib import Path

from ..extras import require


def _fmt(x, digits=1):
    return "–" if x is None else f"{x:.{digits}f}"


def markdown(doc: dict) -> str:
    dev = doc["device"]
    lines = [
        f"## {doc['name']} — {doc['device_label']}",
        "",
        f"- date: {doc['date']}",
        f"- command: `{doc['command']}`",
        f"- device: {dev.get('gpu') or dev['cpu']} ({dev['cpu_count']} CPUs, torch threads "
        f"{doc['settings']['torch_threads']}; CPU BF16: {'yes' if dev.get('cpu_bf16') else 'no'})",
        "- versions: "
        + ", ".join(
            f"{k} {v}" for k, v in doc["versions"].items() if k in ("torch", "onnxruntime", "openvino", "python")
        ),
        "- measured peaks: "
        + ", ".join(f"{k} {v:.3f}" for k, v in doc["measured_peaks"].items())
        + (
            " (torch's n^3 matmul on this CPU; '% of peak' is relative to it, and onnxruntime's own GEMM "
            "can exceed it, hence values over 100%)"
            if doc["device"]["device"] == "cpu"
            else ""
        ),
        (
            f"- load average (1/5/15 min) at start {'/'.join(f'{x:.1f}' for x in doc['load_average_at_start'])}, "
            f"at end {'/'.join(f'{x:.1f}' for x in doc['load_average_at_end'])}\n"
            if "load_average_at_start" in doc and "load_average_at_end" in doc
            else ""
        )
        + f"- latency: p50/p90/p99 over ≥{doc['settings']['runs']} timed runs after "
        f"{doc['settings']['warmup']} warm-up runs; memory: "
        + ("CUDA max allocated" if doc["device"]["device"] == "cuda" else "peak process RSS"),
        "",
    ]
    for m in doc["models"]:
        lines += [
            f"### {m['model']} ({m['arch']}, {m['height']}x{m['width']}, "
            f"{m['flops_per_image'] / 1e9:.1f} GFLOP/image, {m['weights']})",
            "",
            "| engine | batch | p50 ms | p90 ms | p99 ms | images/s | TFLOP/s | % of peak | peak MB |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, e in m["engines"].items():
            if e["status"] != "ok":
                lines.append(f"| {name} | – | {e['status']}: {e['reason']} | | | | | | |")
                continue
            for r in e["batches"]:
                if r.get("status") == "failed":
                    lines.append(f"| {name} | {r['batch']} | failed: {r['reason']} | | | | | | |")
                    continue
                lat = r["latency_ms"]
                frac = r["fraction_of_peak"]
                lines.append(
                    f"| {name} | {r['batch']} | {_fmt(lat['p50'])} | {_fmt(lat['p90'])} | {_fmt(lat['p99'])} | "
                    f"{_fmt(r['throughput_ips'], 2)} | {_fmt(r['achieved_tflops'], 3)} | "
                    f"{_fmt(frac * 100 if frac is not None else None)} | {_fmt(r['peak_memory_mb'], 0)} |"
                )
        lines.append("")
    t = doc.get("triton")
    if t:
        lines += [f"### Triton end to end ({t['target']} target, model `{t['model']}`, gRPC)", ""]
        if t.get("status") != "ok":
            lines.append(f"not measured: {t.get('reason')}")
        else:
            lines += [
                "| endpoint | concurrency | p50 ms | p90 ms | p99 ms | images/s | engine share | outside engine |",
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            ]
            for r in t["sweep"]:
                lines.append(
                    f"| {r['endpoint']} | {r['concurrency']} | {_fmt(r['latency_ms']['p50'])} | "
                    f"{_fmt(r['latency_ms']['p90'])} | {_fmt(r['latency_ms']['p99'])} | "
                    f"{_fmt(r['throughput_ips'], 2)} | {_fmt(r['engine_ms'])} ms | "
                    f"{_fmt(r['outside_engine_share'] * 100 if r['outside_engine_share'] is not None else None)}% |"
                )
            pa = t.get("perf_analyzer")
            lines += ["", f"perf_analyzer: {pa['status']}" + (f" ({pa.get('reason')})" if pa.get("reason") else "")]
            for r in pa.get("rows", []):
                lines.append(
                    f"- concurrency {r['concurrency']}: {r['throughput_ips']:.2f} infer/s, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms"
                )
        lines.append("")
    return "\n".join(lines) + "\n"


def plots(doc: dict, out_prefix: Path) -> list[Path]:
    matplotlib = require("bench", "matplotlib", "benchmark plots")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    models = [m for m in doc["models"] if any(e["status"] == "ok" for e in m["engines"].values())]
    if models:
        fig, axes = plt.subplots(1, len(models), figsize=(4.5 * len(models), 3.6), squeeze=False)
        for ax, m in zip(axes[0], models):
            for name, e in m["engines"].items():
                rows = [r for r in e.get("batches", []) if "latency_ms" in r]
                if rows:
                    ax.plot([r["batch"] for r in rows], [r["latency_ms"]["p50"] for r in rows], "o-", label=name)
            ax.set_title(m["model"], fontsize=9)
            ax.set_xlabel("batch")
            ax.set_ylabel("p50 latency (ms)")
            ax.set_xscale("log", base=2)
            ax.legend(fontsize=7)
        fig.tight_layout()
        p = out_prefix.with_name(out_prefix.name + "-latency.png")
        fig.savefig(p, dpi=110)
        plt.close(fig)
        written.append(p)
    t = doc.get("triton")
    if t and t.get("status") == "ok":
        fig, ax = plt.subplots(figsize=(5, 3.6))
        for ep in sorted({r["endpoint"] for r in t["sweep"]}):
            rows = [r for r in t["sweep"] if r["endpoint"] == ep]
            ax.plot([r["concurrency"] for r in rows], [r["throughput_ips"] for r in rows], "o-", label=ep)
        ax.set_xlabel("concurrent requests")
        ax.set_ylabel("images/s")
        ax.set_title(f"Triton {t['target']}: throughput vs concurrency", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        p = out_prefix.with_name(out_prefix.name + "-triton.png")
        fig.savefig(p, dpi=110)
        plt.close(fig)
        written.append(p)
    return written


def write_reports(json_path: Path) -> list[Path]:
    doc = json.loads(Path(json_path).read_text())
    prefix = Path(json_path).with_suffix("")
    md = prefix.with_suffix(".md")
    md.write_text(markdown(doc))
    return [md, *plots(doc, prefix)]

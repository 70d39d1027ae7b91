#!/usr/bin/env python
"""Stroke end -> new photo on screen, in the designer's canvas, in a real Chromium.

    python benchmarks/canvas_latency.py                         # 60 strokes, the shipped demo SPADE
    python benchmarks/canvas_latency.py --strokes 50 --screenshot docs/img/canvas.png

Starts ``cityserve canvas --model models/demo/spade-demo.card.json`` (its own tritonserver, cpu
target), opens the page in Debian's chromium (Playwright), loads a starting layout and paints
``--strokes`` strokes of alternating classes with the mouse. For each stroke the page records the
time from its pointerup handler to the load event of the new photo's <img> (decoded; the next frame
paints it): the PNG of the label map, the request, Starlette, the check of the label map, gRPC, the
time from its pointerup handler to the frame that paints the new photo: the label ids (raw uint8,
as the page sends them), the request, Starlette, the check of the label map, gRPC, the render on
Triton (with the page's style seed: the raw render model), the photo's PNG back, its decode in the
browser and the next frame. Drag renders while the mouse moves are sent too, as for a user (one in
flight at a time; the stroke's own waits for one still in flight).

p50 / p90 go to ``benchmarks/results/<device>/<date>-canvas-latency.{json,md}`` with the breakdown
of each stroke's time, as the page records it: wait (for a drag render still in flight), encode,
request (sent -> the answer's headers; of it, the server's own Server-Timing: read, check, triton,
encode), download, decode, frame.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["vegetation", "car", "building", "sidewalk", "sky", "road"]


def start_canvas(model: str, timeout: float) -> tuple[subprocess.Popen, str, list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cityserve", "canvas", "--port", "0", "--model", model],
        cwd=REPO,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        print("  canvas |", line.rstrip(), flush=True)
        m = re.match(r"canvas: (http://\S+?)/?\s", line)
        if m:
            threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
            return proc, m.group(1), lines
    proc.kill()
    raise SystemExit("cityserve canvas did not start:\n" + "".join(lines))


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


PHASES = {  # the page's phases of one render (canvas.js send()), then the server's (Server-Timing)
    "wait": "for a drag render still in flight",
    "encode": "the label ids as the request body",
    "request": "sent -> the answer's headers",
    "download": "the photo's body (JPEG preview)",
    "decode": "the photo's <img> load event",
    "frame": "-> the next frame",
    "server.read": "canvas app: the request body",
    "server.check": "canvas app: the label map's check",
    "server.triton": "canvas app: the gRPC call to Triton (render included)",
    "server.encode": "canvas app: the photo's encoding (JPEG preview)",
    "server.total": "canvas app: the whole request in the handler",
    "outside": "request - server.total: HTTP on loopback, uvicorn, Starlette",
}


TRITON_STAGES = ("queue", "compute_input", "compute_infer", "compute_output")


def triton_stats(grpc_url: str, model: str) -> dict:
    """Triton's own cumulative statistics of ``model``: successes and ns per stage (queue, compute_*)."""
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(grpc_url) as c:
        st = c.get_inference_statistics(model_name=model, as_json=True)["model_stats"][0]["inference_stats"]
    out = {"count": int(st.get("success", {}).get("count", 0))}
    for k in TRITON_STAGES:
        out[k] = int(st.get(k, {}).get("ns", 0))
    return out


def triton_delta(before: dict, after: dict) -> dict:
    """Mean ms per request of each Triton stage between two ``triton_stats`` (every request of the run)."""
    n = after["count"] - before["count"]
    out = {"requests": n}
    for k in TRITON_STAGES:
        out[k] = round((after[k] - before[k]) / max(n, 1) / 1e6, 1)
    return out


def flat(rec: dict) -> dict:
    out = {k: v for k, v in rec.items() if k != "server"}
    out.update({f"server.{k}": v for k, v in (rec.get("server") or {}).items()})
    if "request" in out and "server.total" in out:
        out["outside"] = out["request"] - out["server.total"]
    return out


def summary(xs: list[float]) -> dict:
    return {
        "p50": round(percentile(xs, 0.5), 1),
        "p90": round(percentile(xs, 0.9), 1),
        "mean": round(statistics.fmean(xs), 1),
        "min": round(min(xs), 1),
        "max": round(max(xs), 1),
    }


def breakdown(records: list[dict]) -> dict:
    rows = [flat(r) for r in records]
    return {name: summary([r[name] for r in rows if name in r]) for name in PHASES if any(name in r for r in rows)}


# the phases of the next photo the page shows for a stroke, from its own "photo-shown" event: waiting on
# an event, not polling the page every frame, leaves the CPUs to the render as a user's browser would
NEXT_STROKE_PHOTO = """() => {
  window.cityserveNextStrokePhoto = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no photo for the stroke within 60 s")), 60000);
    document.addEventListener("photo-shown", function shown(e) {
      if (e.detail.reason !== "stroke") return;
      document.removeEventListener("photo-shown", shown);
      clearTimeout(timer);
      resolve(e.detail.phases);
    });
  });
}"""


def paint(page, strokes: int, seed: int) -> list[dict]:
    """Paint ``strokes`` strokes; per stroke the page's record of its render (``lastPhases``: ms from
    the pointerup handler to the frame painting the new photo, ``total``, and its phases)."""
    import random

    rng = random.Random(seed)
    out = []
    for i in range(strokes):
        page.click(f".swatch[data-name='{CLASSES[i % len(CLASSES)]}']")
        box = page.locator("#labels").bounding_box()  # after the click: it may have scrolled the page
        x0, y0 = rng.uniform(0.05, 0.6) * box["width"], rng.uniform(0.1, 0.9) * box["height"]
        x1, y1 = x0 + rng.uniform(0.1, 0.35) * box["width"], y0 + rng.uniform(-0.1, 0.1) * box["height"]
        page.evaluate(NEXT_STROKE_PHOTO)
        page.mouse.move(box["x"] + x0, box["y"] + y0)
        page.mouse.down()
        for k in range(1, 13):  # a short stroke: 12 moves ~15 ms apart
            page.mouse.move(box["x"] + x0 + (x1 - x0) * k / 12, box["y"] + y0 + (y1 - y0) * k / 12)
            page.wait_for_timeout(15)
        page.mouse.up()
        try:
            out.append(page.evaluate("window.cityserveNextStrokePhoto"))
        except Exception:
            print("page status:", page.inner_text("#status"), "| message:", page.inner_text("#message-text"))
            raise
        page.wait_for_timeout(rng.uniform(100, 300))  # a pause between strokes, as people make
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="models/demo/spade-demo.card.json", help="the card the canvas serves")
    p.add_argument("--strokes", type=int, default=60, help="strokes to time (default 60; at least 50 for results)")
    p.add_argument("--warmup", type=int, default=5, help="strokes before timing (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the stroke positions and the style (default 0)")
    p.add_argument("--screenshot", type=Path, help="also save a screenshot of the page here")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--startup-timeout", type=float, default=600.0)
    args = p.parse_args(argv)
    from playwright.sync_api import sync_playwright

    from cityserve.bench.devices import describe, device_label
    from cityserve.canvas.browser import launch

    loads = [os.getloadavg()[0]]
    proc, url, lines = start_canvas(args.model, args.startup_timeout)
    try:
        with sync_playwright() as pw:
            browser = launch(pw)
            page = browser.new_page(viewport={"width": 1320, "height": 900})
            page.set_default_timeout(120_000)
            page.goto(url + "/")
            page.wait_for_function("document.body.dataset.ready === '1' && window.cityserveCanvas.renders >= 1")
            page.fill("#seed", str(args.seed))
            n = page.evaluate("window.cityserveCanvas.renders")
            page.select_option("#layouts", "street_01.png")
            page.wait_for_function(f"window.cityserveCanvas.renders > {n}")
            paint(page, args.warmup, args.seed + 1)
            grpc_url = re.search(r"tritonserver ready: gRPC (\S+),", "".join(lines)).group(1)
            render_model = page.evaluate("fetch('/labels').then(r => r.json()).then(j => j.render_model)")
            stats0 = triton_stats(grpc_url, render_model)
            t0 = time.perf_counter()
            timed = paint(page, args.strokes, args.seed + 2)
            wall = time.perf_counter() - t0
            triton = triton_delta(stats0, triton_stats(grpc_url, render_model))
            lat = [t["total"] for t in timed]
            sent, shown = page.evaluate("[window.cityserveCanvas.seq, window.cityserveCanvas.renders]")
            if args.screenshot:
                args.screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.screenshot))
            chromium = browser.version
            browser.close()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    loads.append(os.getloadavg()[0])
    serving = next((ln.strip() for ln in lines if ln.startswith("serving ")), "")
    versions = {
        k: importlib.metadata.version(k)
        for k in ("playwright", "starlette", "uvicorn", "tritonclient", "onnxruntime", "torch", "nvidia-pytriton")
    }
    phases = breakdown(timed)
    result = {
        "kind": "canvas-latency",
        "command": "python benchmarks/canvas_latency.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": datetime.date.today().isoformat(),
        "model": args.model,
        "serving": serving,
        "strokes": len(lat),
        "stroke_end_to_photo_ms": summary(lat),
        "phases_ms": phases,
        "triton_render_model_mean_ms": triton,
        "requests_sent": sent,
        "photos_shown": shown,
        "wall_s": round(wall, 1),
        "samples": [{k: (round(v, 1) if isinstance(v, float) else v) for k, v in flat(t).items()} for t in timed],
        "chromium": chromium,
        "versions": versions,
        "device": describe("cpu"),
        "load_average_1min": loads,
        "what_is_measured": "the page's pointerup handler -> the requestAnimationFrame callback of the frame "
        "that paints the new photo (after its <img>'s load event)",
    }
    folder = args.out / device_label("cpu")
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"{result['date']}-canvas-latency"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    s = result["stroke_end_to_photo_ms"]
    md = [
        "# Canvas latency: stroke end -> new photo on screen",
        "",
        f"`{result['command']}` · {result['date']} · {result['serving']} · Chromium {chromium} (headless) · "
        f"{result['device']['cpu']}, {result['device']['cpu_count']} CPUs · 1-min load average "
        f"{min(loads):.2f}-{max(loads):.2f} (a machine shared with other jobs: the browser, the canvas "
        "app, Triton and whatever else runs share these CPUs)",
        "",
        "| strokes | p50 ms | p90 ms | mean ms | min ms | max ms |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {result['strokes']} | {s['p50']} | {s['p90']} | {s['mean']} | {s['min']} | {s['max']} |",
        "",
        "Where the time goes (per stroke, as the page records it; server phases from the answer's Server-Timing):",
        "",
        "| phase | what | p50 ms | p90 ms | mean ms |",
        "| --- | --- | ---: | ---: | ---: |",
        *(f"| {name} | {PHASES[name]} | {v['p50']} | {v['p90']} | {v['mean']} |" for name, v in phases.items()),
        "",
        f"Triton's own statistics of the render model `{render_model}` over the timed strokes "
        f"({triton['requests']} requests, drag renders included), mean ms per request: queue {triton['queue']}, "
        f"compute input {triton['compute_input']}, infer {triton['compute_infer']}, "
        f"output {triton['compute_output']}.",
        "",
        f"Measured in the page: {result['what_is_measured']}. {sent} render requests were sent (drag renders "
        f"included) and {shown} photos shown; at most one request is in flight and at most one waits.",
    ]
    stem.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    print(f"\nwrote {stem}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

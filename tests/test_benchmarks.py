"""`benchmarks/run.py --quick` end to end: a real run (engines, Triton over gRPC, perf_analyzer where
installed), and a JSON that carries every figure the benchmark promises, with markdown and plots made
from it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cityserve.bench.devices import GPU_PEAKS_TFLOPS


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, repo_root):
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [sys.executable, str(repo_root / "benchmarks" / "run.py"), "--quick", "--out", str(out), "--threads", "2"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=repo_root,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jsons = list(out.rglob("*.json"))
    assert len(jsons) == 1, jsons
    return jsons[0], json.loads(jsons[0].read_text())


def test_run_has_device_versions_command_and_peaks(quick_run):
    path, doc = quick_run
    assert path.parent.name == doc["device_label"] and path.name.endswith("-quick.json")
    assert "benchmarks/run.py --quick" in doc["command"]
    assert doc["versions"]["torch"] and doc["versions"]["onnxruntime"]
    assert doc["device"]["cpu"] and doc["device"]["cpu_count"] >= 1
    assert doc["measured_peaks"]["fp32_matmul_tflops"] > 0
    for gpu in ("T4", "V100", "A10", "A100", "H100"):
        assert doc["datasheet_peaks_tflops"][gpu]["fp16"] > doc["datasheet_peaks_tflops"][gpu]["fp32"] > 0
    assert set(GPU_PEAKS_TFLOPS) <= set(doc["datasheet_peaks_tflops"])


def test_every_engine_row_has_every_figure(quick_run):
    _, doc = quick_run
    assert {m["kind"] for m in doc["models"]} == {"generator", "segmenter", "chain"}
    measured = 0
    for m in doc["models"]:
        assert m["flops_per_image"] > 0
        for name, e in m["engines"].items():
            if e["status"] != "ok":
                assert e["reason"], name  # never a silent gap
                continue
            for r in e["batches"]:
                lat = r["latency_ms"]
                assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
                assert r["throughput_ips"] > 0 and r["peak_memory_mb"] > 0 and r["memory_kind"] == "rss"
                assert r["achieved_tflops"] == pytest.approx(
                    m["flops_per_image"] * r["batch"] / (lat["mean"] / 1e3) / 1e12
                )
                assert r["fraction_of_peak"] > 0 and "TFLOP/s" in r["peak_reference"]
                measured += 1
        assert m["engines"]["onnxruntime"]["status"] == "ok", m["engines"]["onnxruntime"]
        # TensorRT cannot run here: the result says so instead of a number
        assert m["engines"]["tensorrt-fp16"]["status"] == "not measured"
        assert (
            "CUDA" in m["engines"]["tensorrt-fp16"]["reason"] or "TensorRT" in m["engines"]["tensorrt-fp16"]["reason"]
        )
    assert measured >= 9
    chain = next(m for m in doc["models"] if m["kind"] == "chain")
    parts = {m["kind"]: m["flops_per_image"] for m in doc["models"] if m["kind"] != "chain"}
    assert chain["flops_per_image"] == parts["generator"] + parts["segmenter"]  # photo2photo = both graphs


def test_triton_sweep_and_outside_engine_share(quick_run):
    _, doc = quick_run
    t = doc["triton"]
    assert t["status"] == "ok", t
    endpoints = {r["endpoint"] for r in t["sweep"]}
    assert endpoints == {"render", "label2photo"}
    for r in t["sweep"]:
        assert r["requests"] > 0 and not r["errors"], r
        assert r["throughput_ips"] > 0 and r["latency_ms"]["p50"] > 0
        assert r["engine_ms"] > 0 and r["outside_engine_share"] is not None and r["outside_engine_share"] < 1
        assert r["server_render_compute_ms"] is not None and r["server_render_compute_ms"] > 0
    from cityserve.bench.triton_bench import find_perf_analyzer

    pa = t["perf_analyzer"]
    if find_perf_analyzer() is None:
        assert pa["status"] == "not measured" and "perf_analyzer" in pa["reason"]
    else:  # `make test` installs it (make perf-analyzer): then it must really have measured
        assert pa["status"] == "ok", pa
        assert [r["concurrency"] for r in pa["rows"]] == [1, 2]
        assert all(r["throughput_ips"] > 0 and r["p99_ms"] >= r["p50_ms"] > 0 for r in pa["rows"])


def test_markdown_and_plots_come_from_the_json(quick_run):
    path, doc = quick_run
    md = path.with_suffix(".md").read_text()
    assert doc["command"] in md
    for m in doc["models"]:
        assert m["model"] in md
        p50 = m["engines"]["onnxruntime"]["batches"][0]["latency_ms"]["p50"]
        assert f"{p50:.1f}" in md
    assert "not measured" in md
    assert path.with_name(path.stem + "-latency.png").stat().st_size > 1000
    assert path.with_name(path.stem + "-triton.png").stat().st_size > 1000


def test_photo2photo_chain_feeds_a_larger_generator_nearest_resized_ids(tmp_path):
    """A 16x32 segmenter before a 32x64 generator (the shipped demo pair is 128x256 -> 256x512): the chain
    takes photos at the segmenter's size and renders the ids nearest-resized to the generator's, in torch
    and in onnxruntime alike; a different aspect ratio is refused."""
    import numpy as np
    import torch

    from cityserve.bench import models as M
    from cityserve.bench.engines import make_onnxruntime, make_torch_eager, torch_graph
    from cityserve.bench.runner import example_feeds
    from cityserve.serving.codec import resize_nearest

    seg = M.ModelSpec(
        "tiny-deeplab-16x32",
        "deeplabv3plus",
        "segmenter",
        dict(backbone="mobilenetv2", output_stride=16),
        "cityscapes",
        16,
        32,
        "test",
    ).card(tmp_path)
    gen = M.TINY_SPADE.card(tmp_path)
    chain = M.ChainCard(seg, gen)
    feeds = example_feeds(chain, 1)
    assert feeds["image"].shape == (1, 16, 32, 3)
    out = make_torch_eager(chain, "cpu")(feeds).numpy()
    assert out.shape == (1, 32, 64, 3)
    with torch.inference_mode():  # the same as segmenting, resizing the ids by hand, then rendering
        ids = torch_graph(seg)(torch.from_numpy(feeds["image"])).numpy()
        big = torch.from_numpy(resize_nearest(ids, 32, 64))
        expected = torch_graph(gen)(big, big.to(torch.int32), None).numpy()
    assert np.array_equal(out, expected)
    ort = np.asarray(make_onnxruntime(chain, "cpu")(feeds))
    assert ort.shape == out.shape and np.abs(ort.astype(int) - out.astype(int)).mean() < 1.0
    wide = M.ModelSpec(
        "tiny-deeplab-16x16",
        "deeplabv3plus",
        "segmenter",
        dict(backbone="mobilenetv2", output_stride=16),
        "cityscapes",
        16,
        16,
        "test",
    ).card(tmp_path)
    with pytest.raises(ValueError, match="aspect ratio"):
        M.ChainCard(wide, gen)


def test_closed_loop_issues_each_request_once_and_records_failures():
    from cityserve.bench.load import closed_loop

    seen, closed = [], []

    class Client:
        def close(self):
            closed.append(self)

    def call(client, i):
        assert isinstance(client, Client)
        seen.append(i)
        if i % 5 == 0:
            raise RuntimeError(f"request {i} refused")

    loop = closed_loop(call, concurrency=3, requests=20, per_thread=Client)
    assert sorted(seen) == list(range(20)) and len(closed) == 3
    assert len(loop.latencies_s) == 16 and sorted(loop.errors) == sorted(
        f"RuntimeError: request {i} refused" for i in (0, 5, 10, 15)
    )
    assert loop.wall_s >= max(loop.latencies_s)


def test_demo_rows_time_the_models_the_demo_serves():
    """The shipped folder also holds a layout generator and the depth-aware pair: the demo rows are still
    the default generator and segmenter."""
    from cityserve.bench.models import demo_cards

    assert {k: c.name for k, c in demo_cards().items()} == {"generator": "spade-demo", "segmenter": "segmenter-demo"}

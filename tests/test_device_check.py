"""benchmarks/device_check.sh: the prepared GPU benchmark, checked here by its dry run on the CPU.

The dry run goes through the same stages, engines, result files and index as the GPU run, with tiny
models; the engines that need CUDA must say so instead of giving a number.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "device_check.sh"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"},
    )


def test_dry_run_writes_the_stage_results_and_names_what_needs_a_gpu(tmp_path):
    r = _run("--dry-run", "--stages", "spade", "--runs", "1", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    (index_path,) = tmp_path.glob("*/*-device-check-dry-run.json")
    index = json.loads(index_path.read_text())
    assert index["kind"] == "device-check" and index["dry_run"] is True
    assert [(s["stage"], s["status"]) for s in index["stages"]] == [("spade", "ran")]
    doc = json.loads((index_path.parent / index["stages"][0]["result"]).read_text())
    assert (index_path.parent / index["stages"][0]["result"]).with_suffix(".md").exists()
    (model,) = doc["models"]
    engines = model["engines"]
    eager = engines["torch-eager-fp32"]
    assert eager["status"] == "ok" and [b["batch"] for b in eager["batches"]] == [1, 2]
    assert all(b["latency_ms"]["p50"] > 0 for b in eager["batches"])
    assert engines["torch-eager-fp32-channels-last"]["status"] == "ok"
    for cuda_only in ("torch-fp16-channels-last", "torch-cuda-graphs-fp16", "tensorrt-fp16"):
        assert engines[cuda_only]["status"] == "not measured", cuda_only
        assert "CUDA" in engines[cuda_only]["reason"], engines[cuda_only]
    assert "torch-compile-fp16" not in engines  # left out of the dry run, compiled only on the GPU


def test_without_a_gpu_it_refuses_with_exit_3_and_unknown_stages_are_named(tmp_path):
    if torch.cuda.is_available():
        return  # on a GPU machine the real run is what runs
    r = _run("--out", str(tmp_path))
    assert r.returncode == 3 and "no CUDA GPU" in r.stderr and "--dry-run" in r.stderr
    assert not list(tmp_path.iterdir())
    r = _run("--dry-run", "--stages", "spade,warp", "--out", str(tmp_path))
    assert r.returncode == 2 and "unknown stage(s) warp" in r.stderr

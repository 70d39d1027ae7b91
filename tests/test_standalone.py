"""Stand-alone facts: a missing optional extra is a one-line exit-3 error naming its pip install,
perf_analyzer's rows come back ordered by concurrency, nothing tracked points outside the repository,
and the package finds its data through importlib.resources."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cityserve.bench.triton_bench import parse_perf_analyzer_csv
from cityserve.cli import main
from cityserve.errors import EXIT_UNAVAILABLE, run_with_exit_codes
from cityserve.extras import EXTRAS, MissingExtraError, extra_for, require

PA_CSV = """\
Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency
2,17.5,30,200,900,20,95000,30,10,110000,130000,140000,150000
1,19.25,25,180,40,20,48000,30,10,51000,60000,62000,70000

Server Machine Metrics
,GPU Utilization
"""


def test_perf_analyzer_rows_are_ordered_by_concurrency_not_throughput():
    rows = parse_perf_analyzer_csv(PA_CSV)  # perf_analyzer wrote concurrency 2 first: it was slower
    assert [r["concurrency"] for r in rows] == [1, 2]
    assert rows[0] == {"concurrency": 1, "throughput_ips": 19.25, "p50_ms": 51.0, "p99_ms": 70.0}
    assert rows[1]["p99_ms"] == 150.0


def test_missing_extra_names_the_pip_install(monkeypatch, capsys, tmp_path, repo_root):
    monkeypatch.setitem(sys.modules, "tritonclient.grpc.model_config_pb2", None)  # as if not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'cityserve\[serve\]'"):
        require("serve", "tritonclient.grpc.model_config_pb2")
    card = repo_root / "models" / "demo" / "spade-demo.card.json"
    code = main(["repo", "build", "--target", "cpu", "--model", str(card), "--out", str(tmp_path / "repo")])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_UNAVAILABLE and err.count("\n") == 0, err
    assert err.startswith("error: the repository builder needs tritonclient") and "cityserve[serve]" in err
    assert not (tmp_path / "repo").exists()


def test_an_unrouted_optional_import_is_still_a_one_line_exit_3(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)

    def body():
        import tensorboard  # noqa: F401

    assert run_with_exit_codes(body) == EXIT_UNAVAILABLE
    assert capsys.readouterr().err.strip().endswith("pip install 'cityserve[train]'")
    assert extra_for("tritonclient.grpc") == "serve" and extra_for("numpy") is None
    with pytest.raises(ModuleNotFoundError):  # a core module missing is a bug, not an extra
        run_with_exit_codes(lambda: __import__("no_such_module_anywhere"))


def test_extras_here_match_pyproject(repo_root):
    import tomllib

    project = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert set(EXTRAS) <= set(extras) and {"all", "dev"} <= set(extras)
    assert "tritonclient" not in " ".join(project["dependencies"])  # serving stays out of the core
    assert any(d.startswith("numpy<2") for d in project["dependencies"])


def test_lock_pins_what_the_suite_runs_with(repo_root):
    import importlib.metadata as md

    lock = {}
    for line in (repo_root / "requirements-lock.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            lock[name.lower().replace("_", "-")] = version
    assert lock["torch"] == "2.13.0" and lock["numpy"].startswith("1.26.")
    for dist in ("torch", "numpy", "onnxruntime", "onnx", "nvidia-pytriton", "tritonclient"):
        assert md.version(dist).split("+")[0] == lock[dist], dist


def test_nothing_tracked_points_outside_the_repository(repo_root):
    files = subprocess.run(["git", "ls-files"], cwd=repo_root, capture_output=True, text=True).stdout.split()
    if not files:
        pytest.skip("not a git checkout")
    # the outside folder and the old design document, spelled so that this file does not name them itself
    outside = ("..", "shared")
    forbidden = ("/".join(outside), "DESIGN" + ".md")
    bad = []
    for f in files:
        path = repo_root / f
        if path.is_symlink() or not path.is_file() or path.suffix in (".pt", ".pth", ".png", ".pkl"):
            continue
        text = path.read_text(errors="replace")
        if any(word in text for word in forbidden):
            bad.append(f)
    assert not bad, bad


def test_package_data_is_found_without_repo_paths(repo_root):
    from cityserve.serving.defaults import DEMO_DIR, EXAMPLES_DIR
    from cityserve.serving.repo import python_models_dir

    assert (python_models_dir() / "render_onnxruntime_python" / "model.py").is_file()
    assert (DEMO_DIR / "spade-demo.card.json").is_file() and (EXAMPLES_DIR / "street_01.png").is_file()
    offenders = subprocess.run(
        ["git", "grep", "-n", "-e", "parents\\[2\\]", "--", "cityserve"], cwd=repo_root, capture_output=True, text=True
    ).stdout
    assert not offenders, offenders

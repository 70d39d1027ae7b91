"""Reliability and security pieces that need no running server: crash leftovers, the server command's
metrics and admin flags, the client's retry rules and replica choice, refused pickles, and the order of
``eval --inception``'s checks."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cityserve.errors import CheckpointError, ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]


def dead_process() -> tuple[int, float]:
    """(pid, start time) of a process that has exited."""
    import psutil

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    started = psutil.Process(proc.pid).create_time()
    proc.wait()
    return proc.pid, started


def fake_server_folder(root: Path, name: str, prefix: str, procs: list[tuple[int, float]]) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "tritonserver.log").write_text("log")
    record = {"shm_prefix": prefix, "uid": os.getuid(), "processes": [{"pid": p, "started": t} for p, t in procs]}
    (folder / "cityserve-owner.json").write_text(json.dumps(record))
    return folder


def test_leftovers_of_dead_servers_only_are_removed(tmp_path):
    import psutil

    from cityserve.serving.leftovers import clean_leftovers, new_shm_prefix, remove_regions

    shm, tmp = tmp_path / "shm", tmp_path / "tmp"
    shm.mkdir()
    tmp.mkdir()
    dead, alive = new_shm_prefix(), new_shm_prefix()
    for i in range(3):
        (shm / f"{dead}region{i}").write_bytes(b"\0" * 1000)
    (shm / f"{alive}region").write_bytes(b"\0" * 10)
    (shm / "triton_python_backend_shm_region_other").write_bytes(b"x")  # another program's: never touched
    (shm / "cityserve_unrecorded_x").write_bytes(b"x")  # a cityserve name no record claims: left alone
    gone = fake_server_folder(tmp, "cityserve-triton-dead", dead, [dead_process()])
    me = psutil.Process()
    kept = fake_server_folder(tmp, "cityserve-triton-alive", alive, [dead_process(), (me.pid, me.create_time())])
    reused = fake_server_folder(tmp, "cityserve-serve-reused", "", [(me.pid, me.create_time() - 100)])  # pid reused
    (tmp / "cityserve-triton-norecord").mkdir()  # an older cityserve's folder: no record, not ours to judge
    (tmp / "unrelated").mkdir()

    done = clean_leftovers(tmp, shm)
    assert (done.regions, done.bytes, done.folders) == (3, 3000, 2)
    assert "3 shared-memory region(s)" in done.describe()
    assert sorted(p.name for p in shm.iterdir()) == sorted(
        [f"{alive}region", "triton_python_backend_shm_region_other", "cityserve_unrecorded_x"]
    )
    assert not gone.exists() and not reused.exists() and kept.is_dir()
    assert (tmp / "cityserve-triton-norecord").is_dir() and (tmp / "unrelated").is_dir()
    assert not clean_leftovers(tmp, shm)  # nothing more to do
    assert remove_regions(alive, shm) == (1, 10) and remove_regions("triton_", shm) == (0, 0)


def test_server_command_restricts_admin_apis_and_sets_gpu_metrics(tmp_path, monkeypatch):
    """gpu targets get GPU metrics by default (`--gpu-metrics auto`), the cpu target does not; admin
    APIs are restricted unless --allow-admin-api; every server has its own shm region prefix."""
    from cityserve.cli import build_parser
    from cityserve.commands.serve import make_server

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "tritonserver"  # an NGC-style server on PATH; only its command line is built here
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    repo = tmp_path / "repo"
    repo.mkdir()

    def command(*flags: str, target: str) -> list[str]:
        args = build_parser().parse_args(["serve", "--repo", str(repo), *flags])
        server = make_server(args, repo, target)
        try:
            return server.command()
        finally:
            server.cleanup()

    def flag(cmd: list[str], name: str) -> str:
        return cmd[cmd.index(name) + 1]

    gpu = command(target="gpu-trt")
    assert gpu[0] == str(fake) and flag(gpu, "--allow-gpu-metrics") == "true"
    assert flag(command(target="gpu-onnx"), "--allow-gpu-metrics") == "true"
    assert flag(command("--gpu-metrics", "off", target="gpu-trt"), "--allow-gpu-metrics") == "false"
    cpu = command("--server-binary", "path", target="cpu")
    assert flag(cpu, "--allow-gpu-metrics") == "false"
    assert (
        flag(command("--server-binary", "path", "--gpu-metrics", "on", target="cpu"), "--allow-gpu-metrics") == "true"
    )
    for cmd in (gpu, cpu):
        for option in ("--grpc-restricted-protocol", "--http-restricted-api"):
            apis, header = flag(cmd, option).split(":", 1)
            assert set(apis.split(",")) == {"shared-memory", "model-repository", "trace", "logging"}
            assert header.startswith("cityserve-admin-key=") and len(header) > 30
        assert flag(cmd, "--backend-config").startswith("python,shm-region-prefix-name=cityserve_")
        assert flag(cmd, "--model-control-mode") == "none"
    assert flag(gpu, "--grpc-restricted-protocol") != flag(cpu, "--grpc-restricted-protocol")  # a key per start
    opened = command("--allow-admin-api", target="gpu-trt")
    assert "--grpc-restricted-protocol" not in opened and "--http-restricted-api" not in opened


def test_retry_rules_backoff_and_replica_choice():
    from cityserve.replicas import Backoff, ReplicaPool, parse_urls, retryable

    assert retryable("UNAVAILABLE", "failed to connect to all addresses")
    assert retryable("NOT_FOUND", "Request for unknown model: 'label2photo' has no available versions")
    assert retryable("CANCELLED", "CANCELLED")  # a stopping server cancelled it in flight
    assert not retryable("NOT_FOUND", "Request for unknown model: 'nope' is not found")
    assert not retryable("INVALID_ARGUMENT", "decode_png: PNG: not a PNG")
    b = Backoff(base=0.05, cap=1.0)
    delays = [[b.delay(a) for _ in range(200)] for a in (1, 3, 12)]
    assert all(0 <= d <= 0.05 for d in delays[0]) and all(0 <= d <= 0.2 for d in delays[1])
    assert all(0 <= d <= 1.0 for d in delays[2]) and max(delays[2]) > 0.5  # capped, and jittered
    assert len({round(d, 6) for d in delays[2]}) > 150

    assert parse_urls("a:1, b:2,a:1") == ["a:1", "b:2"]
    for bad in ("nohost", "h:0", "h:port", ""):
        with pytest.raises(ConfigError):
            parse_urls(bad)
    pool = ReplicaPool(["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"], health_interval=60)
    try:
        a, b_, c = pool.replicas
        assert {pool.acquire().url for _ in range(3)} == {a.url, b_.url, c.url}  # least outstanding spreads
        for r in pool.replicas:
            pool.release(r, True)
        first = pool.acquire()
        pool.release(first, False, "UNAVAILABLE")  # taken out ...
        assert not first.up and all(pool.acquire([first]) is not first for _ in range(6))
        for r in pool.replicas:
            r.outstanding = 0
        for _ in range(2):  # the two others go down too
            pool.release(pool.acquire(), False, "down")
        assert not pool.any_up() and pool.acquire() is first  # all down: the one down the longest
    finally:
        pool.close()


def test_refused_pickle_names_the_blocked_global(tmp_path):
    from cityserve.checkpoints import safe_load

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo should-never-run",))

    for name, write in (
        ("zip.pt", lambda p: torch.save({"w": torch.zeros(1), "x": Evil()}, p)),
        ("proto2.pkl", lambda p: p.write_bytes(pickle.dumps({"x": Evil()}, protocol=2))),
        ("proto5.pkl", lambda p: p.write_bytes(pickle.dumps({"x": Evil()}, protocol=5))),
    ):
        path = tmp_path / name
        write(path)
        with pytest.raises(CheckpointError) as e:
            safe_load(path)
        text = str(e.value)
        assert "posix.system" in text and "refused" in text and str(path) in text, text
        assert "weights_only=False" not in text and "will likely succeed" not in text and "\n" not in text


def test_eval_checks_the_inception_file_before_rendering(tmp_path, monkeypatch, capsys):
    """A generator whose weights are missing would fail at its first render; a bad --inception file
    must be named first."""
    from cityserve.cli import main

    card = tmp_path / "gen.card.json"
    card.write_text((REPO_ROOT / "models" / "demo" / "spade-demo.card.json").read_text())
    bad = tmp_path / "pt_inception.pth"
    bad.write_bytes(b"not weights" * 10)
    seg = REPO_ROOT / "models" / "demo" / "segmenter-demo.card.json"
    rc = main(["eval", "generator", str(card), "--segmenter", str(seg), "--seeds", "10000", "--inception", str(bad)])
    err = capsys.readouterr().err
    assert rc == 2 and str(bad) in err and err.count("\n") == 1, err


def test_fuzzed_png_and_jpeg_decoding_refuses_in_one_line():
    """A short hypothesis run (the reliability suite runs 20 000): random bytes and mutated PNG / JPEG
    files either decode to the declared shape or are refused with a one-line LabelError."""
    from cityserve.bench.fuzz_decode import fuzz_decoders

    result = fuzz_decoders(examples=400)
    assert result["examples"] == 400 and not result["findings"], result["findings"]
    assert result["decoded"] > 10 and result["refused"] > 300
    assert any("inflates past" in kind for kind in result["refusal_kinds"])  # the bomb check meets fuzz too

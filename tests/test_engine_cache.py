"""The GPU container's engine step (`cityserve repo engines`): which models need engines, the cache key,
reuse and rebuild, the served repository, and the refusal on a machine without TensorRT.

TensorRT cannot be installed here, so the tests of reuse and rebuild give ``prepare_engines`` a
stand-in builder that writes a small file where the plan goes and counts its calls; everything else
(the real gpu-trt repository of a tiny SPADE + segmenter, config parsing, keys, records, locks, the
symlinked served tree) is the code the container runs. The real TensorRT build is covered by
tests/test_tensorrt.py where TensorRT and a GPU exist.
"""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest
from _helpers_serving import tiny_segmenter_onnx, tiny_spade_card

from cityserve.cli import main
from cityserve.errors import ConfigError
from cityserve.serving.engine_cache import (
    RECORD,
    GpuTarget,
    prepare_engines,
    same_release,
    server_tensorrt_version,
    tensorrt_models,
)

T4 = GpuTarget("Tesla T4", "7.5", "10.4.0")
A100 = GpuTarget("NVIDIA A100-SXM4-80GB", "8.0", "10.4.0")


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    """A gpu-trt repository (render + segment as tensorrt_plan models) and a gpu-onnx one (none)."""
    from cityserve.export.onnx_export import export_onnx
    from cityserve.serving.repo import build_repository

    root = tmp_path_factory.mktemp("engine-cache")
    render_onnx = export_onnx(tiny_spade_card(root / "gen"), root / "gen" / "exported")
    segment_onnx = tiny_segmenter_onnx(root / "seg")
    sources = [render_onnx, segment_onnx]
    trt = build_repository(sources, "gpu-trt", root / "repo-trt", overrides={"max_batch_size": 8}).path
    onnx = build_repository(sources, "gpu-onnx", root / "repo-onnx").path
    return {"trt": trt, "onnx": onnx, "root": root}


class CountingBuilder:
    """Stands in for TensorRT (not installable here): writes a file named after what it was asked."""

    def __init__(self):
        self.calls = []

    def __call__(self, spec, plan: Path, timing_cache: Path) -> None:
        self.calls.append((spec.model, spec.onnx_sha256, timing_cache.name))
        plan.write_bytes(f"plan of {spec.model} {spec.onnx_sha256}".encode())


def test_tensorrt_models_are_read_from_the_configs_with_the_builders_profile(repos):
    specs = {s.model: s for s in tensorrt_models(repos["trt"])}
    assert set(specs) == {"render", "segment"}
    script = (repos["trt"] / "build_engines.sh").read_text()
    for name, spec in specs.items():
        assert spec.version == "1" and spec.onnx == repos["trt"] / name / "1" / "model.onnx"
        # the same batch profile the repository builder wrote for trtexec
        line = next(ln for ln in script.splitlines() if f"/{name}/1/model.onnx" in ln)
        batches = {k: int(re.search(rf"--{k}Shapes=\w+:(\d+)x", line).group(1)) for k in ("min", "opt", "max")}
        assert (spec.profile.min, spec.profile.opt, spec.profile.max) == (
            batches["min"],
            batches["opt"],
            batches["max"],
        )
        assert spec.profile.max == 8
    assert tensorrt_models(repos["onnx"]) == []  # onnxruntime_onnx models need no engine


def test_engines_are_reused_while_gpu_tensorrt_and_graph_match(repos, tmp_path):
    cache, build = tmp_path / "engines", CountingBuilder()
    first = prepare_engines(repos["trt"], cache, tmp_path / "served", target=T4, build=build, log=lambda m: None)
    assert sorted(c[0] for c in build.calls) == ["render", "segment"] and not any(r.reused for r in first)
    for r in first:  # the record beside each plan says what it was built for
        record = json.loads((r.plan.parent / RECORD).read_text())
        assert (record["gpu"], record["compute_capability"], record["tensorrt"]) == ("Tesla T4", "7.5", "10.4.0")
        assert record["onnx_sha256"] == r.spec.onnx_sha256 and record["profile"]["max_batch"] == 8
    # a restart on the same GPU: nothing is built
    again = prepare_engines(repos["trt"], cache, tmp_path / "served", target=T4, build=build, log=lambda m: None)
    assert len(build.calls) == 2 and all(r.reused for r in again)
    assert [r.plan for r in again] == [r.plan for r in first]
    # another GPU, another TensorRT: new engines beside the old ones, which stay for their GPU
    prepare_engines(repos["trt"], cache, tmp_path / "s2", target=A100, build=build, log=lambda m: None)
    newer = GpuTarget("Tesla T4", "7.5", "10.8.0.43")
    prepare_engines(repos["trt"], cache, tmp_path / "s3", target=newer, build=build, log=lambda m: None)
    assert len(build.calls) == 6
    assert len(list((cache / "render").glob("*/model.plan"))) == 3
    assert {c[2] for c in build.calls} == {f"timing-{t.slug}.cache" for t in (T4, A100, newer)}


def test_a_damaged_or_foreign_engine_is_built_again(repos, tmp_path):
    cache, build = tmp_path / "engines", CountingBuilder()
    quiet = dict(target=T4, build=build, log=lambda m: None)
    results = {r.spec.model: r for r in prepare_engines(repos["trt"], cache, tmp_path / "served", **quiet)}
    # a truncated plan (its sha256 no longer matches the record) is rebuilt
    results["render"].plan.write_bytes(b"trunc")
    redo = {r.spec.model: r for r in prepare_engines(repos["trt"], cache, tmp_path / "served", **quiet)}
    assert not redo["render"].reused and redo["segment"].reused and len(build.calls) == 3
    # a record saying another GPU built it (copied in by hand) is not trusted either
    record_path = redo["segment"].plan.parent / RECORD
    record = json.loads(record_path.read_text())
    record_path.write_text(json.dumps({**record, "gpu": "Tesla V100-SXM2-16GB", "compute_capability": "7.0"}))
    redo = {r.spec.model: r for r in prepare_engines(repos["trt"], cache, tmp_path / "served", **quiet)}
    assert not redo["segment"].reused and len(build.calls) == 4


def test_served_repository_links_the_source_and_the_cache_and_leaves_both_untouched(repos, tmp_path):
    src, cache, served = repos["trt"], tmp_path / "engines", tmp_path / "served"
    before = sorted(str(p.relative_to(src)) for p in src.rglob("*"))
    for p in src.rglob("*"):  # a read-only repository, as a Kubernetes volume mounted read-only
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        results = prepare_engines(src, cache, served, target=T4, build=CountingBuilder(), log=lambda m: None)
    finally:
        for p in [src, *src.rglob("*")]:
            p.chmod(p.stat().st_mode | stat.S_IWUSR)
    assert sorted(str(p.relative_to(src)) for p in src.rglob("*")) == before  # no plan written into it
    for r in results:
        link = served / r.spec.model / "1" / "model.plan"
        assert link.is_symlink() and link.resolve() == r.plan.resolve()
    for p in src.rglob("*"):
        if p.is_file():
            mirrored = served / p.relative_to(src)
            assert mirrored.is_symlink() and mirrored.resolve() == p.resolve()
            assert mirrored.read_bytes() == p.read_bytes()
    # writing it again replaces the previous served tree; a folder it did not write is refused
    prepare_engines(src, cache, served, target=T4, build=CountingBuilder(), log=lambda m: None)
    other = tmp_path / "someone-elses"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.raises(ConfigError, match="not a served repository"):
        prepare_engines(src, cache, other, target=T4, build=CountingBuilder(), log=lambda m: None)
    assert (other / "keep.txt").read_text() == "x"
    with pytest.raises(ConfigError, match="outside the repository"):
        prepare_engines(src, cache, src / "served", target=T4, build=CountingBuilder(), log=lambda m: None)


def test_the_command_without_tensorrt_exits_3_and_a_repository_without_engines_passes(repos, tmp_path, capsys):
    from cityserve.gpu import tensorrt_available

    if tensorrt_available():
        pytest.skip("TensorRT and a GPU are here: the command would build real engines")
    code = main(["repo", "engines", str(repos["trt"]), "--cache", str(tmp_path / "e"), "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err.strip()
    assert code == 3 and len(err.splitlines()) == 1 and err.startswith("error: ") and "TensorRT" in err
    assert not (tmp_path / "s").exists()
    # a gpu-onnx (or cpu) repository needs no GPU: it is mirrored as it is
    assert (
        main(["repo", "engines", str(repos["onnx"]), "--cache", str(tmp_path / "e"), "--out", str(tmp_path / "s")]) == 0
    )
    assert "no TensorRT models" in capsys.readouterr().out
    assert (tmp_path / "s" / "render" / "config.pbtxt").read_text() == (
        repos["onnx"] / "render" / "config.pbtxt"
    ).read_text()
    # --list works anywhere and names each engine with its profile
    assert main(["repo", "engines", str(repos["trt"]), "--list"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["model"] for r in rows} == {"render", "segment"} and all(r["profile"]["max_batch"] == 8 for r in rows)
    # usage errors are one line, exit 2
    assert main(["repo", "engines", str(repos["trt"])]) == 2
    assert "--cache and --out" in capsys.readouterr().err
    assert main(["repo", "engines", str(tmp_path / "missing"), "--list"]) == 2


def test_tensorrt_releases_compare_without_the_build_number():
    assert same_release("10.4.0", "10.4.0.26") and same_release("10.8.0.43", "10.8.0.43")
    assert not same_release("10.4.0", "10.5.0.18") and not same_release("10.4.0.26", "10.4.1")
    assert server_tensorrt_version() is None or re.fullmatch(r"10\.\d+\.\d+", server_tensorrt_version())

"""AOTInductor packages: compile once, load in a fresh process, refuse what this CPU / torch can't run,
serve through the Triton cpu target.

The model is the official-format SPADE fixture (``cityscapes_ngf2``: O(1)-scale random weights,
non-trivial batch-norm statistics) imported at 32x64, so BF16 errors show as they would on a trained
model; a default-initialised SPADE saturates tanh almost everywhere and says nothing about precision.
ONE compile per session (module fixture, ~60-140 s on 2 busy cores): every test reuses that package.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cityserve.bench.devices import cpu_flags
from cityserve.card_sections import ServingOptions
from cityserve.cards import load_card
from cityserve.errors import CheckpointError, ConfigError, UnavailableError

pytestmark = pytest.mark.slow
REPO_ROOT = Path(__file__).resolve().parents[1]
H, W = 32, 64
BUDGET_MAX, BUDGET_MEAN = 8, 1.0


def scenes(n: int, seed: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic Cityscapes street scenes: labels uint8 [n,1,H,W], instances int32 [n,1,H,W]."""
    from cityserve.data.synthetic import generate_scene

    ss = [generate_scene(seed + i, H, W) for i in range(n)]
    return (
        np.stack([s.labels for s in ss])[:, None].astype(np.uint8),
        np.stack([s.instances for s in ss])[:, None].astype(np.int32),
    )


def torch_render(card, labels, instances) -> np.ndarray:
    from cityserve.engines.base import Renderer

    return Renderer(card, engine="torch").render(labels, instances)


def assert_within_budget(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape and got.dtype == np.uint8
    d = np.abs(got.astype(np.int16) - want.astype(np.int16))
    assert d.max() <= BUDGET_MAX and d.mean() <= BUDGET_MEAN, f"max {d.max()} levels, mean {d.mean():.3f}"


@pytest.fixture(scope="module")
def gen_card(tmp_path_factory, fixtures_dir):
    from cityserve.importing.spade import import_spade

    out = tmp_path_factory.mktemp("aot-gen")
    path = import_spade(
        fixtures_dir / "spade" / "cityscapes_ngf2_netG.pth",
        "cityscapes",
        (H, W),
        out,
        upsampling="normal",
        name="fx-spade",
        log=lambda m: None,
    )
    return load_card(path)


@pytest.fixture(scope="module")
def aot_card(gen_card):
    """The one compile of the session, into the engine's cache beside the card (``aot-<dtype>/``)."""
    from cityserve.export.aot import aot_card_for

    return aot_card_for(gen_card)


@pytest.fixture
def aot_copy(aot_card, tmp_path):
    """A copy of the package directory to tamper with."""
    dest = tmp_path / "pkg"
    shutil.copytree(aot_card.directory, dest)
    return dest / aot_card.path.name


def edit_card(path: Path, **changes) -> None:
    d = json.loads(path.read_text())
    d["artifacts"]["aot"].update(changes)
    path.write_text(json.dumps(d))


def missing_flag() -> str:
    flags = cpu_flags()
    return next(f for f in ("amx_bf16", "amx_tile", "avx512_fp16", "avx10_2", "sve2") if f not in flags)


# ---- precision policy (no compile) ------------------------------------------------------------------


def test_precision_policy_keeps_output_layers_fp32_and_meets_budget(gen_card):
    from cityserve.export.aot import AOTRender, LowPrecision, default_fp32_layers
    from cityserve.models.render import render_graph_from_card

    graph = render_graph_from_card(gen_card)
    keep = default_fp32_layers(gen_card, graph.generator)
    assert keep == ["conv_img", "up_3.conv_0", "up_3.conv_1", "up_3.conv_s"]
    module = AOTRender(graph, torch.bfloat16, keep).eval()
    gen = module.net.generator
    assert isinstance(gen.conv_img, torch.nn.Conv2d) and gen.conv_img.weight.dtype == torch.float32
    assert isinstance(gen.up_2.conv_0, LowPrecision) and gen.up_2.conv_0.inner.weight.dtype == torch.bfloat16
    assert isinstance(gen.head_0.norm_0.mlp_gamma, LowPrecision)
    assert gen.head_0.norm_0.param_free_norm.running_var.dtype == torch.float32  # norms stay FP32
    labels, inst = scenes(2)
    with torch.inference_mode():
        got = module(torch.from_numpy(labels), torch.from_numpy(inst)).numpy()
    assert_within_budget(got, torch_render(gen_card, labels, inst))
    with pytest.raises(ConfigError, match="up_9.conv_0"):
        AOTRender(render_graph_from_card(gen_card), torch.bfloat16, ["up_9.conv_0"])


# ---- the compiled package ---------------------------------------------------------------------------


def test_card_records_what_the_package_needs(aot_card, gen_card):
    from cityserve.cards import sha256_file
    from cityserve.export.aot import default_dtype

    aot = aot_card.artifacts["aot"].to_dict()
    assert aot["torch"] == torch.__version__
    assert aot["dtype"] == default_dtype()
    assert set(aot["cpu_flags_required"]) <= cpu_flags() and aot["cpu_flags_required"]
    if aot["dtype"] == "bf16":
        assert "avx512_bf16" in aot["cpu_flags_required"] or "amx_bf16" in aot["cpu_flags_required"]
        assert aot["layers_fp32"][0] == "conv_img"
    assert aot["inputs"] == ["labels", "instances"]
    assert sha256_file(aot_card.directory / aot["file"]) == aot["sha256"]
    acc = aot["accuracy"]  # measured at compile time against the FP32 torch model
    assert acc["within_budget"] and acc["max_levels"] <= BUDGET_MAX and acc["mean_levels"] <= BUDGET_MEAN
    assert aot_card.sha256 == gen_card.sha256


def test_round_trip_in_a_fresh_process_without_recompiling(aot_card, gen_card, tmp_path):
    """`cityserve render --engine aot` with the package's card, in a new interpreter: it loads the
    package (no compile: the package directory is untouched; no wall-time threshold, which a busy
    machine would break) and renders within the error budget."""
    import cv2

    labels, _ = scenes(1, seed=7)
    cv2.imwrite(str(tmp_path / "labels.png"), labels[0, 0])
    before = {p.name: p.stat().st_mtime_ns for p in aot_card.directory.iterdir()}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "cityserve",
            "render",
            str(tmp_path / "labels.png"),
            "--model",
            str(aot_card.path),
            "--engine",
            "aot",
            "--out",
            str(tmp_path / "photo.png"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert res.returncode == 0, res.stderr
    assert {p.name: p.stat().st_mtime_ns for p in aot_card.directory.iterdir()} == before
    photo = cv2.cvtColor(cv2.imread(str(tmp_path / "photo.png")), cv2.COLOR_BGR2RGB)[None]
    # no --instances: the renderer uses the class map as instances (edges at class boundaries)
    assert_within_budget(photo, torch_render(gen_card, labels, labels.astype(np.int32)))


def test_renderer_engine_aot_uses_the_cached_package(aot_card, gen_card):
    from cityserve.engines.base import Renderer

    r = Renderer(gen_card, engine="aot")  # the generator card: finds the package beside it
    assert r.engine.card.path == aot_card.path
    labels, inst = scenes(3, seed=20)  # batch 3: the batch dimension is dynamic
    got = r.render(labels, inst)
    assert got.shape == (3, H, W, 3)
    assert_within_budget(got, torch_render(gen_card, labels, inst))
    one = r.render(labels[1], inst[1])  # batch 1 computes the same image
    assert np.abs(one[0].astype(int) - got[1].astype(int)).max() <= 1


def test_refuses_a_cpu_flag_this_machine_lacks(aot_copy, tmp_path):
    from cityserve.export.aot import load_aot

    flag = missing_flag()
    edit_card(aot_copy, cpu_flags_required=["avx2", flag])
    with pytest.raises(UnavailableError, match=flag) as e:
        load_aot(load_card(aot_copy))
    assert "\n" not in str(e.value) and "cityserve export aot" in str(e.value)
    import cv2

    cv2.imwrite(str(tmp_path / "l.png"), np.full((H, W), 7, np.uint8))
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "cityserve",
            "render",
            str(tmp_path / "l.png"),
            "--model",
            str(aot_copy),
            "--engine",
            "aot",
            "--out",
            str(tmp_path / "p.png"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
    )
    assert res.returncode == 3, res.stderr
    assert flag in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "p.png").exists()


def test_refuses_other_torch_and_altered_package(aot_copy):
    from cityserve.export.aot import load_aot

    pkg = aot_copy.parent / load_card(aot_copy).artifacts["aot"].file
    edit_card(aot_copy, torch="2.0.0")
    with pytest.raises(UnavailableError, match="torch 2.0.0"):
        load_aot(load_card(aot_copy))
    edit_card(aot_copy, torch=torch.__version__)
    with open(pkg, "ab") as f:
        f.write(b"\0")
    with pytest.raises(CheckpointError, match="sha256"):
        load_aot(load_card(aot_copy))
    pkg.unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_aot(load_card(aot_copy))


def test_export_cli_refuses_segmenters_and_bad_layers(gen_card, tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "cityserve", "export", "aot", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert res.returncode == 0 and "--dtype" in res.stdout and "examples" in res.stdout
    from cityserve.export.aot import compile_aot

    with pytest.raises(ConfigError, match="--dtype"):
        compile_aot(gen_card, tmp_path, "fp16")
    with pytest.raises(ConfigError, match="not a submodule"):
        compile_aot(gen_card, tmp_path, "fp32", layers_fp32=["nope"])


# ---- Triton cpu target ------------------------------------------------------------------------------


def test_auto_engine_choice(gen_card, tmp_path):
    from cityserve.bench.devices import cpu_supports_bf16
    from cityserve.serving.card_models import cpu_render_engine
    from cityserve.serving.repo import GraphSource, ServingOptions

    src = GraphSource(gen_card, tmp_path / "x.onnx", [], [])
    from cityserve.serving.card_models import openvino_installed

    auto = ("openvino" if openvino_installed() else "aot") if cpu_supports_bf16() else "onnxruntime"
    assert cpu_render_engine(src, ServingOptions()) == auto
    assert cpu_render_engine(src, ServingOptions(cpu_engine="onnxruntime")) == "onnxruntime"
    src.from_onnx = True  # an exported .onnx is served as that graph
    assert cpu_render_engine(src, ServingOptions()) == "onnxruntime"
    with pytest.raises(ConfigError, match="cpu_engine"):
        ServingOptions(cpu_engine="tensorrt")


@pytest.mark.triton
def test_cpu_target_serves_through_the_package(aot_card, gen_card, tmp_path):
    from cityserve.client import CityserveClient
    from cityserve.serving.repo import build_repository, parse_config
    from cityserve.serving.server import TritonServer

    built = build_repository(
        [gen_card],
        "cpu",
        tmp_path / "repo",
        overrides={"cpu_engine": "aot", "intra_op_threads": 1, "max_batch_size": 4},
    )
    assert built.models["render"]["engine"] == "aot"
    assert built.models["render"]["python_model"] == "render_aot_python"
    version = built.path / "render" / "1"
    assert (version / "render.pt2").read_bytes() == (aot_card.directory / "render.pt2").read_bytes()
    assert not (version / "model.onnx").exists()
    cfg = parse_config((built.path / "render" / "config.pbtxt").read_text())
    assert cfg.backend == "python" and [i.name for i in cfg.input] == ["labels", "instances"]

    labels, inst = scenes(2, seed=40)
    from cityserve.engines.base import Renderer

    local = Renderer(gen_card, engine="aot")
    want = local.render(labels, inst)
    with TritonServer(built.path) as server, CityserveClient(server.grpc_url, timeout=120) as client:
        got = client.render(labels, instances=inst)  # raw ids -> the render model
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
        assert_within_budget(got, torch_render(gen_card, labels, inst))
        from _helpers_serving import png_bytes

        photo = client.render(png_bytes(labels[0, 0]), output="array")  # label2photo ensemble, PNG in
        assert photo.shape == (1, H, W, 3)
        assert_within_budget(photo, torch_render(gen_card, labels[:1], labels[:1].astype(np.int32)))


def test_packages_load_only_where_they_were_built_unless_trusted(aot_card, aot_copy, gen_card, tmp_path, capsys):
    """A package is native code: a copy of one (as a downloaded card would bring) is refused by the
    engine, by `cityserve render --engine aot` and by the repository builder, unless trusted."""
    from cityserve.cli import main
    from cityserve.export.aot import aot_card_for, load_aot
    from cityserve.serving.repo import build_repository

    assert load_aot(aot_card) is not None  # compiled into its folder here: loads
    copy = load_card(aot_copy)
    with pytest.raises(CheckpointError, match="not compiled into that folder on this machine") as e:
        load_aot(copy)
    assert "\n" not in str(e.value) and "--trust" in str(e.value)
    with pytest.raises(CheckpointError, match="native code"):
        aot_card_for(copy)
    labels, inst = scenes(1, seed=60)
    trusted = load_aot(copy, trust=True)
    assert (
        np.abs(
            trusted({"labels": labels, "instances": inst}).astype(int)
            - load_aot(aot_card)({"labels": labels, "instances": inst}).astype(int)
        ).max()
        == 0
    )

    import cv2

    cv2.imwrite(str(tmp_path / "l.png"), labels[0, 0])
    args = ["render", str(tmp_path / "l.png"), "--model", str(aot_copy), "--engine", "aot", "--out"]
    assert main([*args, str(tmp_path / "refused.png")]) == 2
    err = capsys.readouterr().err
    assert "native code" in err and err.count("\n") == 1 and not (tmp_path / "refused.png").exists()
    assert main([*args, str(tmp_path / "trusted.png"), "--trust"]) == 0 and (tmp_path / "trusted.png").is_file()

    # the package's card names its source card (the weights) beside its folder: copy that as well
    source = Path(copy.source_card) if Path(copy.source_card).is_absolute() else copy.directory / copy.source_card
    if not source.is_file():
        shutil.copy(gen_card.path, source)
        shutil.copy(gen_card.weights_path, source.parent / Path(gen_card.weights).name)
    with pytest.raises(CheckpointError, match="native code"):
        build_repository([copy], "cpu", tmp_path / "r1", overrides={"cpu_engine": "aot"})
    built = build_repository([copy], "cpu", tmp_path / "r2", overrides={"cpu_engine": "aot", "trust_aot": True})
    assert built.models["render"]["engine"] == "aot"
    copy.serving = ServingOptions(trust_aot=True)  # a card cannot vouch for itself
    with pytest.raises(ConfigError, match="trust_aot is not a card option"):
        build_repository([copy], "cpu", tmp_path / "r3", overrides={"cpu_engine": "aot"})

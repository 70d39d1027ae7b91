"""The OpenVINO engine: FP32 matches onnxruntime on the same exported graphs, BF16 stays within the
accuracy budget on the shipped demo generator, the CLI runs it (and says which extra is missing when
openvino is not installed), the cpu-target repository serves through it in a real tritonserver, and
the openvino target's configs are Triton OpenVINO-backend configs checked against the graph.

Tiny models (``_helpers_serving``: SPADE ngf 2 at 64x128, a two-conv segmenter) except the BF16 budget
test, which needs the trained demo generator (256x512, ngf 16; about a second to compile and run).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _helpers_serving import H, W, block_labels, png_bytes, tiny_segmenter_onnx, tiny_spade_card

pytest.importorskip("openvino", reason="openvino is not installed (pip install 'cityserve[openvino]')")

from cityserve.bench.engines import accuracy_vs_fp32
from cityserve.cards import load_card
from cityserve.engines.onnxruntime_engine import OnnxRuntimeEngine
from cityserve.engines.openvino_engine import OpenVINOEngine, openvino, supports_bf16
from cityserve.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "models" / "demo" / "spade-demo.card.json"
BF16_HERE = supports_bf16(openvino().Core())


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from cityserve.export.onnx_export import export_onnx

    root = tmp_path_factory.mktemp("openvino-models")
    card = tiny_spade_card(root / "gen", max_batch_size=4)
    render_onnx = export_onnx(card, root / "gen" / "exported")
    segment_onnx = tiny_segmenter_onnx(root / "seg")
    return {
        "card": card,
        "render_onnx": render_onnx,
        "render_card": load_card(render_onnx.with_name("render.card.json")),
        "segment_onnx": segment_onnx,
        "segment_card": load_card(segment_onnx.with_name("segment.card.json")),
        "root": root,
    }


def scenes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    labels = np.stack([block_labels(seed + i) for i in range(n)])[:, None]
    return labels, labels.astype(np.int32)


def test_fp32_matches_onnxruntime_on_generator_and_segmenter(models):
    labels, inst = scenes(3, seed=1)
    feeds = {"labels": labels, "instances": inst}
    ov = OpenVINOEngine(models["render_card"], precision="fp32")
    assert ov.precision == "fp32" and ov.input_names == ["labels", "instances"]
    ort = OnnxRuntimeEngine(models["render_card"])
    got, want = ov.run(feeds), ort.run(feeds)
    assert got.shape == (3, H, W, 3) and got.dtype == np.uint8
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1  # rounding of tanh at a .5 boundary at most
    assert got.std() > 1  # an image, not a constant

    photos = np.random.default_rng(2).integers(0, 256, (2, H, W, 3), dtype=np.uint8)
    seg_ov = OpenVINOEngine(models["segment_card"], precision="fp32").run({"image": photos})
    seg_ort = OnnxRuntimeEngine(models["segment_card"]).run({"image": photos})
    assert seg_ov.shape == (2, 1, H, W) and seg_ov.dtype == np.uint8
    assert len(np.unique(seg_ort)) > 1
    assert np.mean(seg_ov != seg_ort) < 1e-3  # argmax ties at most


def test_renderer_runs_openvino_and_validates_input(models):
    from cityserve.engines.base import Renderer
    from cityserve.errors import LabelError

    r = Renderer(models["card"], engine="openvino", precision="fp32")
    labels, inst = scenes(1, seed=5)
    torch_out = Renderer(models["card"], engine="torch").render(labels, inst)
    assert np.abs(r.render(labels, inst).astype(int) - torch_out.astype(int)).max() <= 1
    with pytest.raises(LabelError, match="model renders"):
        r.render(np.zeros((32, 32), np.uint8))


@pytest.mark.skipif(not BF16_HERE, reason="OpenVINO lists no native BF16 on this CPU (no AVX-512 BF16 / AMX)")
def test_bf16_within_budget_on_the_demo_generator():
    card = load_card(DEMO)
    bf16 = OpenVINOEngine(card, precision="auto")
    assert bf16.precision == "bf16"  # auto = BF16 where OpenVINO's device lists it
    acc = accuracy_vs_fp32(card, bf16.run)  # vs the FP32 torch model, scene-like label maps
    assert acc["max_levels"] <= 8 and acc["mean_levels"] <= 1.0, acc
    assert acc["max_levels"] > 0  # BF16 really ran (FP32 would match to <= 1 level everywhere)
    fp32 = accuracy_vs_fp32(card, OpenVINOEngine(card, precision="fp32").run)
    assert fp32["max_levels"] <= 1 and fp32["mean_levels"] < 0.01, fp32


def test_bad_options_are_one_line_errors(models):
    with pytest.raises(ConfigError, match="precision must be one of auto, fp32, bf16"):
        OpenVINOEngine(models["render_card"], precision="fp16")
    with pytest.raises(ConfigError, match="runs on CPU"):
        OpenVINOEngine(models["render_card"], device="cuda")
    with pytest.raises(ConfigError, match="engine inputs missing: instances"):
        OpenVINOEngine(models["render_card"], precision="fp32").run({"labels": scenes(1, 0)[0]})


def test_cli_render_writes_the_openvino_photo(models, tmp_path, capsys):
    from cityserve.cli import main
    from cityserve.labels import read_photo

    label_png = tmp_path / "labels.png"
    label_png.write_bytes(png_bytes(block_labels(7)))
    out = tmp_path / "photo.png"
    args = ["render", str(label_png), "--model", str(models["card"].path), "--engine", "openvino"]
    assert main([*args, "--precision", "fp32", "--out", str(out)]) == 0
    assert "openvino" in capsys.readouterr().out
    photo = read_photo(out.read_bytes(), "photo")
    want = OnnxRuntimeEngine(models["card"]).run(
        {"labels": block_labels(7)[None, None], "instances": block_labels(7)[None, None].astype(np.int32)}
    )[0]
    assert np.abs(photo.astype(int) - want.astype(int)).max() <= 1
    assert (
        main(
            [
                "render",
                str(label_png),
                "--model",
                str(models["card"].path),
                "--engine",
                "torch",
                "--precision",
                "bf16",
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "--precision bf16 applies to --engine openvino or aot" in capsys.readouterr().err


def test_missing_openvino_is_exit_3_naming_the_extra(models, tmp_path):
    """A real interpreter where ``import openvino`` fails (a shadowing package that raises ImportError)."""
    shadow = tmp_path / "shadow" / "openvino"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('no openvino here', name='openvino')\n")
    label_png = tmp_path / "labels.png"
    label_png.write_bytes(png_bytes(block_labels(3)))
    env = {"PYTHONPATH": str(shadow.parent), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "cityserve", "render", str(label_png), "--model", str(models["card"].path)]
    p = subprocess.run(
        [*cmd, "--engine", "openvino", "--out", str(tmp_path / "x.png")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert p.returncode == 3, p.stderr
    lines = p.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "pip install 'cityserve[openvino]'" in lines[-1], p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.triton
@pytest.mark.timeout(240)
def test_cpu_target_serves_render_and_segment_through_openvino(models):
    from cityserve.client import CityserveClient
    from cityserve.serving.repo import build_repository, parse_config
    from cityserve.serving.server import TritonServer

    built = build_repository(
        [models["card"], models["segment_onnx"]],
        "cpu",
        models["root"] / "repo-ov",
        overrides={"cpu_engine": "openvino", "cpu_precision": "fp32", "intra_op_threads": 1, "max_batch_size": 4},
    )
    for name in ("render", "segment"):
        assert built.models[name]["engine"] == "openvino"
        assert built.models[name]["python_model"] == "render_openvino_python"
        cfg = parse_config((built.path / name / "config.pbtxt").read_text())
        assert cfg.backend == "python" and cfg.parameters["precision"].string_value == "fp32"
        assert (built.path / name / "1" / "model.onnx").is_file()

    labels, inst = scenes(2, seed=40)
    want = OnnxRuntimeEngine(models["card"]).run({"labels": labels, "instances": inst})
    photos = np.random.default_rng(3).integers(0, 256, (2, H, W, 3), dtype=np.uint8)
    want_ids = OnnxRuntimeEngine(models["segment_card"]).run({"image": photos})
    with TritonServer(built.path) as server, CityserveClient(server.grpc_url, timeout=120) as client:
        got = client.render(labels, instances=inst)  # raw ids -> the render model (OpenVINO inside)
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
        photo = client.render(png_bytes(labels[0, 0]), output="array")  # the label2photo ensemble
        assert photo.shape == (1, H, W, 3)
        assert np.abs(photo.astype(int) - want[:1].astype(int)).max() <= 1
        ids = client.infer("segment", {"image": photos})["labels"]
        assert np.mean(ids != want_ids) < 1e-3
        bad = labels.copy()
        bad[0, 0, 0, 0] = 200  # out of range: fails only this request, the server keeps serving
        with pytest.raises(Exception, match="200"):
            client.render(bad, instances=inst)
        assert np.abs(client.render(labels, instances=inst).astype(int) - want.astype(int)).max() <= 1


def test_openvino_target_configs_are_backend_configs(models, tmp_path):
    from tritonclient.grpc import model_config_pb2 as mc

    from cityserve.serving.repo import build_repository, parse_config

    built = build_repository(
        [models["render_onnx"], models["segment_onnx"]], "openvino", tmp_path / "r", overrides={"cpu_precision": "bf16"}
    )
    for name in ("render", "segment"):
        cfg = parse_config((built.path / name / "config.pbtxt").read_text())
        assert cfg.backend == "openvino" and cfg.default_model_filename == "model.onnx"
        assert [g.kind for g in cfg.instance_group] == [mc.ModelInstanceGroup.KIND_CPU]
        assert cfg.parameters["HINT_BF16"].string_value == "YES"
        assert cfg.parameters["PERFORMANCE_HINT"].string_value == "LATENCY"
        assert (built.path / name / "1" / "model.onnx").is_file()
    assert (built.path / "label2photo" / "config.pbtxt").is_file()
    with pytest.raises(ConfigError, match="no FP32 setting"):
        build_repository([models["render_onnx"]], "openvino", tmp_path / "r2", overrides={"cpu_precision": "fp32"})


def test_auto_serves_card_render_models_with_openvino_where_bf16(models, tmp_path):
    from cityserve.hardware import cpu_supports_bf16
    from cityserve.serving.repo import build_repository

    built = build_repository([models["card"], models["segment_onnx"]], "cpu", tmp_path / "r", configs_only=True)
    assert built.models["render"]["engine"] == ("openvino" if cpu_supports_bf16() else "onnxruntime")
    assert built.models["segment"]["engine"] == "onnxruntime"  # auto: render models only (where it was measured)
    from_onnx = build_repository([models["render_onnx"]], "cpu", tmp_path / "r2", configs_only=True)
    assert from_onnx.models["render"]["engine"] == "onnxruntime"  # an .onnx is served as that graph

"""TensorRT (issue 5, point 4): FP16 engines vs onnxruntime FP32 where TensorRT and a GPU exist (skipped,
never passed, elsewhere), and everything around TensorRT that runs without it: the batch profile from
flags or the card, the profile's input shapes, the FP32 layer selection from a precision report, the
layer -> ONNX node mapping, and the clear UnavailableError / exit code 3."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import onnx
import pytest
from _helpers_export import ort_run, spade_card

from cityserve.cards import load_card
from cityserve.cli import main
from cityserve.engines.tensorrt_engine import plan_path_of
from cityserve.errors import ConfigError, UnavailableError
from cityserve.export.onnx_export import example_inputs, export_onnx
from cityserve.export.tensorrt_build import BatchProfile, batch_profile, onnx_node_of_layer, plan_build, profile_shapes
from cityserve.gpu import cuda_backend, import_tensorrt, tensorrt_available

HAVE_TRT = tensorrt_available()
needs_trt = pytest.mark.skipif(not HAVE_TRT, reason="TensorRT/CUDA not installed")
without_trt = pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed here: its absence cannot be tested")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny SPADE generator (labels + instances) exported to render.onnx."""
    tmp = tmp_path_factory.mktemp("trt")
    card = spade_card(tmp / "ckpt", label_nc=6)
    path = export_onnx(card, tmp / "exported")
    return card, path


# ---- batch profile and shapes -------------------------------------------------------------------------------
def test_batch_profile_from_flags_card_and_defaults(exported):
    card, _ = exported
    assert batch_profile() == BatchProfile(1, 4, 8)
    assert batch_profile(card) == BatchProfile(1, 4, 8)
    assert batch_profile(card, 2, 3, 16) == BatchProfile(2, 3, 16)
    assert batch_profile(card, max_batch=2) == BatchProfile(1, 2, 2)  # opt follows a small max
    assert batch_profile(card, min_batch=6) == BatchProfile(6, 6, 8)
    card.extra["tensorrt"] = {"profile": {"min_batch": 1, "opt_batch": 2, "max_batch": 32}}
    assert batch_profile(card) == BatchProfile(1, 2, 32)
    assert batch_profile(card, max_batch=4) == BatchProfile(1, 2, 4)  # flags win over the card
    card.extra = {"serving": {"max_batch_size": 16}}
    assert batch_profile(card) == BatchProfile(1, 4, 16)
    card.extra = {}
    with pytest.raises(ConfigError, match="min <= opt <= max"):
        batch_profile(card, min_batch=4, max_batch=2)
    with pytest.raises(ConfigError, match="min <= opt <= max"):
        batch_profile(card, opt_batch=0)


def test_profile_shapes_have_dynamic_batch_and_fixed_size(exported, tmp_path):
    card, path = exported
    shapes = profile_shapes(onnx.load(str(path)), BatchProfile(1, 4, 8))
    h, w = card.height, card.width
    assert shapes == {
        "labels": ((1, 1, h, w), (4, 1, h, w), (8, 1, h, w)),
        "instances": ((1, 1, h, w), (4, 1, h, w), (8, 1, h, w)),
    }
    # the same from the exported card's extra["onnx"] section
    assert profile_shapes(load_card(path.with_name("render.card.json")).extra["onnx"], BatchProfile(1, 4, 8)) == shapes
    from onnx import helper

    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 3])
    static = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]))
    with pytest.raises(ConfigError, match="no dynamic batch"):
        profile_shapes(static, BatchProfile(1, 1, 1))


# ---- FP32 layers from the precision report ---------------------------------------------------------------------
def test_fp32_layer_selection_from_report(exported, tmp_path):
    card, path = exported
    plan = plan_build(path, tmp_path / "render.plan", max_batch=4)
    assert plan.profile == BatchProfile(1, 4, 4) and plan.report_path is None
    bn = [n.name for n in onnx.load(str(path)).graph.node if n.op_type == "BatchNormalization"]
    assert plan.fp32_flagged == [] and plan.fp32_normalization == sorted(bn) and len(bn) >= 11

    def layer(name, flagged):
        return {
            "name": name,
            "type": "Conv2d",
            "leaf": True,
            "max_abs": 1e5 if flagged else 1.0,
            "input_max_abs": 1.0,
            "local_rel_error": 0.0,
            "rel_error": 0.0,
            "overflow": flagged,
            "flagged": flagged,
            "reason": "",
            "scope": "/" + name.replace(".", "/") + "/",
        }

    report = {
        "dtype": "float16",
        "threshold": 0.01,
        "range_max": 65504.0,
        "output_rel_error": 0.0,
        "output_max_diff": 0.0,
        "model": card.name,
        "created": "",
        "layers": [layer("generator.up_0.conv_1", True), layer("generator.up_1.conv_1", False)],
    }
    beside = path.with_name("render.precision.json")
    beside.write_text(json.dumps(report))
    try:
        plan = plan_build(path, tmp_path / "render.plan")  # found beside the ONNX file
        assert plan.report_path == beside
        assert plan.fp32_flagged == ["/generator/up_0/conv_1/Conv"]
        assert set(plan.fp32_nodes) == set(plan.fp32_flagged) | set(bn)
        assert "1 node(s) from" in plan.describe()
        assert plan_build(path, tmp_path / "p.plan", precision="fp32").fp32_nodes == []  # nothing to pin in FP32
        other = tmp_path / "other.json"
        report["layers"] = [layer("encoder.layer1", True)]
        other.write_text(json.dumps(report))
        with pytest.raises(ConfigError, match="another model"):
            plan_build(path, tmp_path / "render.plan", fp32_layers_from=other)
        with pytest.raises(ConfigError, match="does not exist"):
            plan_build(path, tmp_path / "render.plan", fp32_layers_from=tmp_path / "missing.json")
    finally:
        beside.unlink()


def test_tensorrt_layers_map_back_to_onnx_nodes():
    nodes = {"/generator/up_0/conv_1/Conv", "/generator/up_0/conv_1", "/generator/up_0/norm_0/Mul"}
    assert (
        onnx_node_of_layer("whatever", "[ONNX Layer: /generator/up_0/norm_0/Mul]", nodes)
        == "/generator/up_0/norm_0/Mul"
    )
    assert onnx_node_of_layer("/generator/up_0/conv_1/Conv", "", nodes) == "/generator/up_0/conv_1/Conv"
    assert onnx_node_of_layer("/generator/up_0/conv_1/Conv_1", "", nodes) == "/generator/up_0/conv_1/Conv"
    assert onnx_node_of_layer("/generator/up_0/conv_1/Conv_output_0", "", nodes) == "/generator/up_0/conv_1/Conv"
    assert onnx_node_of_layer("/generator/up_0/conv_10/Conv", "", nodes) is None
    assert onnx_node_of_layer("ONNXTRT_ShapeTensorFromDims_12", "", nodes) is None


# ---- without TensorRT: clear errors -----------------------------------------------------------------------------
@without_trt
def test_unavailable_error_is_clear_and_exit_code_3(exported, tmp_path, capsys):
    from cityserve.engines.base import Renderer
    from cityserve.engines.tensorrt_engine import TensorRTEngine
    from cityserve.export.tensorrt_build import build_engine

    card, path = exported
    with pytest.raises(UnavailableError, match=r"TensorRT is not installed.*pip install 'cityserve\[tensorrt\]'"):
        TensorRTEngine(card)
    with pytest.raises(UnavailableError, match="TensorRT"):
        Renderer(card, engine="tensorrt")
    with pytest.raises(UnavailableError, match="TensorRT"):
        build_engine(path, tmp_path / "render.plan")
    assert main(["export", "tensorrt", str(path), "--out", str(tmp_path / "render.plan")]) == 3
    assert "TensorRT is not installed" in capsys.readouterr().err
    assert not (tmp_path / "render.plan").exists()
    # --dry-run needs no TensorRT: it checks the graph and prints what a build would do
    assert (
        main(
            ["export", "tensorrt", str(path), "--out", str(tmp_path / "render.plan"), "--dry-run", "--max-batch", "16"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "batch     min 1, opt 4, max 16" in out and f"labels: min [1, 1, {card.height}, {card.width}]" in out


def test_wrong_tensorrt_major_and_missing_cuda_are_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="8.6.1"))
    with pytest.raises(UnavailableError, match="need TensorRT 10"):
        import_tensorrt()
    for mod in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart", "pycuda", "pycuda.driver"):
        monkeypatch.setitem(sys.modules, mod, None)
    with pytest.raises(UnavailableError, match=r"cuda-python: not installed.*pycuda: not installed"):
        cuda_backend()


def test_engine_needs_a_plan(exported):
    card, _ = exported
    with pytest.raises(ConfigError, match="no TensorRT plan"):
        plan_path_of(card)


def test_export_tensorrt_rejects_a_graph_tensorrt_cannot_parse(tmp_path, capsys):
    from onnx import helper

    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 2, 2])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch"])
    model = helper.make_model(
        helper.make_graph([helper.make_node("Det", ["x"], ["y"], name="det0")], "g", [x], [y]),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    model.metadata_props.add(
        key="cityserve.card",
        value=json.dumps(
            {
                "name": "t",
                "kind": "generator",
                "arch": "spade",
                "config": {},
                "label_set": "cityscapes",
                "height": 2,
                "width": 2,
            }
        ),
    )
    onnx.save(model, str(tmp_path / "det.onnx"))
    assert main(["export", "tensorrt", str(tmp_path / "det.onnx"), "--out", str(tmp_path / "x.plan"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "det0" in err and "Det" in err


# ---- with TensorRT and a GPU ---------------------------------------------------------------------------------------
@needs_trt
def test_tensorrt_fp16_engine_matches_onnxruntime_fp32(exported, tmp_path):
    from cityserve.engines.base import Renderer
    from cityserve.engines.tensorrt_engine import TensorRTEngine
    from cityserve.export.tensorrt_build import build_engine

    card, path = exported
    cache = tmp_path / "trt.cache"
    plan = build_engine(path, tmp_path / "render.plan", min_batch=1, opt_batch=2, max_batch=4, timing_cache=cache)
    info = load_card(plan.with_name("render.card.json")).extra["tensorrt"]
    assert info["tensorrt"].startswith("10.") and info["gpu"] and "." in info["compute_capability"]
    assert info["profile"] == {"min_batch": 1, "opt_batch": 2, "max_batch": 4} and info["fp32_layers_pinned"] > 0
    assert cache.is_file() and (tmp_path / "render.plan.build.log").is_file()
    engine = TensorRTEngine(card, plan_path=plan)
    for b in (1, 4):
        feeds = {k: v.numpy() for k, v in example_inputs(card, batch=b, seed=b).items()}
        ref = ort_run(path, feeds).astype(np.float64)
        got = engine.run(feeds)
        assert got.dtype == np.uint8 and got.shape == ref.shape
        mse = ((got - ref) ** 2).mean()
        psnr = 10 * np.log10(255.0**2 / max(mse, 1e-12))
        assert psnr > 30.0 and np.abs(got - ref).mean() < 2.0, (b, psnr)
    with pytest.raises(ConfigError, match="outside the plan's profile"):
        engine.run({k: v.numpy() for k, v in example_inputs(card, batch=5).items()})
    # rebuild reuses the timing cache; the plan's card drives the Renderer
    build_engine(path, tmp_path / "render.plan", max_batch=4, timing_cache=cache)
    r = Renderer(load_card(plan.with_name("render.card.json")), engine="tensorrt")
    assert r.render(example_inputs(card, batch=2)["labels"].numpy()).shape == (2, card.height, card.width, 3)


# ---- the build code path against a recording stand-in of the TensorRT API (machines without TensorRT) ----------
@without_trt
def test_build_engine_wiring_with_api_standin(exported, tmp_path, monkeypatch):
    """Runs build_engine end to end with _helpers_tensorrt's stand-in: FP16 + OBEY flags, the profile's
    shapes, exactly the FP32 nodes pinned (precision + output types), the timing cache read and saved,
    the plan, its build log and its card (TensorRT version, GPU, compute capability)."""
    from _helpers_tensorrt import DataType, FakeCuda, _Builder, fake_tensorrt

    from cityserve import gpu
    from cityserve.export.tensorrt_build import build_engine

    card, path = exported
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt())
    monkeypatch.setattr(gpu, "cuda_backend", FakeCuda)
    out = tmp_path / "engines" / "render.plan"
    cache = tmp_path / "trt.cache"
    plan = build_engine(path, out, min_batch=1, opt_batch=2, max_batch=4, timing_cache=cache, workspace_gib=1)
    b = _Builder.last
    flags = {f.name for f in b.config.flags}
    assert flags == {"FP16", "OBEY_PRECISION_CONSTRAINTS"} and b.config.workspace == 1 << 30
    (prof,) = b.config.profiles
    h, w = card.height, card.width
    assert prof.shapes["labels"] == ((1, 1, h, w), (2, 1, h, w), (4, 1, h, w)) and set(prof.shapes) == {
        "labels",
        "instances",
    }
    bn = {n.name for n in onnx.load(str(path)).graph.node if n.op_type == "BatchNormalization"}
    pinned = {l.name for l in b.network.layers if l.precision is DataType.float32}
    assert pinned == bn and all(l.output_types == {0: DataType.float32} for l in b.network.layers if l.name in bn)
    assert json.loads(plan.read_bytes())["pinned"] == sorted(pinned, key=[l.name for l in b.network.layers].index)
    assert cache.read_bytes() == b"timing:+" and b.config.read_cache == b""
    info = load_card(out.with_name("render.card.json")).extra["tensorrt"]
    assert (
        info["tensorrt"] == "10.99.0-standin" and info["gpu"] == "Stand-in GPU" and info["compute_capability"] == "9.0"
    )
    assert info["profile"] == {"min_batch": 1, "opt_batch": 2, "max_batch": 4} and info["fp32_layers_pinned"] == len(bn)
    assert "onnx" in load_card(out.with_name("render.card.json")).extra  # the ONNX section travels along
    log = out.with_name("render.plan.build.log").read_text()
    assert "TensorRT 10.99.0-standin" in log and "batch     min 1, opt 2, max 4" in log
    build_engine(path, out, max_batch=4, timing_cache=cache)  # the saved cache is read on the rebuild
    assert _Builder.last.config.read_cache == b"timing:+"
    build_engine(path, out, max_batch=4, precision="fp32")
    assert not _Builder.last.config.flags and not any(l.precision for l in _Builder.last.network.layers)

"""ONNX export (issue 5): the DESIGN contract, onnxruntime-vs-torch parity on every model kind, the
official SPADE fixtures through `cityserve import spade` + export, the fused SPADE form, the TensorRT op
check, the FP16 precision report, and the onnxruntime engine behind Renderer / `cityserve render`."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from _helpers_export import deeplab_card, ort_run, pix2pix_card, spade_card
from torch import nn

from cityserve.cards import load_card, sha256_file
from cityserve.cli import main
from cityserve.errors import ConfigError, UnavailableError
from cityserve.export.onnx_export import (
    METADATA_CARD_KEY,
    build_graph,
    card_from_onnx,
    compare_images,
    example_inputs,
    export_onnx,
    parity_ok,
    run_torch,
)
from cityserve.export.opcheck import (
    OPS_FILE,
    UnsupportedOpError,
    check_tensorrt_ops,
    find_problems,
    load_op_list,
    op_types,
)
from cityserve.export.precision_report import PrecisionReport, fp32_node_selection, precision_report
from cityserve.models.render import to_uint8_image

SPADE_VARIANTS = {
    # name: (label set, SPADEConfig overrides); few label channels keep the full-resolution
    # mlp_shared convs cheap (the fixtures below cover 35 and 151 channels)
    "cityscapes_instance_normal": ("cityscapes", {}),
    "ade20k_dontcare_more": (
        "ade20k",
        dict(
            label_nc=20,
            contain_dontcare_label=True,
            no_instance=True,
            num_upsampling_layers="more",
            crop_size=64,
            aspect_ratio=1.0,
        ),
    ),
    "vae_more": (
        "ade20k",
        dict(
            label_nc=20,
            contain_dontcare_label=True,
            no_instance=True,
            use_vae=True,
            z_dim=8,
            num_upsampling_layers="more",
            crop_size=64,
            aspect_ratio=1.0,
        ),
    ),
    "instance_norm_no_spectral": ("cityscapes", dict(norm_G="spadeinstance3x3")),
    "most_square": (
        "cityscapes",
        dict(label_nc=6, num_upsampling_layers="most", crop_size=128, aspect_ratio=1.0, no_instance=True),
    ),
}


def check_contract(path, card, stem="render"):
    """The graph file, its I/O (names, dtypes, dynamic batch, fixed H/W), metadata and card beside."""
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert path.name == f"{stem}.onnx"
    assert model.opset_import[0].version >= 17
    meta = {m.key: m.value for m in model.metadata_props}
    assert json.loads(meta[METADATA_CARD_KEY])["sha256"] == card.sha256
    assert meta["cityserve.kind"] == card.kind and meta["cityserve.height"] == str(card.height)
    beside = load_card(path.with_name(f"{stem}.card.json"))
    info = beside.artifacts["onnx"].to_dict()
    assert info["file"] == path.name and info["sha256"] == sha256_file(path) and info["opset"] >= 17
    assert beside.weights_path.resolve() == card.weights_path.resolve()  # the copied card still finds the weights
    beside.verify()
    io = {d["name"]: d for d in info["inputs"] + info["outputs"]}
    h, w = card.height, card.width
    if card.kind == "generator":
        assert io["labels"]["dtype"] == "uint8" and io["labels"]["shape"] == ["batch", 1, h, w]
        assert io["image"]["dtype"] == "uint8" and io["image"]["shape"] == ["batch", h, w, 3]
        if "instances" in io:
            assert io["instances"]["dtype"] == "int32" and io["instances"]["shape"] == ["batch", 1, h, w]
    else:
        assert io["image"]["dtype"] == "uint8" and io["image"]["shape"] == ["batch", h, w, 3]
        assert io["labels"]["dtype"] == "uint8" and io["labels"]["shape"] == ["batch", 1, h, w]
    assert find_problems(model) == []  # TensorRT 10 could parse it
    assert op_types(model) <= load_op_list().ops
    return model, info


def check_parity(card, path, batches=(1, 4), fused=False):
    module, names, _ = build_graph(card, fused=fused)
    for b in batches:
        feeds = {k: v.numpy() for k, v in example_inputs(card, batch=b, seed=10 + b).items()}
        ref = run_torch(module, feeds, names)
        got = ort_run(path, feeds)
        assert got.dtype == np.uint8 and got.shape == ref.shape and got.shape[0] == b
        stats = compare_images(ref, got)
        assert parity_ok(stats, card.kind), (b, stats)
        if card.kind == "generator":  # a real picture, not a constant or saturated one that matches trivially
            assert ref.std() > 1.0 and ((ref == 0) | (ref == 255)).mean() < 0.5


# ---- SPADE variants, pix2pix, segmenters ---------------------------------------------------------------
@pytest.mark.parametrize("variant", sorted(SPADE_VARIANTS))
def test_spade_variant_exports_with_contract_and_parity(variant, tmp_path):
    label_set, cfg = SPADE_VARIANTS[variant]
    card = spade_card(tmp_path / "ckpt", name=variant, label_set=label_set, **cfg)
    path = export_onnx(card, tmp_path / "out")
    model, info = check_contract(path, card)
    names = [d["name"] for d in info["inputs"]]
    assert names == ["labels"] + (["instances"] if not cfg.get("no_instance") else []) + (
        ["z"] if cfg.get("use_vae") else []
    )
    if cfg.get("use_vae"):
        assert info["inputs"][-1] == {"name": "z", "dtype": "float32", "shape": ["batch", 8]}
    ops = op_types(model)
    if cfg.get("norm_G", "spectral").startswith("spectral"):
        # spectral norm folded: no per-run sigma computation (u . W v, then a division) in the graph
        assert "Div" not in ops and "ReduceL2" not in ops
        assert "BatchNormalization" in ops  # eval batch norm as the plain op
    check_parity(card, path)


@pytest.mark.parametrize("input_mode", ["onehot", "color"])
def test_pix2pix_exports_with_parity(input_mode, tmp_path):
    card = pix2pix_card(tmp_path / "ckpt", input_mode)
    path = export_onnx(card, tmp_path / "out")
    check_contract(path, card)
    check_parity(card, path)


def test_deeplab_segment_export_labels_identical(tmp_path):
    card = deeplab_card(tmp_path / "ckpt")
    path = export_onnx(card, tmp_path / "out")
    check_contract(path, card, stem="segment")
    check_parity(card, path)


def test_fchardnet_fixture_segment_export_labels_identical(fixtures_dir, tmp_path):
    state = fixtures_dir / "fchardnet" / "fchardnet70_state.pth"
    assert main(["import", "fchardnet", str(state), "--size", "64x128", "--out", str(tmp_path / "ckpt")]) == 0
    card = load_card(tmp_path / "ckpt")
    path = export_onnx(card, tmp_path / "out")
    check_contract(path, card, stem="segment")
    check_parity(card, path)
    # a real segmentation: several label ids, all of them Cityscapes label ids of train classes
    got = ort_run(path, {"image": example_inputs(card, batch=1)["image"].numpy()})
    assert len(np.unique(got)) > 1 and set(np.unique(got)) <= {
        7,
        8,
        11,
        12,
        13,
        17,
        19,
        20,
        21,
        22,
        23,
        24,
        25,
        26,
        27,
        28,
        31,
        32,
        33,
    }


# ---- the official SPADE fixtures, through `cityserve import spade` ------------------------------------------
FIXTURES = {
    # name: (import flags, expected output file)
    "cityscapes_ngf2": (["--label-set", "cityscapes", "--size", "256x512", "--upsampling", "normal"], "output"),
    "ade20k_ngf2": (["--label-set", "ade20k", "--size", "256x256"], "output"),
    "ade20k_more_vae_ngf2": (["--label-set", "ade20k", "--size", "256x256", "--upsampling", "more"], "output"),
}


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_official_spade_fixture_onnx_reproduces_official_output(name, fixtures_dir, tmp_path):
    d = fixtures_dir / "spade"
    flags, out_stem = FIXTURES[name]
    argv = ["import", "spade", str(d / f"{name}_netG.pth"), *flags, "--out", str(tmp_path / "ckpt")]
    if (d / f"{name}_netE.pth").is_file():
        argv += ["--netE", str(d / f"{name}_netE.pth")]
    assert main(argv) == 0
    card = load_card(tmp_path / "ckpt")
    # batch 1 traces the full-size graph fastest; dynamic batch is covered by the tiny variants above
    path = export_onnx(card, tmp_path / "out", example_batch=1)
    check_contract(path, card)
    feeds = {"labels": torch.load(d / f"{name}_labels.pt", weights_only=True).numpy().astype(np.uint8)}
    if (d / f"{name}_instance.pt").is_file():
        feeds["instances"] = torch.load(d / f"{name}_instance.pt", weights_only=True).numpy().astype(np.int32)
    if (d / f"{name}_z.pt").is_file():
        feeds["z"] = torch.load(d / f"{name}_z.pt", weights_only=True).numpy().astype(np.float32)
    got = ort_run(path, feeds)
    expected = to_uint8_image(torch.load(d / f"{name}_{out_stem}.pt", weights_only=True)).numpy()
    stats = compare_images(expected, got)
    assert parity_ok(stats, "generator"), stats


# ---- the fused SPADE inference form -----------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["cityscapes_instance_normal", "vae_more"])
def test_fused_spade_matches_unfused(variant, tmp_path):
    from cityserve.export.fuse import FusedSPADEResnetBlock

    label_set, cfg = SPADE_VARIANTS[variant]
    card = spade_card(tmp_path / "ckpt", name=variant, label_set=label_set, seed=3, **cfg)
    plain, names, _ = build_graph(card)
    fused, _, _ = build_graph(card, fused=True)
    blocks = [m for m in fused.modules() if isinstance(m, FusedSPADEResnetBlock)]
    assert len(blocks) == (8 if cfg.get("num_upsampling_layers") == "most" else 7)
    # up_0 changes channels: its 3 mlp_shared convs became one with 3 x 128 outputs
    assert fused.generator.up_0.mlp_shared[0].out_channels == 3 * 128
    assert fused.generator.up_0.norm_0.mlp_gamma_beta.out_channels == 2 * fused.generator.up_0.norm_0.norm_nc
    feeds = example_inputs(card, batch=2, seed=5)
    sem = plain.semantics(feeds["labels"], feeds.get("instances"))
    args = (sem, feeds["z"]) if "z" in feeds else (sem,)
    with torch.no_grad():
        y_plain, y_fused = plain.generator(*args), fused.generator(*args)
    assert y_plain.abs().max() > 0.05
    torch.testing.assert_close(y_fused, y_plain, atol=2e-5, rtol=1e-4)
    if variant != "cityscapes_instance_normal":
        return  # the export below is the same code path for every variant
    # exported: fewer convs and resizes, same picture as the unfused torch model
    p_fused = export_onnx(card, tmp_path / "fused", fused=True)
    fused_ops = [n.op_type for n in onnx.load(str(p_fused)).graph.node]
    assert fused_ops.count("Resize") == 1 + 7 + 5  # fc's input, one per block, the 5 upsamplings
    # fc + per block (shared, 2 gamma_beta, conv_0, conv_1) + per shortcut block (gamma_beta, conv_s) + conv_img;
    # unfused it is 1 + 7 * 8 + 4 * 4 + 1 = 74
    assert fused_ops.count("Conv") == 1 + 7 * 5 + 4 * 2 + 1
    assert load_card(p_fused.with_name("render.card.json")).artifacts["onnx"].fused is True
    np_feeds = {k: v.numpy() for k, v in feeds.items()}
    stats = compare_images(run_torch(plain, np_feeds, names), ort_run(p_fused, np_feeds))
    assert parity_ok(stats, "generator"), stats


def test_fuse_refuses_models_without_spade_blocks_and_fused_non_spade(tmp_path):
    from cityserve.export.fuse import fuse_spade

    with pytest.raises(ValueError, match="no SPADE residual blocks"):
        fuse_spade(nn.Sequential(nn.Conv2d(3, 3, 1)))
    with pytest.raises(ConfigError, match="fused"):
        export_onnx(deeplab_card(tmp_path / "ckpt"), tmp_path / "out", fused=True)


# ---- CLI ------------------------------------------------------------------------------------------------
def test_cli_export_onnx_writes_graph_and_card_and_verifies(tmp_path, capsys):
    card = spade_card(tmp_path / "ckpt")
    out = tmp_path / "exported"
    assert main(["export", "onnx", str(card.path), "--out", str(out), "--verify"]) == 0
    text = capsys.readouterr().out
    assert "batch 4: 100.000% identical" in text or "batch 4: 99.9" in text
    assert (out / "render.onnx").is_file() and card_from_onnx(out / "render.onnx").artifacts[
        "onnx"
    ].file == "render.onnx"
    # the embedded card alone is enough when the card file is gone
    (out / "render.card.json").unlink()
    assert card_from_onnx(out / "render.onnx").sha256 == card.sha256
    assert main(["export", "onnx", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["export", "onnx", str(card.path), "--out", str(out), "--opset", "13"]) == 2


def test_entry_points_and_help(repo_root, capsys):
    import subprocess
    import sys

    with pytest.raises(SystemExit) as e:
        main(["export", "onnx", "--help"])
    assert e.value.code == 0
    assert "examples:" in capsys.readouterr().out
    # export/to_onnx.py is a thin wrapper over the installed package (no sys.path edits)
    r = subprocess.run(
        [sys.executable, str(repo_root / "export" / "to_onnx.py"), "--help"], capture_output=True, text=True
    )
    assert r.returncode == 0 and "cityserve export onnx" in r.stdout, r.stderr


# ---- TensorRT op check --------------------------------------------------------------------------------------
def test_op_list_names_source_and_version():
    head = OPS_FILE.read_text().splitlines()[:6]
    assert any("onnx-tensorrt" in l and "operators.md" in l for l in head)
    assert any("TensorRT 10." in l for l in head)
    ops = load_op_list().ops
    assert {"Conv", "Resize", "BatchNormalization", "Cast", "Equal", "Pad", "Clip", "Round", "ArgMax"} <= ops
    assert not {"Det", "Unique", "BitShift", "StringNormalizer"} & ops


def _tiny_graph(
    op_type: str, domain: str = "", node_name: str = "my_node", elem=onnx.TensorProto.FLOAT, y_shape=(2, 2)
):
    from onnx import helper

    x = helper.make_tensor_value_info("x", elem, [2, 2])
    y = helper.make_tensor_value_info("y", elem, list(y_shape))
    node = helper.make_node(op_type, ["x"], ["y"], name=node_name, domain=domain)
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=opsets)


def test_unsupported_op_is_rejected_with_op_and_node_name(tmp_path):
    model = _tiny_graph("Det", node_name="/generator/det_here", y_shape=())
    onnx.checker.check_model(model)  # a valid ONNX graph ...
    with pytest.raises(UnsupportedOpError, match=r"/generator/det_here.*Det"):  # ... TensorRT cannot parse
        check_tensorrt_ops(model)
    path = tmp_path / "det.onnx"
    onnx.save(model, str(path))
    with pytest.raises(UnsupportedOpError, match="det.onnx"):
        check_tensorrt_ops(path)
    with pytest.raises(UnsupportedOpError, match="custom-domain"):
        check_tensorrt_ops(_tiny_graph("MyPlugin", domain="com.example", node_name="plug"))
    # uint8 may only cross the network edge through a Cast: a uint8 Transpose is refused
    with pytest.raises(UnsupportedOpError, match="uint8"):
        check_tensorrt_ops(_tiny_graph("Transpose", node_name="t", elem=onnx.TensorProto.UINT8))
    check_tensorrt_ops(_tiny_graph("Relu"))  # a supported op passes


def test_export_fails_on_an_unsupported_op(tmp_path, monkeypatch):
    """An exported graph with an op outside the list fails the export, naming op and node."""
    from cityserve.export import opcheck

    card = spade_card(tmp_path / "ckpt")
    real = opcheck.load_op_list()
    monkeypatch.setattr(opcheck, "load_op_list", lambda *a: opcheck.OpList(real.ops - {"Resize"}, real.source))
    with pytest.raises(UnsupportedOpError, match=r"Resize"):
        export_onnx(card, tmp_path / "out")
    assert not (tmp_path / "out" / "render.onnx").exists()


# ---- FP16 precision report -------------------------------------------------------------------------------------
class Planted(nn.Module):
    """benign conv -> 'big' (activations ~1e5: overflows FP16) -> 'small' (scales back) -> norm ->
    'cancel' (w = 1e4 and -(1e4 - 1) on equal channels: a in FP32, 0 in FP16 where 9999 rounds to
    10000) -> 'out'."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.inp = nn.Conv2d(3, 4, 3, padding=1)
        self.big = nn.Conv2d(4, 4, 1)
        self.small = nn.Conv2d(4, 4, 1)
        self.norm = nn.BatchNorm2d(4)
        self.cancel = nn.Conv2d(4, 2, 1, bias=False)
        self.out = nn.Conv2d(2, 3, 3, padding=1)
        with torch.no_grad():
            self.big.weight.copy_(torch.eye(4).view(4, 4, 1, 1) * 1e5)
            self.small.weight.copy_(torch.eye(4).view(4, 4, 1, 1) * 1e-5)
            w = torch.zeros(2, 4, 1, 1)
            w[0, 0], w[0, 1], w[1, 2], w[1, 3] = 1e4, -(1e4 - 1), 1e4, -(1e4 - 1)
            self.cancel.weight.copy_(w)

    def forward(self, x):
        h = torch.relu(self.inp(x)) + 1.0
        h = self.norm(self.small(self.big(h)))
        h = torch.cat([h[:, :1], h[:, :1], h[:, 2:3], h[:, 2:3]], 1)  # equal pairs: 1e4 a - 9999 a = a
        return torch.tanh(self.out(self.cancel(h)))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_precision_report_finds_planted_overflow_and_precision_loss(tmp_path):
    model = Planted().eval()
    x = torch.randn(1, 3, 8, 8)
    report = precision_report(model, (x,), "float16")
    by = {l.name: l for l in report.layers}
    assert by["big"].overflow and by["big"].flagged and by["big"].max_abs > 65504
    assert by["small"].flagged and "input" in by["small"].reason  # it receives the overflowing tensor
    assert by["cancel"].flagged and by["cancel"].local_rel_error > 0.5 and not by["cancel"].overflow
    assert not by["inp"].flagged and by["inp"].local_rel_error < 1e-2
    assert not by["out"].flagged and by["norm"].reason == "normalization"
    assert report.flagged == ["big", "small", "cancel"]
    saved = report.save(tmp_path / "render.precision.json")
    again = PrecisionReport.load(saved)
    assert again.flagged == report.flagged and json.loads(saved.read_text())["flagged"] == report.flagged
    # bfloat16 has FP32's range: no overflow there, but the cancelling layer still loses everything
    bf = precision_report(model, (x,), "bfloat16")
    assert not any(l.overflow for l in bf.layers) and "cancel" in bf.flagged
    # -> ONNX node names (what the TensorRT build pins), plus every normalization node
    path = tmp_path / "planted.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, do_constant_folding=False)
    sel = fp32_node_selection(onnx.load(str(path)), report)
    assert sel["flagged"] == ["/big/Conv", "/cancel/Conv", "/small/Conv"]
    assert sel["normalization"] == ["/norm/BatchNormalization"]


def test_precision_report_on_a_spade_graph_maps_to_its_onnx_nodes(tmp_path):
    """Plant an FP16 overflow in a real SPADE generator without changing its FP32 output: scale one
    norm's mlp_shared conv by 1e6 (ReLU is positively homogeneous) and its gamma/beta convs by 1e-6."""
    from cityserve.checkpoints import save_checkpoint
    from cityserve.export.precision_report import report_for_card

    card = spade_card(tmp_path / "ckpt", label_nc=6)
    sd = torch.load(card.weights_path, weights_only=True)
    pre = "head_0.norm_1."
    for k in ("mlp_shared.0.weight", "mlp_shared.0.bias"):
        sd[pre + k] = sd[pre + k] * 1e6
    for k in ("mlp_gamma.weight", "mlp_beta.weight"):
        sd[pre + k] = sd[pre + k] * 1e-6
    planted = load_card(save_checkpoint(card, sd, tmp_path / "planted", "planted"))
    path = export_onnx(planted, tmp_path / "out")
    report = report_for_card(planted, "fp16")
    flagged = set(report.flagged)
    assert "generator.head_0.norm_1.mlp_shared.0" in flagged  # output overflows
    assert {"generator.head_0.norm_1.mlp_gamma", "generator.head_0.norm_1.mlp_beta"} <= flagged  # inputs do
    assert not any(n.startswith(("generator.up_", "generator.conv_img", "generator.head_0.norm_0")) for n in flagged)
    sel = fp32_node_selection(onnx.load(str(path)), report)
    assert "/generator/head_0/norm_1/mlp_shared/mlp_shared.0/Conv" in sel["flagged"]
    assert "/generator/head_0/norm_1/mlp_gamma/Conv" in sel["flagged"]
    assert not any("/up_" in n for n in sel["flagged"])
    assert len(sel["normalization"]) >= 11 and all(n.endswith("BatchNormalization") for n in sel["normalization"])
    # the FP32 picture is unchanged by the planting
    feeds = {k: v.numpy() for k, v in example_inputs(card, batch=1).items()}
    assert parity_ok(
        compare_images(run_torch(build_graph(card)[0], feeds, ["labels", "instances"]), ort_run(path, feeds)),
        "generator",
    )


# ---- onnxruntime engine --------------------------------------------------------------------------------------
def test_onnxruntime_engine_behind_renderer_matches_torch(tmp_path, monkeypatch):
    from cityserve.engines.base import Renderer

    monkeypatch.setenv("CITYSERVE_CACHE", str(tmp_path / "cache"))
    card = spade_card(tmp_path / "ckpt")
    ids = example_inputs(card, batch=3, seed=2)["labels"].numpy()
    ref = Renderer(card, engine="torch").render(ids)
    r = Renderer(card, engine="onnxruntime", threads=1, graph_optimization_level="basic")
    got = r.render(ids)
    assert parity_ok(compare_images(ref, got), "generator")
    exported = r.engine.onnx_path
    assert exported.is_file() and str(tmp_path / "cache") in str(exported)
    mtime = exported.stat().st_mtime_ns
    r2 = Renderer(card, engine="onnxruntime", graph_optimization_level="disable")  # cached: not exported again
    assert r2.engine.onnx_path == exported and exported.stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(r2.render(ids), got)
    # an exported card finds its own render.onnx
    r3 = Renderer(load_card(exported.with_name("render.card.json")), engine="onnxruntime")
    assert r3.engine.onnx_path == exported
    with pytest.raises(ConfigError, match="graph_optimization_level"):
        Renderer(card, engine="onnxruntime", graph_optimization_level="max")
    with pytest.raises(UnavailableError, match="CUDAExecutionProvider"):
        Renderer(card, engine="onnxruntime", providers="cuda")


def test_cli_render_with_onnxruntime_engine(tmp_path, monkeypatch):
    import cv2

    from cityserve.engines.base import Renderer
    from cityserve.labels import write_id_png

    monkeypatch.setenv("CITYSERVE_CACHE", str(tmp_path / "cache"))
    card = spade_card(tmp_path / "ckpt", no_instance=True)
    ids = example_inputs(card, batch=1, seed=4)["labels"].numpy()[0, 0] % 34  # the label set's ids 0..33
    write_id_png(tmp_path / "labels.png", ids, "cityscapes")
    out = tmp_path / "photo.png"
    assert (
        main(
            [
                "render",
                str(tmp_path / "labels.png"),
                "--model",
                str(card.path),
                "--out",
                str(out),
                "--engine",
                "onnxruntime",
            ]
        )
        == 0
    )
    photo = cv2.imread(str(out))[..., ::-1]
    ref = Renderer(card, engine="torch").render(ids)[0]
    assert parity_ok(compare_images(ref, photo), "generator")

"""Serving a depth-aware SPADE pair (issue 17 points 4 and 6): the repository on every target, the
label2depth / label2depth2photo / depth2photo ensembles through a real tritonserver against the local
torch graphs, bad depth maps (INVALID_ARGUMENT, the server keeps serving) and ``cityserve render
--server`` with --depth-aware / --depth.

One server serves the module (the pair's own repository: 32x64, ngf 2, random weights).
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from _helpers_depth import H, W, tiny_depth_pair
from _helpers_serving import block_labels, png_bytes

from cityserve.cards import load_card
from cityserve.errors import ConfigError

pytestmark = [pytest.mark.triton, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The pair's cards, and each stage exported once (the builds below serve the exported cards)."""
    from cityserve.export.depth_export import export_depth_onnx

    root = tmp_path_factory.mktemp("depth-serving")
    d, p = tiny_depth_pair(root / "cards")
    d_onnx = export_depth_onnx("depth", d, root / "exported" / "depth")
    p_onnx = export_depth_onnx("depth2photo", p, root / "exported" / "photo")
    exported = (load_card(d_onnx.with_name("depth.card.json")), load_card(p_onnx.with_name("depth2photo.card.json")))
    return {"cards": (d, p), "exported": exported, "onnx": (d_onnx, p_onnx), "root": root}


@pytest.fixture(scope="module")
def server(pair):
    """A tritonserver serving the pair's cpu repository, built from the exported stage cards."""
    from cityserve.serving.repo import build_repository
    from cityserve.serving.server import TritonServer

    built = build_repository(
        [], "cpu", pair["root"] / "repo-cpu", overrides={"intra_op_threads": 1}, depth_pair=pair["exported"]
    )
    with TritonServer(built.path) as server:
        yield server


@pytest.fixture(scope="module")
def client(server):
    from cityserve.client import CityserveClient

    with CityserveClient(server.grpc_url, timeout=60) as c:
        yield c


def local(pair, ids: np.ndarray, depth: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The torch graphs of both stages: (photo uint8 [H,W,3], the depth it used, metres [H,W])."""
    from cityserve.export.depth_export import depth_graph_from_card, photo_graph_from_card

    d_card, p_card = pair["cards"]
    lab = torch.from_numpy(ids.astype(np.int64))[None, None]
    inst = torch.from_numpy(ids.astype(np.int32))[None, None]  # no instance map: the class boundaries
    with torch.no_grad():
        d = depth_graph_from_card(d_card)(lab, inst) if depth is None else torch.from_numpy(depth)[None, None]
        photo = photo_graph_from_card(p_card)(lab, inst, d)
    return photo[0].numpy(), d[0, 0].numpy()


def read_png(data: bytes, flags=cv2.IMREAD_UNCHANGED) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    assert img is not None
    return img


def assert_close(got: np.ndarray, want: np.ndarray, levels: int = 1) -> None:
    diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
    assert got.shape == want.shape and diff.max() <= levels, f"differs by up to {diff.max()} levels"


def photo_of(png: bytes) -> np.ndarray:
    return read_png(png, cv2.IMREAD_COLOR)[..., ::-1]


# ---- through the server ----------------------------------------------------------------------------


def test_label2depth_and_label2depth2photo_match_the_local_graphs(client, pair):
    ids = block_labels(3, H, W)
    want_photo, want_depth = local(pair, ids)
    depth_png = client.label2depth(png_bytes(ids))
    mm = read_png(depth_png)
    assert mm.dtype == np.uint16 and mm.shape == (H, W)
    # millimetres, clipped to 1..65535: what stage 1 predicted, to the millimetre
    want_mm = np.clip(np.round(want_depth.astype(np.float64) * 1000), 1, 65535)
    assert np.abs(mm.astype(np.float64) - want_mm).max() <= 1 + 1e-4 * want_mm.max()
    assert 1 < len(np.unique(mm))  # the labels change the depth
    photo_png, depth_png2 = client.label2depth2photo(png_bytes(ids))
    assert_close(photo_of(photo_png), want_photo)
    assert depth_png2 == depth_png  # the depth stage 2 was given is the one label2depth predicts
    other = block_labels(4, H, W)
    assert not np.array_equal(photo_of(client.label2depth2photo(png_bytes(other))[0]), photo_of(photo_png))


@pytest.mark.parametrize("fmt", ["png", "npy"])
def test_depth2photo_renders_with_the_users_depth(client, pair, fmt, tmp_path):
    import io

    ids = block_labels(5, H, W)
    rng = np.random.default_rng(1)
    metres = np.where(np.arange(H)[:, None] < H // 2, 900.0, rng.uniform(2.0, 60.0, (H, W))).astype(np.float32)
    if fmt == "png":
        data = png_bytes(np.round(np.minimum(metres, 65.535) * 1000).astype(np.uint16))
        used = np.round(np.minimum(metres, 65.535) * 1000).astype(np.float32) / np.float32(1000)
    else:
        buf = io.BytesIO()
        np.save(buf, metres[None])
        data, used = buf.getvalue(), metres
    want, _ = local(pair, ids, used)
    got = photo_of(client.depth2photo(png_bytes(ids), data))
    assert_close(got, want)
    near, _ = local(pair, ids, np.full((H, W), 1.5, np.float32))
    assert np.abs(near.astype(int) - want.astype(int)).max() > 1  # the depth given changes the photo


def _npy(a: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


GOOD = np.full((H, W), 12.5, np.float32)


def _bad_depth_maps():
    nan, neg = GOOD.copy(), GOOD.copy()
    nan[3, 4] = np.nan
    neg[5, 6] = -1.0
    return [
        (
            "small-png",
            png_bytes(np.full((H // 2, W), 5000, np.uint16)),
            f"depth map is {H // 2}x{W} \\(HxW\\), the model renders {H}x{W}",
        ),
        (
            "8bit-png",
            png_bytes(np.full((H, W), 9, np.uint8)),
            "must be single-channel 16-bit \\(millimetres\\), not 1-channel 8-bit",
        ),
        ("rgb-png", png_bytes(np.zeros((H, W, 3), np.uint8)), "not 3-channel 8-bit"),
        ("zero-png", png_bytes(np.zeros((H, W), np.uint16)), f"depth map has {H * W} zero or negative pixel"),
        ("nan-npy", _npy(nan), "depth map has 1 NaN/inf pixel"),
        ("negative-npy", _npy(neg), "depth map has 1 zero or negative pixel\\(s\\) \\(min -1\\)"),
        ("int-npy", _npy(np.ones((H, W), np.int32)), "must hold floats \\(metres\\), not int32"),
        (
            "wrong-shape-npy",
            _npy(np.ones((2, H, W), np.float32)),
            "must be \\[H,W\\] or \\[1,H,W\\], not shape \\[2, 32, 64\\]",
        ),
        ("garbage", b"depth please", "not a PNG"),
    ]


def test_bad_depth_maps_get_invalid_argument_and_the_next_request_is_served(client, pair):
    from cityserve.client import ServerError

    ids = block_labels(6, H, W)
    want, _ = local(pair, ids, GOOD)
    for name, data, message in _bad_depth_maps():
        with pytest.raises(ServerError, match=message) as info:
            client.depth2photo(png_bytes(ids), data)
        assert info.value.status == "INVALID_ARGUMENT", name
        assert "\n" not in str(info.value) and "decode_depth" in str(info.value), str(info.value)
        assert_close(photo_of(client.depth2photo(png_bytes(ids), _npy(GOOD))), want)


def test_raw_graphs_take_metres_and_refuse_bad_depth(client, pair):
    from cityserve.client import ServerError

    ids = block_labels(9, H, W)[None, None]
    feeds = {"labels": ids, "instances": ids.astype(np.int32)}
    depth = client.infer("depth", feeds)["depth"]
    want_photo, want_depth = local(pair, ids[0, 0])
    np.testing.assert_allclose(depth[0, 0], want_depth, rtol=1e-4)
    assert_close(client.infer("render_from_depth", {**feeds, "depth": depth})["image"][0], want_photo)
    for value, message in ((np.nan, "depth: depth map has 1 NaN/inf pixel"), (0.0, "1 zero or negative")):
        bad = depth.copy()
        bad[0, 0, 2, 3] = value
        with pytest.raises(ServerError, match=message) as info:
            client.infer("render_from_depth", {**feeds, "depth": bad})
        assert info.value.status == "INVALID_ARGUMENT"
    assert_close(client.infer("render_from_depth", {**feeds, "depth": depth})["image"][0], want_photo)


def test_render_command_through_the_server(client, pair, tmp_path, capsys):
    from cityserve.cli import main

    ids = block_labels(8, H, W)
    labels = tmp_path / "labels.png"
    labels.write_bytes(png_bytes(ids))
    out, dout = tmp_path / "photo.png", tmp_path / "depth.png"
    argv = ["render", str(labels), "--server", client.url, "--out", str(out)]
    assert main([*argv, "--depth-aware", "--depth-out", str(dout)]) == 0
    photo_png, depth_png = client.label2depth2photo(png_bytes(ids))
    assert out.read_bytes() == photo_png and dout.read_bytes() == depth_png
    np.save(tmp_path / "mine.npy", GOOD)
    assert main([*argv, "--depth", str(tmp_path / "mine.npy")]) == 0
    assert_close(photo_of(out.read_bytes()), local(pair, ids, GOOD)[0])
    capsys.readouterr()
    bad = GOOD.copy()
    bad[0, 0] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    np.save(tmp_path / "small.npy", GOOD[: H // 2])
    for f, msg in (
        ("nan.npy", "nan.npy: depth map has 1 NaN/inf pixel(s)"),  # checked here, naming the file
        ("small.npy", f"depth map is {H // 2}x{W} (HxW), the model renders {H}x{W}"),  # by the server
    ):
        assert main([*argv, "--depth", str(tmp_path / f)]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.strip().count("\n") == 0, err
    # a card with --server: the server's pair predicts the depth
    assert main([*argv, "--depth-aware", str(pair["cards"][0].path)]) == 2
    assert "without a card" in capsys.readouterr().err


def test_sigterm_finds_no_request_left_in_flight(server, client):
    """Every failed depth2photo request above was retired: Triton stops at once, not after its exit
    timeout (which it waits out for a request a failing parallel ensemble step left behind)."""
    server.stop()
    log = server.log_tail(80)
    assert "Found 0 model versions that have in-flight inferences" in log and "Exit timeout expired" not in log, log


# ---- the depth codec (no server) ------------------------------------------------------------------------


def test_depth_png_codec_clips_to_millimetres_and_reads_back(tmp_path):
    from cityserve.data.depth import read_depth
    from cityserve.serving.depth_codec import DepthDecoder, encode_depth_png

    metres = np.array([[0.0004, 0.0016, 1.2344, 12.3456], [65.535, 65.6, 1000.0, 3.0]], np.float32)
    png = encode_depth_png(metres[None])
    mm = read_png(png)
    assert mm.dtype == np.uint16 and mm.tolist() == [[1, 2, 1234, 12346], [65535, 65535, 65535, 3000]]
    got = DepthDecoder(2, 4).decode(png)
    assert got.shape == (1, 2, 4) and got.dtype == np.float32
    np.testing.assert_allclose(got[0], mm / 1000.0, rtol=1e-6)
    path = tmp_path / "d.png"
    path.write_bytes(png)
    np.testing.assert_allclose(read_depth(path), got[0])  # the training data's reader agrees
    # .npy: float metres as they are; the header is read before the array (a huge shape costs nothing)
    assert np.array_equal(DepthDecoder(2, 4).decode(_npy(metres[1:].repeat(2, 0) + 1))[0], metres[1:].repeat(2, 0) + 1)
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (100000, 100000)})
    huge = buf.getvalue()  # the header of a 40 GB array, and no data
    with pytest.raises(Exception, match="depth map is 100000x100000"):
        DepthDecoder(2, 4).decode(huge)
    with pytest.raises(Exception, match="over the configured maximum of 10"):
        DepthDecoder(2, 4, max_bytes=10).decode(png)


# ---- the repository on every target (no server) -------------------------------------------------------


@pytest.mark.parametrize("target", ["gpu-onnx", "gpu-trt", "openvino"])
def test_gpu_and_openvino_configs_match_the_graphs(pair, target, tmp_path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    from cityserve.cli import main
    from cityserve.serving.sources import graph_io

    d, p = pair["exported"]
    out = tmp_path / "repo"
    argv = ["repo", "build", "--target", target, "--depth-aware", str(d.path), str(p.path), "--out", str(out)]
    assert main([*argv, "--max-batch-size", "2"]) == 0
    configs = {c.parent.name: text_format.Parse(c.read_text(), mc.ModelConfig()) for c in out.glob("*/config.pbtxt")}
    assert set(configs) == {
        "depth",
        "render_from_depth",
        "decode_png_depth",
        "prepare_depth",
        "encode_png",
        "encode_depth",
        "decode_depth",
        "label2depth",
        "label2depth2photo",
        "depth2photo",
    }
    platform = {"gpu-onnx": ("onnxruntime_onnx", ""), "gpu-trt": ("tensorrt_plan", ""), "openvino": ("", "openvino")}
    kind = "KIND_CPU" if target == "openvino" else "KIND_GPU"
    for name, onnx_path in zip(("depth", "render_from_depth"), pair["onnx"]):
        cfg = configs[name]
        assert (cfg.platform, cfg.backend) == platform[target] and cfg.max_batch_size == 2
        assert [mc.ModelInstanceGroup.Kind.Name(g.kind) for g in cfg.instance_group] == [kind]
        g_in, g_out = graph_io(onnx_path)
        for c_tensors, g_tensors in ((cfg.input, g_in), (cfg.output, g_out)):
            assert [t.name for t in c_tensors] == [t["name"] for t in g_tensors]
            for t, g in zip(c_tensors, g_tensors):
                assert list(t.dims) == g["shape"][1:]
        assert (out / name / "1" / "model.onnx").read_bytes() == onnx_path.read_bytes()
    assert list(configs["depth"].output[0].dims) == [1, H, W]
    assert [t.name for t in configs["render_from_depth"].input] == ["labels", "instances", "depth"]
    # warm-up depth is a file of valid metres (Triton's random data would be NaN / negative floats)
    warm = configs["render_from_depth"].model_warmup
    assert [w.inputs["depth"].input_data_file for w in warm] == ["depth_10m.f32"] * 2
    data = np.frombuffer((out / "render_from_depth" / "warmup" / "depth_10m.f32").read_bytes(), "<f4")
    assert data.size == H * W and np.all(data == 10.0)
    # ensembles: the contract's tensors, every step fed by what an earlier step (or the input) made
    contracts = {
        "label2depth": (["LABELS_PNG"], ["DEPTH_PNG"]),
        "label2depth2photo": (["LABELS_PNG"], ["PHOTO_PNG", "DEPTH_PNG"]),
        "depth2photo": (["LABELS_PNG", "DEPTH_PNG"], ["PHOTO_PNG"]),
    }
    for ens, (ins, outs) in contracts.items():
        cfg = configs[ens]
        assert (
            cfg.platform == "ensemble" and [t.name for t in cfg.input] == ins and [t.name for t in cfg.output] == outs
        )
        produced = set(ins)
        for step in cfg.ensemble_scheduling.step:
            model = configs[step.model_name]
            assert set(step.input_map) == {t.name for t in model.input}
            assert set(step.input_map.values()) <= produced, f"{ens}: {step.model_name} reads unproduced tensors"
            produced |= set(step.output_map.values())
    steps = [s.model_name for s in configs["label2depth2photo"].ensemble_scheduling.step]
    assert steps.index("depth") < steps.index("render_from_depth") < steps.index("encode_png")
    if target == "gpu-trt":
        script = (out / "build_engines.sh").read_text()
        for name in ("depth", "render_from_depth"):
            assert f'--out "$REPO"/{name}/1/model.plan' in script
    manifest = json.loads((out / "cityserve_repo.json").read_text())
    assert manifest["models"]["depth"]["card"] == "tiny-depth"


def test_openvino_in_the_python_backend_runs_depth_graphs_in_fp32_unless_asked(pair, tmp_path):
    pytest.importorskip("openvino", reason="the openvino extra: pip install 'cityserve[openvino]'")
    from cityserve.serving.repo import build_repository

    for asked, want in (("auto", "fp32"), ("bf16", "bf16")):
        built = build_repository(
            [],
            "cpu",
            tmp_path / asked,
            overrides={"cpu_engine": "openvino", "cpu_precision": asked},
            depth_pair=pair["exported"],
            configs_only=True,
        )
        for name in ("depth", "render_from_depth"):
            assert built.models[name]["python_model"] == "render_openvino_python"
            text = (built.path / name / "config.pbtxt").read_text()
            assert f'key: "precision"\n  value {{\n    string_value: "{want}"' in text, text


def test_a_pair_that_does_not_fit_is_refused(pair, tmp_path):
    from cityserve.cli import main
    from cityserve.serving.repo import build_repository

    d, p = pair["cards"]
    with pytest.raises(ConfigError, match="a photo-from-depth stage, where the pair needs its depth stage"):
        build_repository([], "cpu", tmp_path / "r", depth_pair=(p, d), configs_only=True)
    assert main(["repo", "build", "--target", "cpu", "--out", str(tmp_path / "r2")]) == 2
    # a stage 2 trained on another stage 1's predictions is served, with a note saying so
    d_exp, p_exp = pair["exported"]
    built = build_repository([], "cpu", tmp_path / "r3", depth_pair=(d_exp, p_exp), configs_only=True)
    assert built.notes == []
    other = load_card(p_exp.path)
    other.depth = dict(other.depth, depth_model={"name": "another", "sha256": "0" * 64})
    other.save(p_exp.directory / "other.card.json")
    built = build_repository(
        [], "cpu", tmp_path / "r4", depth_pair=(d_exp, p_exp.directory / "other.card.json"), configs_only=True
    )
    assert [n for n in built.notes if 'trained on the predictions of another stage 1 ("another")' in n], built.notes


def test_the_default_repository_serves_a_shipped_pair(pair, tmp_path):
    import shutil

    from cityserve.serving.defaults import DEMO_DIR, shipped_demo_cards, shipped_depth_pair

    shipped = shipped_depth_pair(DEMO_DIR)  # the demo pair (models/demo/README.md)
    assert shipped is not None and [c.name for c in shipped] == ["depth-demo", "depth2photo-demo"]
    demo = tmp_path / "demo"
    for card in pair["cards"]:
        shutil.copytree(card.directory, demo, dirs_exist_ok=True)
    found = shipped_depth_pair(demo)
    assert found is not None and [c.name for c in found] == ["tiny-depth", "tiny-photo-from-depth"]
    assert shipped_demo_cards(demo) == []  # depth-aware stages are not served as plain generators

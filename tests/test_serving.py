"""Serving: the repository builder, a real tritonserver on loopback, the gRPC client, bad input.

One server (started through ``cityserve serve``) serves the whole module; the last test stops it
with SIGTERM and checks that no process outlives it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from _helpers_serving import (
    H,
    W,
    block_labels,
    png_bomb,
    png_bytes,
    segment_locally,
    tiny_layout_card,
    tiny_segmenter_onnx,
    tiny_spade_card,
)

from cityserve.bench.bad_inputs import png_idat_bomb
from cityserve.card_sections import ServingOptions
from cityserve.errors import ConfigError, LabelError

pytestmark = [pytest.mark.triton, pytest.mark.timeout(180)]
REPO_ROOT = Path(__file__).resolve().parents[1]


# ---- models and repositories (module scope: exported once) --------------------------------------


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from cityserve.export.onnx_export import export_onnx

    root = tmp_path_factory.mktemp("serving-models")
    card = tiny_spade_card(root / "gen")
    render_onnx = export_onnx(card, root / "gen" / "exported")
    # the same weights again, served as the label2photo_ens ensemble beside the fused label2photo
    ensemble_card = tiny_spade_card(root / "gen-ens", name="ens", serving={"pipeline": "ensemble"})
    ensemble_onnx = export_onnx(ensemble_card, root / "gen-ens" / "exported")
    segment_onnx = tiny_segmenter_onnx(root / "seg")
    layout = tiny_layout_card(root / "layout")
    return {
        "card": card,
        "render_onnx": render_onnx,
        "ensemble_onnx": ensemble_onnx,
        "segment_onnx": segment_onnx,
        "layout": layout,
        "root": root,
    }


@pytest.fixture(scope="module")
def cpu_repo(models):
    """The cpu target: the first generator's label2photo fused (the default), the second's (same
    weights, ``pipeline: ensemble`` in its card) the ensemble decode_png_ens -> prepare_render_ens ->
    render_ens -> encode_png."""
    from cityserve.serving.repo import build_repository

    out = models["root"] / "repo-cpu"
    return build_repository(
        [models["render_onnx"], models["ensemble_onnx"], models["segment_onnx"], models["layout"].path],
        "cpu",
        out,
        overrides={"intra_op_threads": 1, "max_queue_delay_us": 5000},
    )


@pytest.fixture(scope="module")
def server(cpu_repo):
    """``cityserve serve --repo REPO`` on free loopback ports; yields its endpoints and process."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cityserve",
            "serve",
            "--repo",
            str(cpu_repo.path),
            "--grpc-port",
            "0",
            "--http-port",
            "0",
            "--metrics-port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=REPO_ROOT,
    )
    lines: list[str] = []
    endpoints: dict[str, str] = {}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        m = re.match(r"\s+(gRPC|HTTP|metrics)\s+(\S+)", line)
        if m:
            endpoints[m.group(1)] = m.group(2)
        if "Ctrl-C or SIGTERM" in line:
            break
    if "gRPC" not in endpoints:
        proc.kill()
        pytest.fail("cityserve serve did not become ready:\n" + "".join(lines))
    # keep draining its output so it never blocks on a full pipe
    drain = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    drain.start()
    info = {
        "proc": proc,
        "grpc": endpoints["gRPC"],
        "http": endpoints["HTTP"],
        "metrics": endpoints["metrics"],
        "lines": lines,
    }
    yield info
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


@pytest.fixture(scope="module")
def client(server):
    from cityserve.client import CityserveClient

    with CityserveClient(server["grpc"], timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def local_renderer(models):
    from cityserve.engines.base import Renderer

    return Renderer(models["card"], engine="torch")


def assert_photo_close(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape and got.dtype == np.uint8
    diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
    assert diff.max() <= 1, f"photo differs by up to {diff.max()} levels ({(diff > 1).mean():.2%} of values)"


def decode_ids_png(data: bytes) -> np.ndarray:
    import cv2

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert img is not None and img.ndim == 2
    return img


# ---- the builder: configs parse and agree with the graphs (no server) -----------------------------


def graph_tensors(onnx_path: Path) -> dict[str, tuple[str, list]]:
    import onnx

    m = onnx.load(str(onnx_path))
    out = {}
    for vi in list(m.graph.input) + list(m.graph.output):
        tt = vi.type.tensor_type
        out[vi.name] = (
            np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)).name,
            [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim],
        )
    return out


TRITON_OF = {"uint8": "TYPE_UINT8", "int32": "TYPE_INT32", "float32": "TYPE_FP32"}


@pytest.mark.parametrize("variant", ["gpu-trt", "gpu-onnx", "cpu", "cpu-ensemble"])
def test_every_config_parses_and_matches_its_graph(models, tmp_path, variant):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from cityserve.cli import main

    target, fused = variant.removesuffix("-ensemble"), variant == "cpu"
    out = tmp_path / f"repo-{variant}"
    rc = main(
        [
            "repo",
            "build",
            "--target",
            target,
            *(["--pipeline", "ensemble"] if variant == "cpu-ensemble" else []),
            "--model",
            str(models["render_onnx"]),
            "--model",
            str(models["segment_onnx"]),
            "--out",
            str(out),
            "--max-batch-size",
            "4",
            "--instances",
            "2",
            "--max-queue-delay-us",
            "1500",
            "--max-pixels",
            "1000000",
        ]
    )
    assert rc == 0
    configs = {}
    for path in sorted(out.glob("*/config.pbtxt")):
        cfg = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
        assert cfg.name == path.parent.name
        assert (path.parent / "1").is_dir()
        configs[cfg.name] = cfg
    expected = {
        "render",
        "segment",
        "decode_png",
        "decode_photo",
        "encode_png",
        "encode_labels",
        "prepare_render",
        "label2photo",
        "photo2labels",
        "photo2photo",
    }
    if fused:  # label2photo is one python model: no decode_png step
        expected.remove("decode_png")
    assert set(configs) == expected

    graphs = {"render": graph_tensors(models["render_onnx"]), "segment": graph_tensors(models["segment_onnx"])}
    platform = {"gpu-trt": "tensorrt_plan", "gpu-onnx": "onnxruntime_onnx", "cpu": ""}[target]
    for name, tensors in graphs.items():
        cfg = configs[name]
        assert cfg.platform == platform and (cfg.backend == "python") == (target == "cpu")
        assert cfg.max_batch_size == 4
        listed = {t.name: t for t in list(cfg.input) + list(cfg.output)}
        assert set(listed) == set(tensors), f"{name}: config tensors {set(listed)} vs graph {set(tensors)}"
        for tname, (dtype, shape) in tensors.items():
            t = listed[tname]
            assert model_config_pb2.DataType.Name(t.data_type) == TRITON_OF[dtype]
            assert shape[0] is None  # dynamic batch in the graph, max_batch_size in the config
            assert len(t.dims) == len(shape) - 1
            for cd, gd in zip(t.dims, shape[1:]):
                assert cd > 0 and (gd is None or cd == gd)
        assert list(cfg.dynamic_batching.preferred_batch_size) == [2, 4]
        assert cfg.dynamic_batching.max_queue_delay_microseconds == 1500
        kind = "KIND_CPU" if target == "cpu" else "KIND_GPU"
        assert [(model_config_pb2.ModelInstanceGroup.Kind.Name(g.kind), g.count) for g in cfg.instance_group] == [
            (kind, 2)
        ]
        assert [w.batch_size for w in cfg.model_warmup] == [1, 4]
        assert set(cfg.model_warmup[0].inputs) == {t.name for t in cfg.input}
    assert list(configs["render"].input[0].dims) == [1, H, W]
    assert list(configs["render"].output[0].dims) == [H, W, 3]
    decoder = configs["label2photo" if fused else "decode_png"]
    assert decoder.parameters["max_pixels"].string_value == "1000000"
    if fused:  # the ensemble's contract, batching and instances, the render model's engine
        cfg = configs["label2photo"]
        assert cfg.backend == "python" and cfg.max_batch_size == 4
        io = [(t.name, model_config_pb2.DataType.Name(t.data_type), list(t.dims)) for t in [*cfg.input, *cfg.output]]
        assert io == [("LABELS_PNG", "TYPE_STRING", [1]), ("PHOTO_PNG", "TYPE_STRING", [1])]
        assert list(cfg.dynamic_batching.preferred_batch_size) == [2, 4] and cfg.instance_group[0].count == 2
        assert cfg.parameters["engine"].string_value == "onnxruntime"  # an exported .onnx: onnxruntime

    # ensembles: every step names a model of the repository and only tensors that model has
    for ens in ("photo2labels", "photo2photo") if fused else ("label2photo", "photo2labels", "photo2photo"):
        cfg = configs[ens]
        assert cfg.platform == "ensemble" and cfg.max_batch_size == 4
        produced = {t.name for t in cfg.input}
        for step in cfg.ensemble_scheduling.step:
            model = configs[step.model_name]
            assert set(step.input_map) <= {t.name for t in model.input}
            assert set(step.input_map) == {t.name for t in model.input}  # every input fed
            assert set(step.output_map) <= {t.name for t in model.output}
            assert set(step.input_map.values()) <= produced, f"{ens}: {step.model_name} reads unproduced tensors"
            produced |= set(step.output_map.values())
        assert {t.name for t in cfg.output} <= produced
    if target == "gpu-trt":
        script = (out / "build_engines.sh").read_text()
        # the project's TensorRT builder (FP32 pins kept), not a bare trtexec, with the repository's batch profile
        commands = [line for line in script.splitlines() if not line.startswith("#")]
        assert (
            not [line for line in commands if "trtexec" in line]
            and '$CITYSERVE export tensorrt \\\n    "$REPO"/render/1/model.onnx' in script
        )
        assert '--out "$REPO"/render/1/model.plan' in script and "--min-batch 1 --opt-batch 4 --max-batch 4" in script
        assert (out / "render" / "1" / "model.onnx").is_file()
    manifest = json.loads((out / "cityserve_repo.json").read_text())
    assert manifest["target"] == target and set(manifest["models"]) == expected


def test_config_graph_disagreement_is_caught(models, tmp_path):
    from tritonclient.grpc import model_config_pb2

    from cityserve.serving.repo import build_repository, check_config_against_onnx, parse_config

    built = build_repository([models["render_onnx"]], "gpu-onnx", tmp_path / "r")
    text = (built.path / "render" / "config.pbtxt").read_text()
    good = parse_config(text)
    check_config_against_onnx(good, models["render_onnx"])

    def changed(edit):
        cfg = parse_config(text)
        edit(cfg)
        return cfg

    for bad, what in (
        (changed(lambda c: setattr(c.input[0], "data_type", model_config_pb2.TYPE_INT32)), "TYPE_INT32"),
        (changed(lambda c: c.input[0].dims.__setitem__(2, 64)), "dims"),
        (changed(lambda c: setattr(c.input[1], "name", "instance_map")), "instance_map"),
    ):
        with pytest.raises(ConfigError, match=what):
            check_config_against_onnx(bad, models["render_onnx"])
    with pytest.raises(ConfigError, match="ModelConfig"):
        parse_config(text.replace("max_batch_size: 8", "max_batch_size: eight"))


def test_export_entry_point_builds_a_repository(models, tmp_path, monkeypatch):
    import runpy

    monkeypatch.setattr(
        sys,
        "argv",
        [
            "build_repo.py",
            "--target",
            "gpu-onnx",
            "--model",
            str(models["render_onnx"]),
            "--out",
            str(tmp_path / "r"),
            "--onnx-accelerator",
            "tensorrt",
        ],
    )
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(REPO_ROOT / "export" / "build_repo.py"), run_name="__main__")
    assert exit_info.value.code == 0
    text = (tmp_path / "r" / "render" / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in text and "gpu_execution_accelerator" in text and '"FP16"' in text
    assert not (tmp_path / "r" / "segment").exists()  # no segmenter given: no segment model, no photo2labels
    assert sorted(p.name for p in (tmp_path / "r").iterdir() if p.is_dir()) == [
        "decode_png",
        "encode_png",
        "label2photo",
        "prepare_render",
        "render",
    ]


def test_builder_takes_serving_options_from_the_card(models, tmp_path):
    # the exported card (render.onnx + render.card.json) with its own serving options
    import shutil

    from cityserve.cards import load_card
    from cityserve.serving.repo import build_repository, parse_config

    exported = tmp_path / "exported"
    exported.mkdir()
    shutil.copy(models["render_onnx"], exported / "render.onnx")
    card = load_card(models["render_onnx"].with_name("render.card.json"))
    card.serving = ServingOptions(max_batch_size=2, instances=3)
    card.save(exported / "render.card.json")
    built = build_repository([exported], "gpu-trt", tmp_path / "r")
    cfg = parse_config((built.path / "render" / "config.pbtxt").read_text())
    assert cfg.max_batch_size == 2 and cfg.instance_group[0].count == 3
    assert list(cfg.dynamic_batching.preferred_batch_size) == [2]
    assert parse_config((built.path / "label2photo" / "config.pbtxt").read_text()).max_batch_size == 2
    assert built.notes and "build_engines.sh" in built.notes[0]
    with pytest.raises(ConfigError, match="not empty"):
        build_repository([card], "cpu", built.path)
    with pytest.raises(ConfigError, match="unknown target"):
        build_repository([card], "tpu", tmp_path / "x")


# ---- codec: the checks the python models run (no server) ------------------------------------------


def test_png_header_checks():
    from cityserve.serving.codec import LabelPngDecoder, PhotoDecoder, jpeg_header, png_header

    good = png_bytes(block_labels(0))
    h = png_header(good)
    assert (h.width, h.height, h.channels) == (W, H, 1)
    bomb = png_bomb(30000, 30000)
    assert len(bomb) < 100_000 and png_header(bomb).width == 30000
    dec = LabelPngDecoder("cityscapes", H, W, 35, max_pixels=1_000_000)
    with pytest.raises(LabelError, match="over the configured maximum"):
        dec.decode(bomb)
    with pytest.raises(LabelError, match="not a PNG"):
        dec.decode(b"GIF89a" + b"\0" * 40)
    corrupt = bytearray(good)
    corrupt[20] ^= 0xFF
    with pytest.raises(LabelError, match="checksum"):
        dec.decode(bytes(corrupt))
    with pytest.raises(LabelError, match="truncated"):
        dec.decode(good[: len(good) // 2])
    ids = dec.decode(good)
    assert ids.shape == (1, H, W) and np.array_equal(ids[0], block_labels(0))
    import cv2

    ok, jpg = cv2.imencode(".jpg", np.zeros((48, 80, 3), np.uint8))
    assert (jpeg_header(jpg.tobytes()).width, jpeg_header(jpg.tobytes()).height) == (80, 48)
    photo = PhotoDecoder(H, W).decode(jpg.tobytes())
    assert photo.shape == (H, W, 3)


def test_idat_bomb_is_refused_while_inflating():
    """A 256x512 PNG with an honest header whose 2 MB of pixel data inflate to 2 GiB: refused after
    inflating one byte more than the 131 328 bytes its header allows (OpenCV would inflate it all)."""
    from cityserve.serving.codec import LabelPngDecoder, PhotoDecoder, png_check_inflated, png_header, png_raw_size

    bomb = png_idat_bomb(512, 256, 2 << 30)
    assert len(bomb) < 3_000_000 and png_raw_size(png_header(bomb)) == 256 * (512 + 1)
    with pytest.raises(LabelError, match=r"decompression bomb.*: refused after inflating 131329 bytes"):
        png_check_inflated(bomb)
    with pytest.raises(LabelError, match="decompression bomb"):
        LabelPngDecoder("cityscapes", 256, 512, 35).decode(bomb)
    with pytest.raises(LabelError, match="decompression bomb"):
        PhotoDecoder(256, 512).decode(bomb)
    for arr in (block_labels(3), np.zeros((H, W, 3), np.uint8), np.zeros((5, 7, 4), np.uint8)):
        good = png_bytes(arr)  # honest PNGs inflate to exactly the header's size
        assert png_check_inflated(good) == png_raw_size(png_header(good))


def test_render_inputs_resize_nearest_and_instances():
    from cityserve.serving.codec import RenderInputs, resize_nearest

    ids = np.arange(12, dtype=np.uint8).reshape(3, 4)
    big = resize_nearest(ids, 6, 8)
    assert np.array_equal(big, np.kron(ids, np.ones((2, 2), np.uint8)))
    prep = RenderInputs(6, 8, 35, use_instance=True, z_dim=4, seed=0).prepare(ids[None])
    assert prep["labels"].shape == (1, 6, 8) and prep["labels"].dtype == np.uint8
    assert np.array_equal(prep["instances"][0], big.astype(np.int32))
    assert prep["z"].shape == (4,) and prep["z"].dtype == np.float32
    with pytest.raises(LabelError, match="id 40 at 48 pixels"):
        RenderInputs(6, 8, 35).prepare(np.full((1, 6, 8), 40, np.uint8))


# ---- the running server ---------------------------------------------------------------------------


def test_serve_prints_endpoints_on_loopback(server, client):
    assert server["grpc"].startswith("127.0.0.1:")
    assert server["http"].startswith("http://127.0.0.1:") and "/metrics" in server["metrics"]
    assert client.is_ready()
    import urllib.request

    with urllib.request.urlopen(server["metrics"], timeout=10) as r:
        assert b"nv_inference_request_success" in r.read()


def test_label2photo_matches_the_local_engine(client, local_renderer):
    from cityserve.labels import get_label_set
    from cityserve.serving.codec import decode_rgb_png

    ids = block_labels(1)
    want = local_renderer.render(ids)[0]
    got = decode_rgb_png(client.label2photo(png_bytes(ids)))  # 1-channel id PNG
    assert_photo_close(got, want)
    colors = get_label_set("cityscapes").ids_to_colors(ids)
    got_color = decode_rgb_png(client.label2photo(png_bytes(colors)))  # palette-color PNG
    assert_photo_close(got_color, want)
    # a batch in one request, and ids straight to the raw render model
    batch = [block_labels(s) for s in (2, 3, 4)]
    pngs = client.label2photo([png_bytes(b) for b in batch])
    raw = client.render(np.stack(batch))
    assert raw.shape == (3, H, W, 3) and raw.dtype == np.uint8
    for b, p, r in zip(batch, pngs, raw):
        want = local_renderer.render(b)[0]
        assert_photo_close(decode_rgb_png(p), want)
        assert_photo_close(r, want)


def test_fused_label2photo_gives_the_ensembles_photo(client):
    """The cpu target's fused label2photo (one python model) and the ensemble of the same weights give
    the same photo, bit for bit (the same engine on the same graph, lossless PNG); a bad PNG is
    INVALID_ARGUMENT from both, with the same one-line problem, and the next request is served."""
    from cityserve.client import ServerError
    from cityserve.serving.codec import decode_rgb_png

    assert client.model_config("label2photo")["backend"] == "python"
    assert client.model_config("label2photo_ens")["platform"] == "ensemble"
    pngs = [png_bytes(block_labels(s)) for s in (21, 22, 23)]
    fused = client.label2photo(pngs)  # one batched request
    ensemble = client.label2photo(pngs, model="label2photo_ens")
    raw = client.render(np.stack([block_labels(s) for s in (21, 22, 23)]))
    for f, e, r in zip(fused, ensemble, raw):
        assert np.array_equal(decode_rgb_png(f), decode_rgb_png(e)) and np.array_equal(decode_rgb_png(f), r)
    messages = []
    for model in ("label2photo", "label2photo_ens"):
        with pytest.raises(ServerError) as info:
            client.label2photo([pngs[0], b"\x89PNG\r\n\x1a\n" + b"garbage" * 10], model=model)
        assert info.value.status == "INVALID_ARGUMENT"
        messages.append(str(info.value))
        assert np.array_equal(decode_rgb_png(client.label2photo(pngs[1], model=model)), decode_rgb_png(fused[1]))
    problem = [m[m.index("(batch item 1 of 2)") :] for m in messages]
    assert problem[0] == problem[1] and "malformed PNG" in problem[0], messages


def test_photo2labels_and_photo2photo_match_the_local_engines(client, local_renderer):
    from cityserve.labels import get_label_set
    from cityserve.serving.codec import decode_rgb_png

    rng = np.random.default_rng(0)
    photo = np.kron(rng.integers(0, 256, (H // 8, W // 8, 3), dtype=np.uint8), np.ones((8, 8, 1), np.uint8))
    want_ids = segment_locally(photo[None])[0, 0]
    assert len(np.unique(want_ids)) > 2  # the tiny segmenter says more than one thing
    id_png, color_png = client.photo2labels(png_bytes(photo))
    assert np.array_equal(decode_ids_png(id_png), want_ids)  # Cityscapes ids are stored as they are
    assert np.array_equal(decode_rgb_png(color_png), get_label_set("cityscapes").ids_to_colors(want_ids))

    out = client.photo2photo(png_bytes(photo))
    assert np.array_equal(decode_ids_png(out["LABELS_PNG"]), want_ids)
    assert_photo_close(decode_rgb_png(out["RENDERED_PNG"]), local_renderer.render(want_ids)[0])

    # a larger photo is area-resized to the segmenter's size on the server, as cv2 does here
    import cv2

    big = cv2.resize(photo, (W * 2, H * 2), interpolation=cv2.INTER_NEAREST)
    small = cv2.resize(big, (W, H), interpolation=cv2.INTER_AREA)
    id_png, _ = client.photo2labels(png_bytes(big))
    assert np.array_equal(decode_ids_png(id_png), segment_locally(small[None])[0, 0])


def _bad_inputs():
    from cityserve.labels import get_label_set

    good_ids = block_labels(5)
    good = png_bytes(good_ids)
    colors = get_label_set("cityscapes").ids_to_colors(good_ids)
    colors[3:5, 7:9] = (1, 2, 3)
    out_of_range = good_ids.copy()
    out_of_range[10:12, 20:30] = 200
    return [
        ("malformed", b"\x89PNG\r\n\x1a\n" + b"garbage" * 10, "malformed PNG"),
        ("truncated", good[: len(good) // 2], "truncated"),
        ("not-png", b"hello, world" * 4, "not a PNG"),
        ("bomb", png_bomb(30000, 30000), "over the configured maximum"),
        ("idat-bomb", png_idat_bomb(W, H, 256 << 20), "decompression bomb"),  # honest header, 256 MiB inflated
        ("unknown-color", png_bytes(colors), r"color.*\(1, 2, 3\).*not in label set"),
        ("out-of-range-id", png_bytes(out_of_range), "id 200 at 20 pixels is out of range"),
        ("wrong-size", png_bytes(np.full((32, 64), 7, np.uint8)), "32x64"),
    ]


@pytest.mark.parametrize("case", _bad_inputs(), ids=lambda c: c[0])
def test_bad_png_gets_an_error_and_the_next_request_is_served(client, local_renderer, case):
    from cityserve.client import ServerError
    from cityserve.serving.codec import decode_rgb_png

    _, data, message = case
    with pytest.raises(ServerError, match=message) as info:
        client.label2photo(data)
    assert info.value.status == "INVALID_ARGUMENT"
    ids = block_labels(6)
    assert_photo_close(decode_rgb_png(client.label2photo(png_bytes(ids))), local_renderer.render(ids)[0])


def test_bad_raw_tensors_get_errors_and_the_next_request_is_served(client, local_renderer):
    from cityserve.client import ServerError

    ids = block_labels(7)[None, None]
    good = {"labels": ids, "instances": ids.astype(np.int32)}
    cases = [
        (
            {"labels": np.full_like(ids, 40), "instances": good["instances"]},
            "id 40 at 8192 pixels is out of range",
        ),
        ({"labels": ids.astype(np.int32), "instances": good["instances"]}, "data-type is 'INT32'.*expects 'UINT8'"),
        (
            {"labels": ids[:, :, :32], "instances": good["instances"]},
            "unexpected shape for input 'labels'.*got \\[1,1,32,128\\]",
        ),
        ({"labels": ids}, "instances"),
    ]
    for feeds, message in cases:
        with pytest.raises(ServerError, match=message):
            client.infer("render", feeds)
        image = client.infer("render", good)["image"]
        assert_photo_close(image[0], local_renderer.render(ids[0, 0])[0])
    with pytest.raises(ServerError, match="malformed JPEG"):
        client.photo2labels(b"\xff\xd8\xff\xe0" + b"\x00" * 10)  # a JPEG with no frame header


def test_many_concurrent_clients_all_succeed(server, local_renderer):
    from cityserve.client import CityserveClient
    from cityserve.serving.codec import decode_rgb_png

    ids = [block_labels(100 + i) for i in range(8)]
    pngs = [png_bytes(i) for i in ids]
    want = [local_renderer.render(i)[0] for i in ids]
    results: dict[tuple[int, int], np.ndarray] = {}
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            with CityserveClient(server["grpc"], timeout=120) as c:
                for j in range(8):
                    results[(k, j)] = decode_rgb_png(c.label2photo(pngs[(k + j) % 8]))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert not errors, errors[:3]
    assert len(results) == 64
    for (k, j), photo in results.items():
        assert_photo_close(photo, want[(k + j) % 8])


def test_requests_in_flight_async(client, local_renderer):
    """render_many keeps several requests in flight; PNG and id inputs, failures per item."""
    ids = [block_labels(200 + i) for i in range(6)]
    items = [png_bytes(a) if i % 2 else a for i, a in enumerate(ids)] + [b"broken"]
    out = client.render_many(items, output="array", concurrency=4, return_exceptions=True)
    for a, got in zip(ids, out):
        got = got if got.ndim == 3 else got[0]
        assert_photo_close(got, local_renderer.render(a)[0])
    assert "not a PNG" in str(out[-1])


def test_deadline_and_retries(client):
    from cityserve.client import CityserveClient, RequestTimeout, ServerUnavailable
    from cityserve.serving.server import free_port

    with pytest.raises(RequestTimeout, match="deadline"):
        client.label2photo(png_bytes(block_labels(8)), timeout=0.0005)
    dead = CityserveClient(f"127.0.0.1:{free_port()}", timeout=10, retries=2, backoff=0.05)
    calls = []
    real = dead._client.infer
    dead._client.infer = lambda *a, **k: (calls.append(time.monotonic()), real(*a, **k))[1]
    dead._configs["render"] = client.model_config("render")
    with pytest.raises(ServerUnavailable, match="unavailable"):
        dead.render(block_labels(8))
    assert len(calls) == 3  # the first try and two retries
    dead.close()


def test_clients_cannot_load_models_or_register_shared_memory(server, client, local_renderer):
    """Admin APIs are restricted by default: no model load, no shared-memory registration (a client
    that registered the stubs' own regions could abort the server), over gRPC and HTTP alike."""
    import urllib.error
    import urllib.request

    import tritonclient.utils.shared_memory as shm
    from tritonclient.utils import InferenceServerException

    from cityserve.serving.codec import decode_rgb_png

    with pytest.raises(InferenceServerException, match="restricted"):
        client._client.load_model("render")
    probe_key = f"/cityserve_probe_{os.getpid()}"
    region = shm.create_shared_memory_region("probe", probe_key, 1 << 16)
    try:
        with pytest.raises(InferenceServerException, match="restricted"):
            client._client.register_system_shared_memory("probe", probe_key, 1 << 16)
        body = json.dumps({"key": probe_key, "offset": 0, "byte_size": 1 << 16}).encode()
        req = urllib.request.Request(f"{server['http']}/v2/systemsharedmemory/region/probe/register", data=body)
        with pytest.raises(urllib.error.HTTPError) as http:
            urllib.request.urlopen(req, timeout=10)
        assert "restricted" in http.value.read().decode()
    finally:
        shm.destroy_shared_memory_region(region)
    with pytest.raises(ConfigError, match="no model 'nope'"):
        client.model_config("nope")
    ids = block_labels(13)  # and it still serves
    assert_photo_close(decode_rgb_png(client.label2photo(png_bytes(ids))), local_renderer.render(ids)[0])


def test_render_command_through_the_server(server, tmp_path, local_renderer):
    from cityserve.cli import main
    from cityserve.serving.codec import decode_rgb_png

    ids = block_labels(9)
    src = tmp_path / "labels.png"
    src.write_bytes(png_bytes(ids))
    out = tmp_path / "photo.png"
    assert main(["render", str(src), "--server", server["grpc"], "--out", str(out)]) == 0
    assert_photo_close(decode_rgb_png(out.read_bytes()), local_renderer.render(ids)[0])
    src.write_bytes(b"not a png at all")
    assert main(["render", str(src), "--server", server["grpc"], "--out", str(tmp_path / "x.png")]) == 2
    assert not (tmp_path / "x.png").exists()


def test_demo_renders_examples_through_grpc(models, tmp_path, capsys, local_renderer):
    """`cityserve demo` (what `make demo` runs) with the tiny model: photos, montage, timings, and a
    label map of another size resized with nearest-neighbour first."""
    from cityserve.cli import main
    from cityserve.labels import get_label_set
    from cityserve.serving.codec import decode_rgb_png, resize_nearest

    examples = tmp_path / "examples"
    examples.mkdir()
    small = block_labels(11)
    (examples / "a.png").write_bytes(png_bytes(get_label_set("cityscapes").ids_to_colors(small)))
    big = np.kron(block_labels(12), np.ones((2, 2), np.uint8))  # 128x256 -> resized to 64x128
    (examples / "b.png").write_bytes(png_bytes(big))
    out = tmp_path / "out"
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    assert main(["demo", "--model", str(models["render_onnx"]), "--examples", str(examples), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert re.search(r"a: \d+ ms", text) and "resized to 64x128, nearest" in text and "montage.png" in text
    assert_photo_close(decode_rgb_png((out / "a_photo.png").read_bytes()), local_renderer.render(small)[0])
    assert_photo_close(
        decode_rgb_png((out / "b_photo.png").read_bytes()), local_renderer.render(resize_nearest(big, H, W))[0]
    )
    assert decode_rgb_png((out / "montage.png").read_bytes()).shape == (2 * H + 4, 2 * W + 4, 3)
    after = {p.pid for p in psutil.Process().children(recursive=True)}
    assert after <= before  # the demo's server and its stubs are gone


def test_placeholder_demo_model_when_none_is_shipped(tmp_path, models):
    import shutil

    from cityserve.serving.defaults import PLACEHOLDER_NAME, placeholder_card, shipped_demo_cards

    assert shipped_demo_cards(tmp_path / "missing") == []
    shipped = tmp_path / "demo"
    shipped.mkdir()
    for f in ("tiny-spade.card.json", "tiny-spade.pt"):
        shutil.copy(models["card"].directory / f, shipped / f)
    shutil.copy(models["render_onnx"].with_name("render.card.json"), shipped / "render.card.json")
    shutil.copy(models["render_onnx"], shipped / "render.onnx")
    cards = shipped_demo_cards(shipped)  # the source card and its exported copy are one model
    assert len(cards) == 1 and "onnx" in cards[0].artifacts
    card = placeholder_card(tmp_path, export=False)
    assert card.name == PLACEHOLDER_NAME and card.kind == "generator" and "random" in card.provenance["source"].lower()
    card.verify()


def test_random2photo_same_seed_same_layout_and_bad_seeds_refused(client, models, tmp_path):
    """A seed names a layout: through random2photo it is the layout ``cityserve generate`` writes for it
    (ids, colors), the same every time, another for another seed, and its photo comes back."""
    import cv2
    from tritonclient.utils import InferenceServerException

    from cityserve.cli import main
    from cityserve.serving.codec import decode_rgb_png

    a, b, again = client.random_street(5), client.random_street(6), client.random_street(5)
    assert set(a) == {"LABELS_PNG", "COLOR_PNG", "PHOTO_PNG"}
    ids5 = decode_ids_png(a["LABELS_PNG"])
    assert ids5.shape == (32, 64) and np.array_equal(ids5, decode_ids_png(again["LABELS_PNG"]))
    assert not np.array_equal(ids5, decode_ids_png(b["LABELS_PNG"]))
    assert decode_rgb_png(a["PHOTO_PNG"]).shape == (H, W, 3)
    assert main(["generate", "--layout-model", str(models["layout"].path), "--seed", "5", "--out", str(tmp_path)]) == 0
    assert np.array_equal(ids5, cv2.imread(str(tmp_path / "seed_5_labelIds.png"), cv2.IMREAD_UNCHANGED))
    assert np.array_equal(decode_rgb_png(a["COLOR_PNG"]), cv2.imread(str(tmp_path / "seed_5_color.png"))[..., ::-1])
    # random_layout itself: the instance map, and a truncation of its own changes the layout
    out = client.infer("random_layout", {"SEED": np.array([[5]], np.int64)})
    assert np.array_equal(out["LAYOUT_IDS"][0, 0], ids5)
    inst = out["INSTANCE_IDS"][0, 0]
    assert np.array_equal(np.where(inst >= 1000, inst // 1000, inst), ids5)
    assert np.array_equal(inst, cv2.imread(str(tmp_path / "seed_5_instanceIds.png"), cv2.IMREAD_UNCHANGED))
    psi0 = {"SEED": np.array([[5], [6]], np.int64), "TRUNCATION": np.zeros((2, 1), np.float32)}
    mean = client.infer("random_layout", psi0)["LAYOUT_IDS"]
    assert np.array_equal(mean[0], mean[1]) and not np.array_equal(mean[0, 0], ids5)  # psi 0: the mean layout
    # bad input: INVALID_ARGUMENT naming it, and the next request is served
    for feeds, what in (
        ({"SEED": np.array([[-1]], np.int64)}, "SEED must be 0..2"),
        ({"SEED": np.array([[1]], np.int64), "TRUNCATION": np.array([[3.0]], np.float32)}, "TRUNCATION must be 0..2"),
        ({"SEED": np.array([[1]], np.int64), "TRUNCATION": np.array([[np.nan]], np.float32)}, "TRUNCATION"),
    ):
        with pytest.raises(Exception) as err:
            client.infer("random_layout", feeds)
        assert what in str(err.value), err.value
    with pytest.raises(Exception) as err:
        client.infer("random2photo", {"SEED": np.array([[-3]], np.int64)})
    assert "SEED must be 0..2" in str(err.value)
    from tritonclient.grpc import InferInput

    bad = InferInput("SEED", [1, 1], "INT64")
    bad.set_data_from_numpy(np.array([[-1]], np.int64))
    with pytest.raises(InferenceServerException) as status:
        client._client.infer("random2photo", [bad])
    assert status.value.status() == "StatusCode.INVALID_ARGUMENT"
    with pytest.raises(ConfigError, match="seed"):
        client.random_street(-1)
    assert np.array_equal(decode_ids_png(client.random_street(5)["LABELS_PNG"]), ids5)


def test_sigterm_drains_then_stops_the_server_with_no_orphans(server):
    """Last test of the module: SIGTERM to `cityserve serve` under load. The requests already accepted
    finish; those not yet accepted get UNAVAILABLE ("draining", then "stopping" and NOT_FOUND while
    models unload: what a client retries); none fails half-way through the ensemble; then
    tritonserver, its stubs and its shared memory are gone."""
    import tritonclient.grpc as grpcclient

    proc = server["proc"]
    tree = psutil.Process(proc.pid).children(recursive=True)
    names = [p.name() for p in tree]
    assert any("tritonserver" in n for n in names) and sum("stub" in n for n in names) >= 5, names
    triton = next(p for p in tree if "tritonserver" in p.name())
    prefix = next(a.split("=", 1)[1] for a in triton.cmdline() if "shm-region-prefix-name=" in a)
    assert prefix.startswith("cityserve_") and any(n.startswith(prefix) for n in os.listdir("/dev/shm"))
    png = png_bytes(block_labels(14))
    outcomes: list[tuple[float, str, str]] = []  # (sent at, status, message)
    stop_at = [float("inf")]
    done = threading.Event()

    def load() -> None:
        c = grpcclient.InferenceServerClient(server["grpc"])
        inp = grpcclient.InferInput("LABELS_PNG", [1, 1], "BYTES")
        inp.set_data_from_numpy(np.array([[png]], dtype=np.object_))
        while not done.is_set():
            sent = time.monotonic()
            try:
                c.infer("label2photo", [inp], client_timeout=60)
                outcomes.append((sent, "OK", ""))
            except Exception as e:
                outcomes.append((sent, str(e.status()).replace("StatusCode.", ""), str(e.message())))
                if sent > stop_at[0]:
                    time.sleep(0.02)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    while sum(o[1] == "OK" for o in outcomes) < 8:
        time.sleep(0.05)
    stop_at[0] = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(90) == 0
    done.set()
    for t in threads:
        t.join(60)
    before = [o for o in outcomes if o[0] < stop_at[0]]
    failed_before = [o for o in before if o[1] != "OK"]
    # sent before the signal: served, or refused at the entry while draining (never accepted)
    assert all(o[1] == "UNAVAILABLE" and "draining" in o[2] for o in failed_before), failed_before[:3]
    assert sum(o[1] == "OK" for o in before) >= 8
    # sent after it: served, refused, or cut off as the server closes its connections (CANCELLED), never
    # a server error
    for sent, status, message in outcomes:
        late_ok = ("CANCELLED",) if sent >= stop_at[0] else ()
        assert status in ("OK", "UNAVAILABLE", *late_ok) or (
            status == "NOT_FOUND" and "no available versions" in message
        ), (status, message)
    gone, alive = psutil.wait_procs(tree, timeout=15)
    assert not alive, f"orphans: {[(p.pid, p.name()) for p in alive]}"
    assert not [n for n in os.listdir("/dev/shm") if n.startswith(prefix)]
    time.sleep(0.2)
    assert any("drained in" in line for line in server["lines"]), server["lines"][-5:]
    assert any("stopped" in line for line in server["lines"])

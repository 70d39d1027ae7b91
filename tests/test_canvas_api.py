"""The canvas's HTTP API: ``cityserve canvas --server`` (uvicorn, a real process) in front of a real
tritonserver serving a tiny SPADE with a style latent; /labels, /render, /upload, the bad inputs, and
a lost Triton that comes back."""

from __future__ import annotations

import json
import time

import cv2
import numpy as np
import pytest
from _helpers_canvas import LIMITS, CanvasProcess, http, tiny_noise_spade_card
from _helpers_serving import H, W, block_labels, png_bomb, png_bytes, tiny_layout_card

from cityserve.labels import get_label_set

pytest.importorskip("starlette", reason="starlette is not installed (pip install 'cityserve[canvas]')")
pytest.importorskip("uvicorn", reason="uvicorn is not installed (pip install 'cityserve[canvas]')")
pytestmark = [pytest.mark.triton, pytest.mark.timeout(300)]
CITYSCAPES = get_label_set("cityscapes")


@pytest.fixture(scope="module")
def triton(tmp_path_factory):
    from cityserve.export.onnx_export import export_onnx
    from cityserve.serving.repo import build_repository
    from cityserve.serving.server import TritonServer

    root = tmp_path_factory.mktemp("canvas-api")
    onnx = export_onnx(tiny_noise_spade_card(root / "gen"), root / "gen" / "exported")
    layout = tiny_layout_card(root / "layout")  # the page's "random street"
    built = build_repository([onnx, layout.path], "cpu", root / "repo")
    with TritonServer(built.path) as server:
        yield server


@pytest.fixture(scope="module")
def canvas(triton):
    proc = CanvasProcess(["--server", triton.grpc_url])
    yield proc
    assert proc.stop() == 0, "".join(proc.lines)


@pytest.fixture(scope="module")
def client(triton):
    from cityserve.client import CityserveClient

    with CityserveClient(triton.grpc_url, timeout=30) as c:
        yield c


def color_png(ids: np.ndarray) -> bytes:
    return png_bytes(CITYSCAPES.ids_to_colors(ids))


def decode(png: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return img[..., ::-1]


def assert_json_error(status_body, status: int, *words: str) -> str:
    code, headers, body = status_body
    assert code == status, body
    assert headers["content-type"].startswith("application/json")
    message = json.loads(body)["error"]
    assert "\n" not in message and message
    for w in words:
        assert w.lower() in message.lower(), message
    return message


def test_labels_is_the_served_models_palette(canvas):
    code, _, body = http("GET", canvas.url + "/labels")
    assert code == 200
    info = json.loads(body)
    assert (info["model"], info["label_set"], info["height"], info["width"]) == ("label2photo", "cityscapes", H, W)
    assert info["max_bytes"] == LIMITS["max_bytes"] and info["max_pixels"] == LIMITS["max_pixels"]
    assert info["seeded"] is True  # the render model takes a latent
    by_name = {c["name"]: c for c in info["classes"]}
    for name in ("road", "building", "vegetation", "sky", "car"):
        c = CITYSCAPES[name]
        assert by_name[name]["id"] == c.id and tuple(by_name[name]["color"]) == tuple(c.color)
    # of the classes sharing black (ids 0-4), only the lowest is paintable: the color reads back as it
    assert [c["id"] for c in info["classes"] if c["color"] == [0, 0, 0]] == [0]


def test_render_matches_triton_and_the_seed_picks_the_style(canvas, client):
    ids = block_labels(3)
    code, headers, photo = http("POST", canvas.url + "/render?seed=5", color_png(ids))
    assert code == 200 and headers["content-type"] == "image/png"
    assert float(headers["x-render-ms"]) > 0
    want = client.render(ids, seed=5)[0]  # the render model, the latent drawn from the same seed
    assert np.array_equal(decode(photo), want)
    _, _, again = http("POST", canvas.url + "/render?seed=5", png_bytes(ids))  # 1-channel ids: the same map
    assert np.array_equal(decode(again), want)
    _, _, other = http("POST", canvas.url + "/render?seed=6", color_png(ids))
    assert np.abs(decode(other).astype(int) - want).mean() > 0.5
    code, _, unseeded = http("POST", canvas.url + "/render", color_png(ids))  # the label2photo ensemble
    assert code == 200 and decode(unseeded).shape == (H, W, 3)


def test_a_painted_region_changes_the_photo_there(canvas, client):
    ids = np.full((H, W), CITYSCAPES["road"].id, np.uint8)
    _, _, before = http("POST", canvas.url + "/render?seed=1", color_png(ids))
    ids[8:40, 70:120] = CITYSCAPES["vegetation"].id
    _, _, after = http("POST", canvas.url + "/render?seed=1", color_png(ids))
    assert np.array_equal(decode(after), client.render(ids, seed=1)[0])
    diff = np.abs(decode(after).astype(int) - decode(before)).sum(-1)
    assert diff[12:36, 74:116].mean() > 20  # (a random-weight SPADE changes the rest too: its norms are global)


RAW = "application/octet-stream"


def test_raw_ids_render_as_their_png_does_and_the_answer_says_where_time_went(canvas, client):
    ids = block_labels(3)
    code, headers, photo = http("POST", canvas.url + "/render?seed=5", ids.tobytes(), content_type=RAW)
    assert code == 200 and headers["content-type"] == "image/png"
    assert np.array_equal(decode(photo), client.render(ids, seed=5)[0])
    timing = dict(p.strip().split(";dur=") for p in headers["server-timing"].split(","))
    assert {"read", "check", "triton", "encode", "total"} <= set(timing)
    assert float(timing["total"]) >= float(timing["triton"]) > 0
    code, _, unseeded = http("POST", canvas.url + "/render", ids.tobytes(), content_type=RAW)  # a fresh latent
    assert code == 200 and decode(unseeded).shape == (H, W, 3)


def test_jpeg_preview_is_the_same_photo_and_a_bad_format_is_refused(canvas, client):
    ids = block_labels(4)
    code, headers, jpeg = http("POST", canvas.url + "/render?seed=3&format=jpeg", ids.tobytes(), content_type=RAW)
    assert code == 200 and headers["content-type"] == "image/jpeg" and jpeg[:2] == b"\xff\xd8"
    from cityserve.canvas.bridge import encode_rgb_jpeg

    assert jpeg == encode_rgb_jpeg(client.render(ids, seed=3)[0])  # this render, only its encoding lossy
    code, headers, _ = http("POST", canvas.url + "/render?format=jpeg", color_png(ids))  # the ensemble: a PNG
    assert code == 200 and headers["content-type"] == "image/png"
    assert_json_error(
        http("POST", canvas.url + "/render?seed=3&format=gif", ids.tobytes(), content_type=RAW), 400, "format"
    )


BAD_RAW = {
    "wrong length": (np.zeros(H * W - 1, np.uint8).tobytes(), 400, [f"{H * W} bytes", f"{H}x{W}"]),
    "id out of range": (np.full(H * W, 200, np.uint8).tobytes(), 400, ["200"]),
    "too many bytes": (b"\0" * (LIMITS["max_bytes"] + 10), 413, ["maximum"]),
    "a PNG sent as raw ids": (lambda: color_png(block_labels(1)), 400, ["bytes"]),
}


@pytest.mark.parametrize("case", sorted(BAD_RAW))
def test_bad_raw_ids_get_a_one_line_4xx_and_the_next_render_is_served(canvas, case):
    data, status, words = BAD_RAW[case]
    data = data() if callable(data) else data
    assert_json_error(http("POST", canvas.url + "/render?seed=1", data, content_type=RAW), status, *words)
    code, _, photo = http("POST", canvas.url + "/render?seed=2", block_labels(2).tobytes(), content_type=RAW)
    assert code == 200 and decode(photo).shape == (H, W, 3)


BAD = {
    "not an image": (b"GIF89a not a png at all" * 3, 400, ["not a png"]),
    "truncated": (lambda: color_png(block_labels(1))[:80], 400, []),
    "too many bytes": (b"\x89PNG\r\n\x1a\n" + b"\0" * (LIMITS["max_bytes"] + 10), 413, ["maximum"]),
    "too many pixels": (lambda: png_bomb(500, 500), 413, ["maximum"]),
    "off-palette color": (lambda: png_bytes(np.full((H, W, 3), (1, 2, 3), np.uint8)), 400, ["color"]),
    "wrong size": (lambda: color_png(block_labels(1, 32, 64)), 400, ["64x128"]),
    "id out of range": (lambda: png_bytes(np.full((H, W), 200, np.uint8)), 400, ["200"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_gets_a_one_line_4xx_and_the_next_render_is_served(canvas, case):
    data, status, words = BAD[case]
    data = data() if callable(data) else data
    assert_json_error(http("POST", canvas.url + "/render", data), status, *words)
    code, _, photo = http("POST", canvas.url + "/render?seed=2", color_png(block_labels(2)))
    assert code == 200 and decode(photo).shape == (H, W, 3)


def test_bad_query_parameters(canvas):
    good = color_png(block_labels(2))
    assert_json_error(http("POST", canvas.url + "/render?seed=abc", good), 400, "seed")
    assert_json_error(http("POST", canvas.url + "/render?model=photo2labels", good), 404, "photo2labels")
    assert_json_error(http("POST", canvas.url + "/render?model=label2photo_nothere", good), 404, "nothere")
    assert_json_error(http("GET", canvas.url + "/examples/nothere.png"), 404, "nothere")


def test_upload_fits_any_size_and_snaps_anti_aliased_colors_on_request(canvas):
    ids = block_labels(4)
    big = np.kron(ids, np.ones((2, 2), np.uint8))  # 128x256: resized nearest to the model's 64x128
    code, headers, body = http("POST", canvas.url + "/upload", color_png(big))
    assert code == 200 and headers["x-resized"] == "1"
    assert np.array_equal(decode(body), CITYSCAPES.ids_to_colors(ids))
    code, headers, body = http("POST", canvas.url + "/upload", png_bytes(ids))  # an id PNG, at size
    assert code == 200 and headers["x-resized"] == "0"
    assert np.array_equal(decode(body), CITYSCAPES.ids_to_colors(ids))
    colors = CITYSCAPES.ids_to_colors(ids).astype(int)
    colors[::7, ::5] += 3  # anti-aliasing: colors a little off the palette
    smudged = png_bytes(np.clip(colors, 0, 255).astype(np.uint8))
    assert_json_error(http("POST", canvas.url + "/upload", smudged), 400, "color")
    code, _, body = http("POST", canvas.url + "/upload?nearest=1", smudged)
    assert code == 200 and np.array_equal(decode(body), CITYSCAPES.ids_to_colors(ids))
    assert_json_error(http("POST", canvas.url + "/upload", b"hello"), 400, "png")


def test_page_examples_and_health(canvas):
    code, headers, body = http("GET", canvas.url + "/")
    assert code == 200 and b"/static/canvas.js" in body and headers["content-type"].startswith("text/html")
    code, _, body = http("GET", canvas.url + "/examples")
    names = json.loads(body)["examples"]
    assert "street_01.png" in names and not any("instance" in n for n in names)
    code, _, png = http("GET", canvas.url + "/examples/street_01.png")
    assert code == 200 and png.startswith(b"\x89PNG")
    code, _, body = http("GET", canvas.url + "/health")
    assert code == 200 and json.loads(body)["triton"] == "ready"


def test_random_street_is_the_served_layout_models_for_the_seed(canvas, client):
    """GET /random?seed=N: the label PNG random_layout draws for N (the same twice, another for another
    seed), which /upload then fits to the painter's canvas; a bad seed is a one-line 400."""
    code, headers, png = http("GET", canvas.url + "/random?seed=5")
    assert code == 200 and headers["content-type"] == "image/png", png
    served = client.infer("random_layout", {"SEED": np.array([[5]], np.int64)}, outputs=["LABELS_PNG"])
    assert png == bytes(served["LABELS_PNG"].reshape(-1)[0])
    assert http("GET", canvas.url + "/random?seed=5")[2] == png
    other = http("GET", canvas.url + "/random?seed=6")[2]
    ids = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert not np.array_equal(ids, cv2.imdecode(np.frombuffer(other, np.uint8), cv2.IMREAD_UNCHANGED))
    code, _, fitted = http("POST", canvas.url + "/upload", png)
    assert code == 200 and fitted.startswith(b"\x89PNG")
    assert_json_error(http("GET", canvas.url + "/random?seed=x"), 400, "seed")


def test_lost_triton_is_503_and_the_canvas_recovers_when_it_returns(canvas, triton):
    good = color_png(block_labels(5))
    triton.stop(drain=False)
    try:
        message = assert_json_error(http("POST", canvas.url + "/render?seed=1", good), 503, "unreachable")
        assert triton.grpc_url in message
        assert http("GET", canvas.url + "/health")[0] == 503
        assert http("GET", canvas.url + "/labels")[0] == 200  # what was read of the model is kept
    finally:
        triton.start()
    # the canvas finds the server again by itself (a fresh channel after a failure): poll, on no clock of ours
    deadline = time.monotonic() + 60
    while http("GET", canvas.url + "/health")[0] != 200:
        assert time.monotonic() < deadline, "the canvas did not find the restarted Triton within 60 s"
        time.sleep(0.2)
    code, _, photo = http("POST", canvas.url + "/render?seed=1", good)
    assert code == 200 and decode(photo).shape == (H, W, 3)

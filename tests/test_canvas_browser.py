"""The canvas page in a real Chromium (Debian's, driven by Playwright): ``cityserve canvas`` with the
tritonserver it starts itself (for a tiny SPADE with a style latent, exported here).
Paint two classes, see the photo change where they were painted, undo, upload bad files."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from _helpers_canvas import CanvasProcess, tiny_noise_spade_card
from _helpers_serving import H, W, png_bytes, tiny_layout_card

from cityserve.client import CityserveClient
from cityserve.labels import get_label_set, read_label_png, resize_nearest

pytestmark = [pytest.mark.triton, pytest.mark.timeout(400)]
CITYSCAPES = get_label_set("cityscapes")
SCALE = 512 // W  # the page shows the 64x128 map at 4x


def _browser_or_skip():
    from cityserve.canvas.browser import missing_reason

    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    pytest.importorskip("starlette", reason="starlette is not installed (pip install 'cityserve[canvas]')")


@pytest.fixture(scope="module")
def canvas(tmp_path_factory):
    """``cityserve canvas --model render.onnx``: the canvas starts its own tritonserver for the card."""
    from cityserve.export.onnx_export import export_onnx

    _browser_or_skip()
    root = tmp_path_factory.mktemp("canvas-browser")
    onnx = export_onnx(tiny_noise_spade_card(root), root / "exported")
    layout = tiny_layout_card(root / "layout")  # for the "random street" starting layout
    proc = CanvasProcess(["--model", str(onnx), "--model", str(layout.path)])
    proc.triton = re.search(r"tritonserver ready: gRPC (\S+),", "".join(proc.lines)).group(1)
    yield proc
    assert proc.stop() == 0, "".join(proc.lines)


@pytest.fixture(scope="module")
def page(canvas):
    from playwright.sync_api import sync_playwright

    from cityserve.canvas.browser import launch

    with sync_playwright() as p:
        browser = launch(p)
        pg = browser.new_page(viewport={"width": 1100, "height": 800}, accept_downloads=True)
        pg.set_default_timeout(120_000)  # a busy 2-core machine: waits end on events, not on time
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.goto(canvas.url + "/")
        pg.wait_for_function("document.body.dataset.ready === '1' && window.cityserveCanvas.renders >= 1")
        yield pg
        browser.close()
        assert not errors, errors


def renders(page) -> int:
    return page.evaluate("window.cityserveCanvas.renders")


def wait_photo(page, after: int) -> None:
    """Until a photo newer than ``after`` renders is on screen and nothing is in flight."""
    page.wait_for_function(
        f"window.cityserveCanvas.renders > {after} && window.cityserveCanvas.inFlight === null", timeout=60000
    )


def stroke(page, name: str, y: int, x0: int, x1: int) -> None:
    """Paint class ``name`` along model row ``y`` from column x0 to x1 (one drag of the mouse)."""
    page.click(f".swatch[data-name='{name}']")
    box = page.locator("#labels").bounding_box()
    at = lambda x: (box["x"] + (x + 0.5) * SCALE, box["y"] + (y + 0.5) * SCALE)
    n = renders(page)
    page.mouse.move(*at(x0))
    page.mouse.down()
    for x in range(x0, x1 + 1, 4):
        page.mouse.move(*at(x))
    page.mouse.up()
    wait_photo(page, n)


def download(page, button: str) -> bytes:
    with page.expect_download() as d:
        page.click(button)
    return open(d.value.path(), "rb").read()


def photo(page) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(download(page, "#download-photo"), np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (H, W, 3)
    return img.astype(int)


def test_palette_comes_from_the_server(page):
    names = page.eval_on_selector_all(".swatch", "els => els.map(e => e.dataset.name)")
    assert {"road", "building", "vegetation", "sky", "car"} <= set(names)
    assert "ego vehicle" not in names  # black reads back as "unlabeled": not separately paintable
    assert "rendered in" in page.inner_text("#status")


def test_paint_two_classes_see_the_photo_change_there_then_undo(page, canvas):
    before = photo(page)
    stroke(page, "vegetation", 16, 8, 56)
    stroke(page, "car", 46, 72, 120)
    labels = read_label_png(download(page, "#download-labels"), CITYSCAPES)
    assert labels.shape == (H, W)
    veg, car, unlabeled = CITYSCAPES["vegetation"].id, CITYSCAPES["car"].id, CITYSCAPES["unlabeled"].id
    assert (labels[14:19, 10:55] == veg).all() and (labels[44:49, 74:119] == car).all()
    assert (labels[28:36, :] == unlabeled).all() and (labels[:, :3] == unlabeled).all()
    assert set(np.unique(labels)) == {unlabeled, veg, car}
    after = photo(page)  # the preview on screen is a JPEG; the download is the same render as a PNG
    assert page.evaluate("window.cityserveCanvas.photoBlob.type") == "image/jpeg"
    assert {"triton", "total"} <= set(page.evaluate("window.cityserveCanvas.lastPhases.server"))
    seed = int(page.input_value("#seed"))
    with CityserveClient(canvas.triton, timeout=60) as client:  # the photo on screen is this label map's
        assert np.array_equal(after[..., ::-1], client.render(labels, seed=seed)[0])
    diff = np.abs(after - before).sum(-1)  # (a random-weight SPADE changes the rest too: its norms are global)
    assert diff[13:20, 10:54].mean() > 8 and diff[43:50, 74:118].mean() > 8

    n = renders(page)
    page.click("#undo")  # the car stroke goes, the vegetation stays
    wait_photo(page, n)
    labels = read_label_png(download(page, "#download-labels"), CITYSCAPES)
    assert (labels[44:49, 74:119] == unlabeled).all() and (labels[14:19, 10:55] == veg).all()
    n = renders(page)
    page.click("#redo")
    wait_photo(page, n)
    assert (read_label_png(download(page, "#download-labels"), CITYSCAPES)[44:49, 74:119] == car).all()

    # undo, redo, undo in one task: the first is sent, the redo waits and the last undo replaces it, so
    # two requests, both shown (none aborted); the photo on screen is the final map's
    sent, shown = page.evaluate("[window.cityserveCanvas.seq, window.cityserveCanvas.renders]")
    page.evaluate("['undo', 'redo', 'undo'].forEach(id => document.getElementById(id).click())")
    page.wait_for_function("window.cityserveCanvas.inFlight === null && window.cityserveCanvas.pending === null")
    sent2, shown2 = page.evaluate("[window.cityserveCanvas.seq, window.cityserveCanvas.renders]")
    assert sent2 - sent == 2 and shown2 - shown == 2
    labels = read_label_png(download(page, "#download-labels"), CITYSCAPES)
    assert (labels[44:49, 74:119] == unlabeled).all() and (labels[14:19, 10:55] == veg).all()
    with CityserveClient(canvas.triton, timeout=60) as client:
        assert np.array_equal(photo(page)[..., ::-1], client.render(labels, seed=seed)[0])


def test_a_bad_upload_shows_its_message_and_off_palette_colors_can_be_snapped(page):
    page.set_input_files("#upload", files=[{"name": "notes.png", "mimeType": "image/png", "buffer": b"hello"}])
    page.wait_for_selector("#message:not([hidden])")
    text = page.inner_text("#message-text")
    assert "notes.png" in text and "not a png" in text.lower()
    assert page.is_hidden("#snap")
    page.click("#dismiss")

    ids = np.full((H, W), CITYSCAPES["road"].id, np.uint8)
    ids[:, W // 2 :] = CITYSCAPES["sky"].id
    colors = CITYSCAPES.ids_to_colors(ids).astype(int)
    colors[::3, ::3] += 2  # anti-aliased edges: a little off the palette
    smudged = png_bytes(np.clip(colors, 0, 255).astype(np.uint8))
    page.set_input_files("#upload", files=[{"name": "aa.png", "mimeType": "image/png", "buffer": smudged}])
    page.wait_for_selector("#snap:not([hidden])")
    assert "color" in page.inner_text("#message-text").lower()
    n = renders(page)
    page.click("#snap")
    wait_photo(page, n)
    assert page.is_hidden("#message")
    assert np.array_equal(read_label_png(download(page, "#download-labels"), CITYSCAPES), ids)


def test_starting_layout_loads(page):
    n = renders(page)
    page.select_option("#layouts", "street_01.png")
    wait_photo(page, n)
    labels = read_label_png(download(page, "#download-labels"), CITYSCAPES)
    street = read_label_png(Path(__file__).resolve().parents[1] / "examples" / "street_01.png", CITYSCAPES)
    assert np.array_equal(labels, resize_nearest(street, H, W))


def test_random_street_loads_the_layout_models_street_for_the_seed(page, canvas):
    """The "random street" starting layout: the layout the served random_layout model draws for the
    page's style seed, fitted (nearest) to the canvas."""
    import cv2

    from cityserve.client import CityserveClient

    page.fill("#seed", "7")
    n = renders(page)
    page.select_option("#layouts", index=1)  # the first option after the placeholder
    wait_photo(page, n)
    labels = read_label_png(download(page, "#download-labels"), CITYSCAPES)
    with CityserveClient(canvas.triton, timeout=30) as c:
        png = c.infer("random_layout", {"SEED": np.array([[7]], np.int64)}, outputs=["LABELS_PNG"])["LABELS_PNG"]
    ids = cv2.imdecode(np.frombuffer(bytes(png.reshape(-1)[0]), np.uint8), cv2.IMREAD_UNCHANGED)
    # compared as colours: the page paints by colour, and ids sharing one (static and unlabeled) read back as one
    colors = CITYSCAPES.ids_to_colors(resize_nearest(ids, H, W).astype(np.int64))
    assert np.array_equal(CITYSCAPES.ids_to_colors(labels.astype(np.int64)), colors)
    assert len(np.unique(labels)) >= 3  # a street, not a blank canvas

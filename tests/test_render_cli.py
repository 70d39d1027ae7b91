"""``cityserve render`` and the torch engine: official fixtures through import + render, tiny models
end to end (color / id PNGs, instances, seeds, style images), and clean refusals."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from _helpers_spade import contract_uint8, load_pt, tiny_card, tiny_config

from cityserve.cards import load_card
from cityserve.cli import main
from cityserve.engines.base import Renderer
from cityserve.engines.torch_engine import TorchEngine
from cityserve.errors import ConfigError, UnavailableError
from cityserve.labels import write_color_png, write_id_png
from cityserve.models.spade_style import encode_style, load_encoder

FIXTURES = {  # name -> (label set, size, extra import flags)
    "cityscapes_ngf2": ("cityscapes", "256x512", ["--upsampling", "normal"]),
    "ade20k_ngf2": ("ade20k", "256x256", []),
    "ade20k_more_vae_ngf2": ("ade20k", "256x256", []),
}


def cli(*argv: str) -> int:
    return main([str(a) for a in argv])


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def write_fixture_labels(fixtures_dir: Path, name: str, path: Path) -> None:
    """The fixture's channel indices as the dataset's own id PNG (what users have)."""
    ids = load_pt(fixtures_dir, name, "labels")[0, 0].numpy()
    if name.startswith("ade20k"):  # ADEChallenge annotations: class k is stored as k+1, 'other' (150) as 0
        ids = np.where(ids == 150, 0, ids + 1)
    assert cv2.imwrite(str(path), ids.astype(np.uint8))  # Cityscapes *_labelIds.png: as they are


@pytest.fixture(scope="module")
def imported(fixtures_dir, tmp_path_factory):
    """Each fixture imported with the CLI (module-wide: import once, render in several tests)."""
    root = tmp_path_factory.mktemp("imported")
    cards = {}
    for name, (label_set, size, extra) in FIXTURES.items():
        args = [
            "import",
            "spade",
            fixtures_dir / "spade" / f"{name}_netG.pth",
            "--label-set",
            label_set,
            "--size",
            size,
            "--out",
            root / name,
            *extra,
        ]
        if "vae" in name:
            args += ["--netE", fixtures_dir / "spade" / f"{name}_netE.pth"]
        assert cli(*args) == 0
        cards[name] = root / name
    return cards


@pytest.mark.parametrize("name", list(FIXTURES))
def test_fixture_through_import_and_render_cli(fixtures_dir, imported, tmp_path, name):
    labels = tmp_path / "labels.png"
    write_fixture_labels(fixtures_dir, name, labels)
    args = ["render", labels, "--model", imported[name], "--out", tmp_path / "photo.png"]
    if name.startswith("cityscapes"):
        inst = load_pt(fixtures_dir, name, "instance")[0, 0].numpy()
        assert inst.max() < 65536
        cv2.imwrite(str(tmp_path / "inst.png"), inst.astype(np.uint16))  # like *_instanceIds.png
        args += ["--instances", tmp_path / "inst.png"]
    if "vae" in name:
        args += ["--z", fixtures_dir / "spade" / f"{name}_z.pt"]
    assert cli(*args) == 0
    photo = cv2.imread(str(tmp_path / "photo.png"), cv2.IMREAD_UNCHANGED)[..., ::-1]
    expected = contract_uint8(load_pt(fixtures_dir, name, "output"))
    assert photo.dtype == np.uint8 and photo.shape == expected.shape
    diff = np.abs(photo.astype(int) - expected.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_fixture_through_renderer_api_default_upsampling(fixtures_dir, tmp_path):
    """Cityscapes imported without --upsampling gets the official default 'more'; the Renderer API
    then reproduces the 'more' output."""
    name = "cityscapes_ngf2"
    assert (
        cli(
            "import",
            "spade",
            fixtures_dir / "spade" / f"{name}_netG.pth",
            "--label-set",
            "cityscapes",
            "--size",
            "256x512",
            "--out",
            tmp_path,
        )
        == 0
    )
    renderer = Renderer.from_card(str(tmp_path))
    assert renderer.card.config["num_upsampling_layers"] == "more"
    labels = load_pt(fixtures_dir, name, "labels").numpy()
    instances = load_pt(fixtures_dir, name, "instance").numpy()
    photo = renderer.render(labels, instances)
    expected = contract_uint8(load_pt(fixtures_dir, name, "output_more"))
    assert photo.shape == (1, 256, 512, 3)
    assert np.abs(photo[0].astype(int) - expected.astype(int)).max() <= 1


# ---- tiny random models ---------------------------------------------------------------------------

STREET_IDS = [7, 8, 11, 21, 23, 26]  # road, sidewalk, building, vegetation, sky, car: distinct colors


def street_ids(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    block = rng.choice(STREET_IDS, size=(h // 8, w // 8))
    return np.kron(block, np.ones((8, 8), dtype=np.int64)).astype(np.uint8)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    cs = tiny_card(root / "cs", tiny_config(label_nc=35, crop_size=64, aspect_ratio=2.0), "cityscapes", "cs")
    vae_cfg = tiny_config(
        label_nc=150,
        contain_dontcare_label=True,
        no_instance=True,
        use_vae=True,
        z_dim=8,
        crop_size=64,
        aspect_ratio=2.0,
    )
    vae = tiny_card(root / "vae", vae_cfg, "ade20k", "vae", encoder=True, seed=7)
    return {"cs": cs, "vae": vae, "root": root}


def read_png(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)[..., ::-1]


def test_render_end_to_end_tiny_model(tiny, tmp_path):
    ids = street_ids(32, 64)
    write_color_png(tmp_path / "color.png", ids, "cityscapes")
    write_id_png(tmp_path / "ids.png", ids, "cityscapes")
    inst = ids.astype(np.int32)
    cars = ids == 26
    inst[cars] = 26000 + np.arange(cars.sum()) % 3  # car instances: edges inside the car regions
    cv2.imwrite(str(tmp_path / "inst.png"), inst.astype(np.uint16))
    assert cli("render", tmp_path / "color.png", "--model", tiny["cs"], "--out", tmp_path / "a.png") == 0
    assert cli("render", tmp_path / "ids.png", "--model", tiny["cs"], "--out", tmp_path / "b.png") == 0
    assert (
        cli(
            "render",
            tmp_path / "ids.png",
            "--model",
            tiny["cs"],
            "--out",
            tmp_path / "c.png",
            "--instances",
            tmp_path / "inst.png",
        )
        == 0
    )
    a, b, c = (read_png(tmp_path / f"{k}.png") for k in "abc")
    assert a.shape == (32, 64, 3) and a.dtype == np.uint8 and a.std() > 5
    assert np.array_equal(a, b)  # color PNG and id PNG are the same label map
    api = Renderer.from_card(str(tiny["cs"])).render(ids)[0]
    assert np.array_equal(a, api)  # CLI == API (no instances: class boundaries are the edges)
    api_inst = Renderer.from_card(str(tiny["cs"])).render(ids, inst)[0]
    assert np.array_equal(c, api_inst) and not np.array_equal(c, a)


def test_render_resizes_other_sizes_with_nearest(tiny, tmp_path, capsys):
    ids = street_ids(32, 64)
    big = np.kron(ids, np.ones((2, 2), dtype=np.uint8))  # the same map at 64x128
    write_id_png(tmp_path / "big.png", big, "cityscapes")
    assert cli("render", tmp_path / "big.png", "--model", tiny["cs"], "--out", tmp_path / "o.png") == 0
    assert "resized with nearest neighbour" in capsys.readouterr().err
    expected = Renderer.from_card(str(tiny["cs"])).render(ids)[0]
    assert np.array_equal(read_png(tmp_path / "o.png"), expected)  # nearest 2x down = the original ids


def test_render_vae_seed_style_and_latent(tiny, tmp_path, capsys):
    ids = np.full((32, 64), 150, np.uint8)  # ADE20K 'other' ...
    ids[16:, :] = 6  # ... over road
    write_id_png(tmp_path / "l.png", ids, "ade20k")
    out = lambda k: tmp_path / f"{k}.png"
    for key, extra in [("s3", ["--seed", 3]), ("s3b", ["--seed", 3]), ("s4", ["--seed", 4])]:
        assert cli("render", tmp_path / "l.png", "--model", tiny["vae"], "--out", out(key), *extra) == 0
    assert np.array_equal(read_png(out("s3")), read_png(out("s3b")))
    assert not np.array_equal(read_png(out("s3")), read_png(out("s4")))
    # --style: the encoder's mu, deterministic, equal to the API path
    style = (np.random.default_rng(1).random((48, 80, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "style.png"), style[..., ::-1])
    assert (
        cli("render", tmp_path / "l.png", "--model", tiny["vae"], "--out", out("st"), "--style", tmp_path / "style.png")
        == 0
    )
    assert (
        cli(
            "render", tmp_path / "l.png", "--model", tiny["vae"], "--out", out("st2"), "--style", tmp_path / "style.png"
        )
        == 0
    )
    card = load_card(tiny["vae"])
    z = encode_style(load_encoder(card), style, card.height, card.width)
    assert z.shape == (1, 8)
    api = Renderer(card).render(ids, z=z)[0]
    assert np.array_equal(read_png(out("st")), api) and np.array_equal(read_png(out("st2")), api)
    # --z: a saved latent
    np.save(tmp_path / "z.npy", z)
    assert cli("render", tmp_path / "l.png", "--model", tiny["vae"], "--out", out("z"), "--z", tmp_path / "z.npy") == 0
    assert np.array_equal(read_png(out("z")), api)
    capsys.readouterr()
    # style on a model without VAE is refused
    write_id_png(tmp_path / "cs.png", street_ids(32, 64), "cityscapes")
    assert (
        cli("render", tmp_path / "cs.png", "--model", tiny["cs"], "--out", out("x"), "--style", tmp_path / "style.png")
        == 2
    )
    assert "not a VAE model" in one_line_error(capsys)


def test_render_accepts_id_34_for_35_channel_cityscapes(tiny, tmp_path):
    ids = street_ids(32, 64)
    ids[:4, :4] = 34  # not a Cityscapes dataset id, but official models have channel 34
    cv2.imwrite(str(tmp_path / "l.png"), ids)
    assert cli("render", tmp_path / "l.png", "--model", tiny["cs"], "--out", tmp_path / "o.png") == 0


@pytest.mark.parametrize(
    "case,message",
    [
        ("id35", "id 35 at 16 pixels is out of range"),
        ("color", "not in label set"),
        ("size", "16x64 but the model renders 32x64"),
        ("corrupt", "not a readable PNG"),
        ("out", "PNG"),
        ("nomodel", "does not exist"),
    ],
)
def test_render_refuses_bad_input(tiny, tmp_path, capsys, case, message):
    ids = street_ids(32, 64)
    labels = tmp_path / "l.png"
    out, model = tmp_path / "o.png", tiny["cs"]
    if case == "id35":
        ids[:4, :4] = 35
        cv2.imwrite(str(labels), ids)
    elif case == "color":
        rgb = write_color_png(None, ids, "cityscapes")
        img = cv2.imdecode(np.frombuffer(rgb, np.uint8), cv2.IMREAD_COLOR)
        img[0, 0] = (1, 2, 3)
        cv2.imwrite(str(labels), img)
    elif case == "size":
        cv2.imwrite(str(labels), ids[:16])
    elif case == "corrupt":
        labels.write_bytes(write_id_png(None, ids, "cityscapes")[:40])
    else:
        cv2.imwrite(str(labels), ids)
        if case == "out":
            out = tmp_path / "o.jpg"
        else:
            model = tmp_path / "nothing_here"
    assert cli("render", labels, "--model", model, "--out", out) == 2
    assert message in one_line_error(capsys)
    assert not out.exists()


def test_render_detects_changed_weights(tiny, tmp_path, capsys):
    import shutil

    shutil.copytree(Path(tiny["cs"]).parent, tmp_path / "m")
    card = load_card(tmp_path / "m")
    data = bytearray(card.weights_path.read_bytes())
    data[len(data) // 2] ^= 0x01
    card.weights_path.write_bytes(bytes(data))
    cv2.imwrite(str(tmp_path / "l.png"), street_ids(32, 64))
    assert cli("render", tmp_path / "l.png", "--model", tmp_path / "m", "--out", tmp_path / "o.png") == 2
    assert "sha256" in one_line_error(capsys)


def test_torch_engine(tiny):
    card = load_card(tiny["cs"])
    engine = TorchEngine(card)
    assert engine.input_names == ["labels", "instances"]
    ids = street_ids(32, 64)[None, None]
    feeds = {"labels": ids, "instances": ids.astype(np.int32)}
    out = engine.run(feeds)
    assert out.dtype == np.uint8 and out.shape == (1, 32, 64, 3)
    batch = engine.run({k: np.concatenate([v, v]) for k, v in feeds.items()})
    assert np.array_equal(batch[0], out[0]) and np.array_equal(batch[1], out[0])
    with pytest.raises(ConfigError, match="unexpected input"):
        engine.run({**feeds, "z": np.zeros((1, 4), np.float32)})
    half = TorchEngine(card, dtype="bfloat16").run(feeds)
    assert np.abs(half.astype(int) - out.astype(int)).mean() < 8
    if not torch.cuda.is_available():
        with pytest.raises(UnavailableError, match="CUDA"):
            TorchEngine(card, device="cuda")

"""pix2pix: official junyanz checkpoints load as they are and reproduce the official outputs; import
command, card, render graph (color and one-hot label input), and the errors users see."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cityserve.checkpoints import safe_load
from cityserve.cli import main
from cityserve.errors import CheckpointError, ConfigError
from cityserve.models.pix2pix import (
    NLayerDiscriminator,
    Pix2PixConfig,
    UnetGenerator,
    build_discriminator,
    build_generator,
)

ATOL = 1e-4


@pytest.fixture(scope="module")
def p2p(fixtures_dir):
    d = fixtures_dir / "pix2pix"
    load = lambda name: torch.load(d / name, map_location="cpu", weights_only=True)
    return {
        "dir": d,
        "G": d / "unet256_ngf16_latest_net_G.pth",
        "G_in": load("unet256_ngf16_input.pt"),
        "G_out": load("unet256_ngf16_output.pt"),
        "D": d / "patchgan_ndf64_latest_net_D.pth",
        "D_in": load("patchgan_ndf64_input.pt"),
        "D_out": load("patchgan_ndf64_output.pt"),
    }


def test_official_unet256_generator_reproduces_fixture(p2p):
    g = UnetGenerator(input_nc=3, output_nc=3, num_downs=8, ngf=16, norm="batch", use_dropout=True)
    g.load_state_dict(safe_load(p2p["G"]), strict=True)
    g.eval()
    with torch.no_grad():
        y = g(p2p["G_in"])
    assert y.shape == p2p["G_out"].shape == (1, 3, 256, 256)
    torch.testing.assert_close(y, p2p["G_out"], atol=ATOL, rtol=0)


def test_official_patchgan_reproduces_fixture(p2p):
    d = NLayerDiscriminator(input_nc=6, ndf=64, n_layers=3, norm="batch")
    d.load_state_dict(safe_load(p2p["D"]), strict=True)
    d.eval()
    with torch.no_grad():
        y = d(p2p["D_in"])
    assert y.shape == (1, 1, 30, 30)  # 70x70 receptive field patches of a 256x256 pair
    torch.testing.assert_close(y, p2p["D_out"], atol=ATOL, rtol=0)


def test_config_builders_match_official_shapes():
    cfg = Pix2PixConfig(label_nc=35, input_mode="onehot", ngf=4, ndf=4)
    g, d = build_generator(cfg), build_discriminator(cfg)
    assert g.model.model[0].in_channels == 35
    assert d.model[0].in_channels == 35 + 3  # conditional D sees cat(A, B)
    color = Pix2PixConfig(label_nc=35, input_mode="color")
    assert color.input_nc == 3 and color.num_downs == 8
    with pytest.raises(ConfigError, match="input_mode"):
        Pix2PixConfig(label_nc=35, input_mode="rgb")
    x = torch.randn(2, 35, 256, 256)
    g.eval()
    with torch.no_grad():
        y = g(x)
    assert y.shape == (2, 3, 256, 256) and y.abs().max() <= 1


def test_import_color_model_card_and_render_graph(p2p, tmp_path):
    from cityserve.cards import load_card
    from cityserve.labels import get_label_set
    from cityserve.models.registry import build_from_card, render_io
    from cityserve.models.render import render_graph_from_card

    assert (
        main(
            [
                "import",
                "pix2pix",
                str(p2p["G"]),
                "--label-set",
                "cityscapes",
                "--size",
                "256x256",
                "--input",
                "color",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    card = load_card(tmp_path)
    assert (card.kind, card.arch, card.label_set, card.height, card.width) == (
        "generator",
        "pix2pix",
        "cityscapes",
        256,
        256,
    )
    assert card.config["ngf"] == 16 and card.config["netG"] == "unet_256" and card.config["norm"] == "batch"
    ls = get_label_set("cityscapes")
    io = render_io(card)
    assert (io.input_mode, io.num_classes, io.use_instance, io.z_dim) == ("color", ls.num_ids, False, 0)
    # weights file keeps the official keys
    assert list(safe_load(card.weights_path))[:2] == ["model.model.0.weight", "model.model.1.model.1.weight"]

    g = build_from_card(card)
    with torch.no_grad():
        torch.testing.assert_close(g(p2p["G_in"]), p2p["G_out"], atol=ATOL, rtol=0)

    # render graph: ids -> palette colors in [-1, 1] -> G -> uint8, against a hand computation
    rng = np.random.default_rng(0)
    ids = rng.integers(0, ls.num_ids, size=(1, 1, 256, 256)).astype(np.uint8)
    colors = torch.from_numpy(ls.palette[ids[:, 0]].astype(np.float32)).permute(0, 3, 1, 2) / 127.5 - 1
    with torch.no_grad():
        img = render_graph_from_card(card)(torch.from_numpy(ids)).numpy()
        y = g(colors)
    expect = torch.clamp(torch.round((y + 1) * 127.5), 0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert img.dtype == np.uint8 and img.shape == (1, 256, 256, 3)
    np.testing.assert_array_equal(img, expect)


def _save_official_unet(path, input_nc, ngf=2, seed=0, norm="batch"):
    torch.manual_seed(seed)
    g = UnetGenerator(input_nc, 3, 8, ngf, norm=norm)
    torch.save(g.state_dict(), path)
    return g


def test_import_onehot_model_infers_channels_and_checks_options(tmp_path):
    from cityserve.cards import load_card
    from cityserve.models.registry import render_io

    src = tmp_path / "latest_net_G.pth"
    _save_official_unet(src, input_nc=35, ngf=2, norm="instance")
    assert main(["import", "pix2pix", str(src), "--label-set", "cityscapes", "--out", str(tmp_path / "a")]) == 0
    card = load_card(tmp_path / "a")
    assert card.config["input_mode"] == "onehot" and card.config["label_nc"] == 35
    assert card.config["norm"] == "instance" and card.config["ngf"] == 2
    assert render_io(card).num_classes == 35

    from cityserve.importing.pix2pix import import_pix2pix

    with pytest.raises(ConfigError, match="--input color needs 3"):
        import_pix2pix(src, "cityscapes", (256, 256), "color", tmp_path / "b")
    with pytest.raises(ConfigError, match="multiples of 256"):
        import_pix2pix(src, "cityscapes", (256, 300), "onehot", tmp_path / "b")
    small = tmp_path / "small.pth"
    _save_official_unet(small, input_nc=10)
    with pytest.raises(ConfigError, match="fewer than the"):
        import_pix2pix(small, "cityscapes", (256, 256), "onehot", tmp_path / "b")


def test_import_rejects_truncated_and_foreign_files(p2p, tmp_path, capsys):
    bad = tmp_path / "latest_net_G.pth"
    bad.write_bytes(p2p["G"].read_bytes()[:200_000])
    assert main(["import", "pix2pix", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:") and str(bad) in err and "truncated" in err
    assert not (tmp_path / "o").exists()

    with pytest.raises(CheckpointError, match="not a pix2pix U-Net"):
        from cityserve.importing.pix2pix import import_pix2pix

        import_pix2pix(p2p["D"], "cityscapes", (256, 256), None, tmp_path / "o")


def test_import_help_teaches(capsys):
    with pytest.raises(SystemExit):
        main(["import", "pix2pix", "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and "--input" in out and "latest_net_G.pth" in out

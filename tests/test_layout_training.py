"""Layout GAN training (train/layouts.py): both architectures learn on tiny label maps, a run stopped and
resumed equals one that was never interrupted, and the card is a layout card that rebuilds the generator."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from _helpers_training import REPO, TinyScenes, write_paired

from cityserve.cards import load_card
from cityserve.checkpoints import safe_load
from cityserve.errors import CheckpointError
from cityserve.labels.snapping import logits_to_ids
from cityserve.training.runner import RunConfig, Runner, state_files


def entry():
    spec = importlib.util.spec_from_file_location("train_entry_layouts", REPO / "train" / "layouts.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_paired(tmp_path_factory.mktemp("layout_data") / "p32", 4, 32, 64)


COMMON = [
    "--preset",
    "tiny",
    "--data",
    "paired",
    "--no-tensorboard",
    "--no-progress",
    "--threads",
    "1",
    "--log-every",
    "1",
]


def args_for(arch, data, out, steps, *more):
    return [*COMMON, "--arch", arch, "--root", str(data), "--out", str(out), "--max-steps", str(steps), *more]


@pytest.mark.parametrize("arch", ["stylegan2", "dcgan"])
def test_trainer_steps_move_losses_and_weights(arch, tmp_path):
    from cityserve.training.layout_trainer import PRESETS, LayoutTrainer

    preset = PRESETS["tiny"]
    import dataclasses

    r = Runner(RunConfig(out=tmp_path, max_steps=1, progress=False, tensorboard=False, precision="fp32", threads=1))
    t = LayoutTrainer(r, dataclasses.replace(preset.model, arch=arch), "cityscapes", preset.train, (32, 64))
    ds = TinyScenes(2, 32, 64)
    batch = {"labels": torch.stack([ds[i]["labels"] for i in range(2)])}
    g0 = {k: v.clone() for k, v in t.G.state_dict().items()}
    t.train()
    hist = [{k: float(v) for k, v in t.train_step(batch, s).items()} for s in range(1, 5)]
    assert all(np.isfinite(v) for h in hist for v in h.values())
    assert len({round(h["G_adv"], 6) for h in hist}) > 1 and len({round(h["D_real"], 6) for h in hist}) > 1
    if arch == "stylegan2":
        assert "D_r1" in hist[1] and hist[1]["D_r1"] >= 0  # r1_every 2 in the tiny preset
    changed = [k for k, v in t.G.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, g0[k])]
    assert changed
    label_rgb, soft, real_rgb = t.last_visuals
    assert label_rgb.shape == soft.shape == real_rgb.shape == (2, 3, 32, 64)


@pytest.mark.parametrize("arch", ["stylegan2", "dcgan"])
def test_resume_equals_uninterrupted_run(arch, data, tmp_path):
    main = entry().main
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(args_for(arch, data, a, 4, "--save-every", "2")) == 0
    assert main(args_for(arch, data, b, 4, "--save-every", "2", "--stop-at", "2")) == 0
    assert [s for s, _ in state_files(b)] == [2]
    assert main(args_for(arch, data, b, 4, "--save-every", "2", "--resume")) == 0
    sa, sb = (
        safe_load(a / "state" / "step_00000004.pt")["modules"],
        safe_load(b / "state" / "step_00000004.pt")["modules"],
    )
    assert sa.keys() == sb.keys()
    for m in sa:
        for k in sa[m]:
            assert torch.equal(sa[m][k], sb[m][k]), f"{m}.{k} differs"
    card_a, card_b = load_card(a), load_card(b)
    assert card_a.sha256 == card_b.sha256
    card_b.verify()
    assert card_b.kind == "layout" and card_b.arch == f"layout-{arch}" and card_b.layout.z_dim == 8
    # the card rebuilds the generator, which gives valid ids for a seed, the same for the same seed
    from cityserve.models.layout_sample import layout_generator_from_card, sample_logits

    G = layout_generator_from_card(card_b)
    l1, l2 = sample_logits(G, card_b, [3, 4]), sample_logits(G, card_b, [3])
    assert l1.shape == (2, 34, 32, 64) and torch.equal(l1[:1], l2)  # Cityscapes ids 0..33
    ids = logits_to_ids(l1.numpy(), 34)
    assert ids.shape == (2, 32, 64) and ids.max() < 34


def test_layout_section_is_checked(tmp_path):
    from cityserve.card_sections import LayoutSection
    from cityserve.cards import ModelCard

    base = dict(name="x", kind="layout", arch="layout-dcgan", config={}, label_set="cityscapes", height=32, width=64)
    d = ModelCard(**base, layout=LayoutSection(z_dim=8)).to_dict()
    assert ModelCard.from_dict(d).layout == LayoutSection(z_dim=8)
    for bad in (
        {"z_dim": 0},
        {"z_dim": 8, "truncation_psi": "0.7"},
        {"z_dim": 8, "noise_mode": "x"},
        {"z_dim": 8, "oops": 1},
    ):
        with pytest.raises(CheckpointError, match="layout"):
            ModelCard.from_dict({**d, "layout": bad})
    with pytest.raises(CheckpointError, match="layout"):
        ModelCard(**base)  # a layout card without its section
    assert "layout" not in ModelCard(**{**base, "kind": "generator"}).to_dict()


@pytest.fixture(scope="module")
def layout_card(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("layout_run")
    assert entry().main(args_for("stylegan2", data, out, 2, "--truncation-psi", "0.7", "--min-area", "3")) == 0
    card = load_card(out)
    assert card.layout.truncation_psi == 0.7 and card.layout.min_area == 3
    return card


def test_generate_writes_layout_pngs_same_for_same_seed(layout_card, tmp_path, capsys):
    from cityserve.cli import main as cli
    from cityserve.labels import get_label_set, read_label_png

    a, b = tmp_path / "a", tmp_path / "b"
    assert (
        cli(["generate", "--layout-model", str(layout_card.path), "--seed", "5", "--count", "2", "--out", str(a)]) == 0
    )
    assert cli(["generate", "--layout-model", str(layout_card.path), "--seed", "6", "--out", str(b)]) == 0
    import cv2

    ids6 = cv2.imread(str(a / "seed_6_labelIds.png"), cv2.IMREAD_UNCHANGED)
    assert ids6.dtype == np.uint8 and ids6.shape == (32, 64) and ids6.max() < 35
    assert np.array_equal(ids6, cv2.imread(str(b / "seed_6_labelIds.png"), cv2.IMREAD_UNCHANGED))
    colors = read_label_png(a / "seed_6_color.png", "cityscapes")
    pal = get_label_set("cityscapes").palette
    assert np.array_equal(pal[colors], pal[ids6])  # the colour PNG is the same layout
    inst = cv2.imread(str(a / "seed_6_instanceIds.png"), cv2.IMREAD_UNCHANGED)
    assert inst.dtype == np.uint16 and np.array_equal(np.where(inst >= 1000, inst // 1000, inst), ids6)
    # the photo through a SPADE card (64x128: the 32x64 layout is resized with nearest neighbour)
    from _helpers_serving import tiny_spade_card

    spade = tiny_spade_card(tmp_path / "spade")
    c = tmp_path / "c"
    assert (
        cli(
            [
                "generate",
                "--layout-model",
                str(layout_card.path),
                "--seed",
                "6",
                "--photo-model",
                str(spade.path),
                "--out",
                str(c),
            ]
        )
        == 0
    )
    photo = cv2.imread(str(c / "seed_6_photo.png"))
    assert photo.shape == (64, 128, 3) and photo.std() > 0
    # bad input: one line, exit 2
    assert (
        cli(["generate", "--layout-model", str(layout_card.path), "--seed", "1", "--truncation", "5", "--out", str(a)])
        == 2
    )
    assert "truncation" in capsys.readouterr().err


def test_onnx_export_matches_torch(layout_card, tmp_path):
    from cityserve.export.layout_onnx import export_layout_onnx, layout_graph_from_card, run_layout_onnx
    from cityserve.models.layout_sample import seed_latents

    path = export_layout_onnx(layout_card, tmp_path / "layout.onnx")
    z = seed_latents([0, 1, 2], layout_card.layout.z_dim)
    ref = layout_graph_from_card(layout_card)(z).numpy()
    got = run_layout_onnx(path, z.numpy())
    assert got.shape == (3, 1, 32, 64) and got.dtype == np.uint8
    assert (got == ref).mean() > 0.999  # argmax ties aside, the same ids


def test_photo_mode_steps_move_losses_on_rgb(tmp_path):
    """--target photos: the same StyleGAN2 with 3 RGB outputs; D is fed the photos, not one-hot maps."""
    import dataclasses

    from cityserve.training.layout_trainer import PRESETS, LayoutModelConfig, LayoutTrainer

    preset = PRESETS["tiny"]
    r = Runner(RunConfig(out=tmp_path, max_steps=1, progress=False, tensorboard=False, precision="fp32", threads=1))
    t = LayoutTrainer(r, dataclasses.replace(preset.model, target="photos"), "cityscapes", preset.train, (32, 64))
    assert t.D.fromlogits.in_channels == 3
    ds = TinyScenes(2, 32, 64)
    batch = {k: torch.stack([ds[i][k] for i in range(2)]) for k in ("labels", "image")}
    t.train()
    hist = [{k: float(v) for k, v in t.train_step(batch, s).items()} for s in range(1, 5)]
    assert all(np.isfinite(v) for h in hist for v in h.values())
    assert len({round(h["G_adv"], 6) for h in hist}) > 1 and len({round(h["D_real"], 6) for h in hist}) > 1
    assert t.G(torch.randn(2, 8)).shape == (2, 3, 32, 64)
    fake, fake2, real = t.last_visuals
    assert fake.shape == real.shape == (2, 3, 32, 64)
    assert torch.allclose(real, (batch["image"] + 1) / 2)  # the real photos, not a label colouring
    with pytest.raises(Exception, match="stylegan2"):
        LayoutModelConfig(arch="dcgan", target="photos")


def test_photo_mode_resume_card_and_loader(data, tmp_path, capsys):
    from cityserve.cli import main as cli
    from cityserve.models.layout_sample import layout_generator_from_card
    from cityserve.models.photo_gan import photo_generator_from_card, sample_photos

    main = entry().main
    a, b = tmp_path / "a", tmp_path / "b"
    more = ("--target", "photos", "--save-every", "1")
    assert main(args_for("stylegan2", data, a, 2, *more)) == 0
    assert main(args_for("stylegan2", data, b, 2, *more, "--stop-at", "1")) == 0
    assert main(args_for("stylegan2", data, b, 2, *more, "--resume")) == 0
    sa, sb = (safe_load(d / "state" / "step_00000002.pt")["modules"] for d in (a, b))
    for m in sa:
        for k in sa[m]:
            assert torch.equal(sa[m][k], sb[m][k]), f"{m}.{k} differs"
    card = load_card(b)
    assert card.sha256 == load_card(a).sha256
    assert card.kind == "photo-gan" and card.arch == "photo-stylegan2" and card.layout is None
    G = photo_generator_from_card(card)
    p1, p2 = sample_photos(G, [3, 4]), sample_photos(G, [3])
    assert p1.shape == (2, 32, 64, 3) and p1.dtype == np.uint8 and np.array_equal(p1[:1], p2)
    assert not np.array_equal(p1[0], p1[1])
    # the layout paths refuse it with a clear error
    with pytest.raises(CheckpointError, match="not a layout generator"):
        layout_generator_from_card(card)
    assert cli(["generate", "--layout-model", str(card.path), "--seed", "1", "--out", str(tmp_path / "g")]) == 2
    assert "not a layout generator" in capsys.readouterr().err
    from cityserve.errors import ConfigError
    from cityserve.serving.sources import resolve_source

    with pytest.raises(ConfigError, match="neither 'generator' nor 'segmenter'"):
        resolve_source(card.path, tmp_path / "serve")

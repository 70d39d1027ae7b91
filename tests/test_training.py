"""Training: losses, the multiscale discriminator, the three trainers learning on a fixed batch,
kill-and-resume = uninterrupted (bit-exact on CPU), the NaN guard, torchrun with two gloo processes,
fine-tuning an imported official checkpoint, and cards that render as they are."""

from __future__ import annotations

import importlib.util
import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from _helpers_training import REPO, TinyScenes, env_1thread, train_cmd, write_paired

from cityserve.cards import load_card
from cityserve.checkpoints import safe_load
from cityserve.cliutil import parse_seeds, parse_size
from cityserve.errors import CheckpointError, ConfigError
from cityserve.training import losses as L
from cityserve.training.discriminators import MultiscaleDConfig, MultiscaleDiscriminator
from cityserve.training.runner import RunConfig, Runner, state_files


def entry(name: str):
    spec = importlib.util.spec_from_file_location(f"train_entry_{name}", REPO / "train" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return {
        "32x64": write_paired(root / "p32", 3, 32, 64),
        "64x128": write_paired(root / "p64", 3, 64, 128),
        "128x128": write_paired(root / "p128", 3, 128, 128),
    }


# (script, size, extra args) of a tiny run of each trainer
RUNS = {
    "spade": ("spade", "32x64", ["--preset", "tiny"]),
    "oasis": (
        "spade",
        "64x128",
        [
            "--preset",
            "tiny",
            "--size",
            "64x128",
            "--objective",
            "oasis",
            "--num-res-blocks-D",
            "5",
            "--noise-dim",
            "2",
            "--ema-decay",
            "0.9",
            "--norm-G",
            "spectralspadeinstance1x1",
            "--nhidden",
            "4",
        ],
    ),
    "pix2pix": ("pix2pix", "128x128", ["--preset", "tiny"]),
    "segmenter": ("segmenter", "64x128", ["--preset", "tiny", "--size", "64x128"]),
}
COMMON = ["--data", "paired", "--no-tensorboard", "--no-progress", "--threads", "1", "--log-every", "1"]


def args_for(kind: str, data, out: Path, steps: int, *more: str) -> list[str]:
    script, size, extra = RUNS[kind]
    return [*extra, *COMMON, "--root", str(data[size]), "--out", str(out), "--max-steps", str(steps), *more]


def module_states(path: Path) -> dict:
    return safe_load(path)["modules"]


def assert_same_states(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for m in a:
        assert a[m].keys() == b[m].keys()
        for k in a[m]:
            assert torch.equal(a[m][k], b[m][k]), f"{m}.{k} differs"


# ---- parsers and losses --------------------------------------------------------------------------------
def test_parsers():
    assert parse_seeds("0-3,7,9-10") == [0, 1, 2, 3, 7, 9, 10]
    assert parse_size("128x256") == (128, 256)
    for bad in ("3-1", "a", ""):
        with pytest.raises(ConfigError):
            parse_seeds(bad)
    with pytest.raises(ConfigError, match="HxW"):
        parse_size("128")


def test_gan_losses_match_their_formulas():
    p = torch.tensor([[-2.0, -0.5], [0.5, 2.0]]).view(1, 1, 2, 2)
    hinge = L.HingeGANLoss()
    # D real: mean(relu(1 - p)); D fake: mean(relu(1 + p)); G: -mean(p)
    assert hinge(p, True) == pytest.approx((3 + 1.5 + 0.5 + 0) / 4)
    assert hinge(p, False) == pytest.approx((0 + 0.5 + 1.5 + 3) / 4)
    assert hinge(p, True, for_discriminator=False) == pytest.approx(0.0)
    # multiscale: the final prediction of each D, averaged over the Ds
    nested = [[torch.zeros(1, 2, 2, 2), p], [torch.ones(1, 1, 1, 1) * 3]]
    assert hinge(nested, True, False) == pytest.approx((0.0 - 3.0) / 2)
    bce = L.BCEGANLoss(0.9, 0.1)
    z = torch.zeros(1, 1, 4, 4)  # sigmoid 0.5: BCE = ln 2 whatever the target
    assert bce(z, True) == pytest.approx(np.log(2), rel=1e-5)
    big = torch.full((1, 1, 2, 2), 20.0)  # sigmoid ~1: BCE = -(t ln 1 + (1-t) ln e^-20) = 20 (1-t)
    assert bce(big, True) == pytest.approx(20 * 0.1, rel=1e-3)
    assert bce(big, False) == pytest.approx(20 * 0.9, rel=1e-3)
    assert L.kl_divergence(torch.zeros(2, 8), torch.zeros(2, 8)) == 0
    assert L.kl_divergence(torch.ones(1, 4), torch.zeros(1, 4)) == pytest.approx(2.0)  # 0.5 * sum(mu^2)
    fake = [[torch.ones(1, 2, 4, 4), torch.zeros(1, 1, 2, 2)]] * 2
    real = [[torch.zeros(1, 2, 4, 4), torch.ones(1, 1, 2, 2)]] * 2
    assert L.feature_matching_loss(fake, real, 10.0) == pytest.approx(10.0)  # the prediction layer is excluded


def test_cross_entropies_ignore_and_bootstrap():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 8, 8)
    target = torch.randint(0, 5, (2, 8, 8))
    target[:, :2] = 255
    ref = torch.nn.functional.cross_entropy(logits, target, ignore_index=255)
    assert torch.allclose(L.cross_entropy(logits, target), ref)
    per = torch.nn.functional.cross_entropy(logits, target, ignore_index=255, reduction="none")
    # threshold branch: enough pixels above loss_th -> mean of those
    th = 0.3
    expect = torch.stack([per[i][per[i] > th].mean() for i in range(2)]).mean()
    assert torch.allclose(L.bootstrapped_cross_entropy(logits, target, min_k=4, loss_th=th), expect)
    # top-k branch: a threshold nothing exceeds -> the k hardest pixels
    expect = torch.stack([per[i].flatten().sort(descending=True).values[:10].mean() for i in range(2)]).mean()
    assert torch.allclose(L.bootstrapped_cross_entropy(logits, target, min_k=10, loss_th=1e9), expect)


def test_vgg19_loss_loads_torchvision_keys(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        assert L.build_vgg_loss(None) is None
    assert "perceptual loss is OFF" in caplog.text
    feats = L.vgg19_features()
    sd = {f"features.{k}": v for k, v in feats.state_dict().items()}
    assert {"features.0.weight", "features.34.bias"} <= set(sd) and "features.36.weight" not in sd
    sd["classifier.6.weight"] = torch.zeros(2, 2)  # torchvision files carry the classifier too: ignored
    path = tmp_path / "vgg19.pth"
    torch.save(sd, path)
    vgg = L.build_vgg_loss(path)
    assert torch.equal(vgg.vgg[34].bias, sd["features.34.bias"])
    real = torch.rand(1, 3, 32, 32) * 2 - 1
    fake = (real + 0.3 * torch.randn_like(real)).requires_grad_(True)
    loss = vgg(fake, real)
    loss.backward()
    assert loss > 0 and fake.grad.abs().sum() > 0 and vgg(real, real) == 0
    assert all(not p.requires_grad for p in vgg.parameters())
    del sd["features.10.weight"]
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match="features"):
        L.build_vgg_loss(path)


def test_multiscale_discriminator_official_layout():
    D = MultiscaleDiscriminator(MultiscaleDConfig(input_nc=7, ndf=4, n_layers_D=4, num_D=2))
    keys = set(D.state_dict())
    # official netD keys: a normed layer is Sequential(spectral conv, InstanceNorm) inside modelN
    assert {
        "discriminator_0.model0.0.weight",
        "discriminator_0.model1.0.0.weight_orig",
        "discriminator_0.model1.0.0.weight_u",
        "discriminator_1.model3.0.0.weight_v",
        "discriminator_1.model4.0.weight",
        "discriminator_1.model4.0.bias",
    } <= keys
    assert "discriminator_0.model1.0.0.bias" not in keys  # dropped before instance norm, as SPADE does
    out = D(torch.randn(2, 7, 32, 64))
    assert len(out) == 2 and all(len(o) == 5 for o in out)
    assert out[0][-1].shape[1] == 1 and out[1][0].shape[-2:] == (9, 17)  # second D sees the input at half size


# ---- learning on a fixed batch -----------------------------------------------------------------------
def _fixed_batch(h, w):
    s = TinyScenes(1, h, w)[0]
    return {k: (v[None] if torch.is_tensor(v) else v) for k, v in s.items()}


def _runner(tmp_path, **kw):
    return Runner(RunConfig(out=tmp_path, max_steps=1, progress=False, tensorboard=False, **kw))


def test_spade_overfits_one_pair(tmp_path):
    from cityserve.training.spade_trainer import SPADETrainConfig, SPADETrainer, spade_config_for

    # FP32 NCHW on every machine: 20 GAN steps are sensitive to rounding, and this checks learning,
    # not precision (tests/test_oasis.py compares BF16 with FP32)
    r = _runner(tmp_path, precision="fp32", channels_last=False)
    t = SPADETrainer(
        r, spade_config_for("cityscapes", (32, 64), ngf=4), "cityscapes", SPADETrainConfig(ndf=4, n_layers_D=2, lr=4e-3)
    )
    batch = _fixed_batch(32, 64)
    t.train()

    def l1():
        with torch.no_grad():
            return (t.G(t.semantics(batch)) - batch["image"]).abs().mean().item()

    start = l1()
    hist = [t.train_step(batch, s) for s in range(1, 21)]
    end = l1()
    assert end < 0.6 * start, (start, end)
    for k in ("G_GAN", "G_GAN_Feat", "D_Fake", "D_real"):  # every loss moves (the game is on)
        values = [float(h[k]) for h in hist]
        assert max(values) - min(values) > 0.02, (k, values)


def test_spade_vae_trains_encoder_and_exports_it(tmp_path):
    from cityserve.checkpoints import save_checkpoint
    from cityserve.models.spade_style import has_encoder, load_encoder
    from cityserve.training.spade_trainer import SPADETrainConfig, SPADETrainer, spade_config_for

    r = _runner(tmp_path)
    t = SPADETrainer(
        r,
        spade_config_for("cityscapes", (32, 64), ngf=2, use_vae=True, z_dim=8),
        "cityscapes",
        SPADETrainConfig(ndf=4, n_layers_D=2),
    )
    e0 = {k: v.clone() for k, v in t.E.state_dict().items()}
    losses = t.train_step(_fixed_batch(32, 64), 1)
    assert "KLD" in losses and float(losses["KLD"]) > 0
    assert not torch.equal(e0["fc_mu.weight"], t.E.state_dict()["fc_mu.weight"])  # the encoder learns via G's loss
    card, sd = t.export()
    card = load_card(save_checkpoint(card, sd, tmp_path, "vae"))
    assert has_encoder(card)
    enc = load_encoder(card)
    assert enc(torch.zeros(1, 3, 32, 64))[0].shape == (1, 8)


def test_pix2pix_overfits_one_pair(tmp_path):
    from cityserve.models.pix2pix import Pix2PixConfig
    from cityserve.training.pix2pix_trainer import Pix2PixTrainConfig, Pix2PixTrainer

    r = _runner(tmp_path)
    cfg = Pix2PixConfig(label_nc=34, netG="unet_128", ngf=4, ndf=4, n_layers_D=2)
    t = Pix2PixTrainer(r, cfg, "cityscapes", Pix2PixTrainConfig(lr=2e-3), (128, 128))
    batch = _fixed_batch(128, 128)
    t.train()
    hist = [t.train_step(batch, s) for s in range(1, 31)]
    l1 = [float(h["G_L1"]) / 100 for h in hist]
    assert l1[-1] < 0.5 * l1[0], l1
    for k in ("G_GAN", "D_fake", "D_real"):
        values = [float(h[k]) for h in hist]
        assert max(values) - min(values) > 0.01, (k, values)
    # color label input: the palette in [-1, 1], 3 channels
    cfg_c = Pix2PixConfig(label_nc=34, input_mode="color", netG="unet_128", ngf=2, ndf=2, n_layers_D=1)
    tc = Pix2PixTrainer(r, cfg_c, "cityscapes", Pix2PixTrainConfig(), (128, 128))
    a = tc.label_input(batch["labels"])
    assert a.shape == (1, 3, 128, 128)
    assert torch.allclose(a[0, :, 0, 0], torch.tensor([70, 130, 180]) / 127.5 - 1)  # sky's color
    assert "G_L1" in tc.train_step(batch, 1)


def test_segmenter_loss_falls(tmp_path):
    from cityserve.models.fchardnet import FCHarDNetConfig
    from cityserve.training.segmenter_trainer import SegmenterTrainConfig, SegmenterTrainer

    r = _runner(tmp_path)
    t = SegmenterTrainer(
        r, "fchardnet", FCHarDNetConfig(), "cityscapes", SegmenterTrainConfig(loss="ce", lr=0.01), (64, 128)
    )
    batch = _fixed_batch(64, 128)
    target = t.targets(batch["labels"])
    assert int(target[0, 0, 0]) == 10 and int(target[0, -1, -1]) in (0, 1)  # sky -> train id 10; road/sidewalk
    t.train()
    hist = [float(t.train_step(batch, s)["loss"]) for s in range(1, 7)]
    assert hist[-1] < 0.8 * hist[0], hist


# ---- runs through the entry points ---------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["spade", "oasis", "segmenter", "pix2pix"])
def test_resume_equals_uninterrupted_run(kind, data, tmp_path):
    main = entry(RUNS[kind][0]).main
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(args_for(kind, data, a, 4, "--save-every", "2")) == 0
    # the first half stops at step 2 of a 4-step plan (poly / linear-decay schedules span the whole run)
    assert main(args_for(kind, data, b, 4, "--save-every", "2", "--stop-at", "2")) == 0
    assert [s for s, _ in state_files(b)] == [2]
    assert main(args_for(kind, data, b, 4, "--save-every", "2", "--resume")) == 0
    assert_same_states(module_states(a / "state" / "step_00000004.pt"), module_states(b / "state" / "step_00000004.pt"))
    card_a, card_b = load_card(a), load_card(b)
    assert card_a.sha256 == card_b.sha256  # the exported weights are the same bytes
    card_b.verify()
    assert card_b.provenance["step"] == 4 and card_b.provenance["source"] == "trained"
    assert len(list((b / "checkpoints").glob("*.card.json"))) == 2  # one card per saved checkpoint
    if kind == "segmenter":
        from cityserve.models.segment import segment_graph_from_card

        out = segment_graph_from_card(card_b)(torch.zeros(1, 64, 128, 3, dtype=torch.uint8))
        assert out.shape == (1, 1, 64, 128) and out.dtype == torch.uint8
    else:
        from cityserve.models.render import render_graph_from_card

        h, w = card_b.height, card_b.width
        g = render_graph_from_card(card_b)
        feeds = [torch.full((1, 1, h, w), 7, dtype=torch.uint8)]
        if g.use_instance:
            feeds.append(torch.zeros(1, 1, h, w, dtype=torch.int32))
        img = g(*feeds)
        assert img.shape == (1, h, w, 3) and img.dtype == torch.uint8


def test_resume_refuses_other_options_and_fresh_run_refuses_existing(data, tmp_path, capsys):
    main = entry("spade").main
    out = tmp_path / "run"
    assert main(args_for("spade", data, out, 1)) == 0
    assert main(args_for("spade", data, out, 2)) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(args_for("spade", data, out, 2, "--resume", "--ngf", "3")) == 2
    assert "ngf" in capsys.readouterr().err


def test_nan_stops_with_step_and_loss_named(data, tmp_path, capsys, monkeypatch):
    main = entry("spade").main
    out = tmp_path / "nan"
    monkeypatch.setenv("CITYSERVE_DEBUG_NAN_AT_STEP", "5")
    rc = main(args_for("spade", data, out, 8, "--save-every", "2"))
    err = capsys.readouterr().err
    assert rc == 1
    assert "non-finite loss at step 5: G_GAN = nan" in err and "step_00000004.pt" in err
    assert [s for s, _ in state_files(out)] == [2, 4]
    safe_load(out / "state" / "step_00000004.pt")  # intact
    card = load_card(out)
    card.verify()
    assert card.provenance["step"] == 4
    # the environment variable plants it too (here in the segmenter, at the first step: nothing saved yet)
    monkeypatch.setenv("CITYSERVE_DEBUG_NAN_AT_STEP", "1")
    rc = entry("segmenter").main(args_for("segmenter", data, tmp_path / "nan2", 3))
    assert rc == 1 and "non-finite loss at step 1: loss = nan; stopped, no checkpoint" in capsys.readouterr().err


def test_kill_mid_run_then_resume(data, tmp_path):
    """SIGKILL a run once it has written a checkpoint (possibly mid-save), resume it, and get the
    weights of a run that was never interrupted."""
    out = tmp_path / "killed"
    args = args_for("spade", data, out, 10_000, "--save-every", "1", "--keep", "0")
    proc = subprocess.Popen(
        train_cmd("spade.py", *args), env=env_1thread(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 90
    try:
        while len(state_files(out)) < 2 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
    assert len(state_files(out)) >= 2, err[-2000:]
    newest = state_files(out)[-1][0]
    for _, p in state_files(out):
        safe_load(p)  # no half-written state under a final name
    main = entry("spade").main
    target = newest + 2
    assert main(args_for("spade", data, out, target, "--save-every", "1", "--resume")) == 0
    ref = tmp_path / "straight"
    assert main(args_for("spade", data, ref, target, "--save-every", str(target))) == 0
    name = f"step_{target:08d}.pt"
    assert_same_states(module_states(ref / "state" / name), module_states(out / "state" / name))
    assert not list((out / "state").glob(".*tmp*"))


@pytest.mark.parametrize("kind", ["spade", "oasis"])
def test_torchrun_two_gloo_processes(kind, data, tmp_path):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(REPO / "train" / "spade.py"),
        *args_for(kind, data, out, 2),
    ]
    res = subprocess.run(cmd, env=env_1thread(), capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    ranks = json.loads((out / "ranks.json").read_text())
    assert ranks["world_size"] == 2 and ranks["agree"]
    assert ranks["fingerprints"][0] == ranks["fingerprints"][1]
    card = load_card(out)
    card.verify()
    assert card.provenance["world_size"] == 2


def test_finetune_from_imported_official_checkpoint(fixtures_dir, data, tmp_path):
    from cityserve.importing.spade import import_spade

    # the official file (conv fc: its weights fit any size) imported at 64x128 to keep the step cheap
    src = import_spade(
        fixtures_dir / "spade" / "cityscapes_ngf2_netG.pth",
        "cityscapes",
        (64, 128),
        tmp_path / "imported",
        log=lambda m: None,
    )
    imported = load_card(src)
    w0 = safe_load(imported.weights_path)
    data_dir = data["64x128"]
    out = tmp_path / "ft"
    rc = entry("spade").main(
        [
            "--preset",
            "tiny",
            *COMMON,
            "--root",
            str(data_dir),
            "--out",
            str(out),
            "--max-steps",
            "1",
            "--init-from",
            str(src),
            "--ndf",
            "2",
        ]
    )
    assert rc == 0
    card = load_card(out)
    assert card.config == imported.config and (card.height, card.width) == (64, 128)
    assert card.config["label_nc"] == 35 and card.config["num_upsampling_layers"] == "more"
    assert card.provenance["init_from"]["sha256"] == imported.sha256
    w1 = safe_load(card.weights_path)
    assert w1.keys() == w0.keys()  # the official netG keys, as they are
    assert not torch.equal(w1["conv_img.weight"], w0["conv_img.weight"])  # it was trained from there
    assert (w1["conv_img.weight"] - w0["conv_img.weight"]).abs().max() < 0.01  # ... one small step

"""The OASIS objective and what comes with it: the N+1-class U-Net discriminator, its class-balanced
loss, LabelMix, 3D noise in the SPADE generator, the EMA generator, and mixed precision."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _helpers_training import TinyScenes

from cityserve.cards import load_card
from cityserve.checkpoints import save_checkpoint
from cityserve.errors import ConfigError
from cityserve.models.render import render_graph_from_card
from cityserve.models.spade import SPADEGenerator
from cityserve.training.ema import EMA, refresh_spectral_vectors
from cityserve.training.oasis import (
    OASISDConfig,
    OASISDiscriminator,
    class_balance_weights,
    labelmix,
    labelmix_mask,
    n_plus_1_loss,
)
from cityserve.training.runner import RunConfig, Runner, resolve_precision
from cityserve.training.spade_trainer import SPADETrainConfig, SPADETrainer, spade_config_for


def _batch(h: int = 32, w: int = 64) -> dict:
    s = TinyScenes(1, h, w)[0]
    return {k: (v[None] if torch.is_tensor(v) else v) for k, v in s.items()}


def _trainer(tmp_path, precision: str = "fp32", **train) -> SPADETrainer:
    runner = Runner(RunConfig(out=tmp_path, precision=precision, progress=False, tensorboard=False))
    gcfg = spade_config_for("cityscapes", (32, 64), ngf=4, nhidden=8, noise_dim=4, norm_G="spectralspadeinstance1x1")
    tcfg = SPADETrainConfig(objective="oasis", ndf=4, num_res_blocks_D=4, beta2=0.999, **train)
    return SPADETrainer(runner, gcfg, "cityscapes", tcfg)


def test_class_balance_gives_every_present_class_the_same_total_weight():
    ids = torch.zeros(1, 4, 4, dtype=torch.long)
    ids[0, :, 3] = 1  # class 1: 4 pixels, class 0: 12 pixels, class 2 absent
    onehot = torch.nn.functional.one_hot(ids, 3).permute(0, 3, 1, 2).float()
    w = class_balance_weights(onehot)
    assert w.shape == (1, 1, 4, 4)
    assert w[onehot[:, :1] > 0].sum() == pytest.approx(w[onehot[:, 1:2] > 0].sum())
    assert w.sum() == pytest.approx(16.0)  # numel / n_present per class, n_present classes
    # the dontcare channel (the last one) weighs nothing
    ids[0, 0, 0] = 2
    onehot = torch.nn.functional.one_hot(ids, 3).permute(0, 3, 1, 2).float()
    assert class_balance_weights(onehot, dontcare=True)[0, 0, 0, 0] == 0


def test_n_plus_1_targets_label_classes_for_real_and_zero_for_fake():
    ids = torch.tensor([[[0, 1], [2, 1]]])
    onehot = torch.nn.functional.one_hot(ids, 3).permute(0, 3, 1, 2).float()
    right = torch.full((1, 4, 2, 2), -20.0)
    right.scatter_(1, (ids + 1)[:, None], 20.0)  # certain of class id + 1 everywhere
    assert n_plus_1_loss(right, onehot, for_real=True) < 1e-6
    assert n_plus_1_loss(right, onehot, for_real=False) > 10  # ... which is wrong for a fake
    fake = torch.full((1, 4, 2, 2), -20.0)
    fake[:, 0] = 20.0
    assert n_plus_1_loss(fake, onehot, for_real=False) < 1e-6
    w = class_balance_weights(onehot)
    assert n_plus_1_loss(right, onehot, True, w) < 1e-6 and n_plus_1_loss(fake, onehot, True, w) > 10


def test_labelmix_mask_is_per_class_and_vanishes_for_a_pixelwise_discriminator():
    torch.manual_seed(0)
    labels = torch.randint(0, 5, (2, 1, 16, 16))
    mask = labelmix_mask(labels)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    for b in range(2):
        for c in labels[b].unique():
            assert mask[b][labels[b] == c].unique().numel() == 1  # one draw per class and image
    real, fake = torch.randn(2, 3, 16, 16), torch.randn(2, 3, 16, 16)
    mixed = mask * real + (1 - mask) * fake
    assert labelmix(mask, mixed, fake, real) == pytest.approx(0.0)  # D = identity mixes exactly
    d = lambda x: x**2
    assert labelmix(mask, d(mixed), d(fake), d(real)) == pytest.approx(0.0, abs=1e-12)
    assert labelmix(mask, d(mixed) + 1, d(fake), d(real)) == pytest.approx(1.0)


def test_oasis_discriminator_is_a_unet_with_official_module_names(tmp_path):
    d = OASISDiscriminator(OASISDConfig(semantic_nc=34, ndf=4, num_res_blocks=4))
    out = d(torch.randn(2, 3, 32, 64))
    assert out.shape == (2, 35, 32, 64)
    keys = set(d.state_dict())
    assert {
        "body_down.0.conv1.0.weight_orig",
        "body_up.0.conv1.2.weight_orig",
        "body_up.1.conv_s.weight_orig",
        "layer_up_last.weight",
    } <= keys
    runner = Runner(RunConfig(out=tmp_path, progress=False, tensorboard=False))
    with pytest.raises(ConfigError, match="multiples of 64"):  # 6 blocks halve 32 rows 6 times
        tcfg = SPADETrainConfig(objective="oasis", ndf=4, num_res_blocks_D=6)
        SPADETrainer(runner, spade_config_for("cityscapes", (32, 64), ngf=4), "cityscapes", tcfg)


def test_oasis_trainer_moves_every_loss_and_learns_the_layout(tmp_path):
    torch.manual_seed(0)
    t = _trainer(tmp_path, lr=2e-3)
    batch = _batch()
    t.train()
    hist = [t.train_step(batch, s) for s in range(1, 31)]
    for k in ("G_adv", "D_fake", "D_real", "D_labelmix"):
        values = [float(h[k]) for h in hist]
        assert np.isfinite(values).all() and max(values) - min(values) > 0.01, (k, values)
    # the discriminator learns to segment the real image (its loss falls from chance, ln 35) and the
    # generator to make fakes it segments as the labels
    d_real, g_adv = [float(h["D_real"]) for h in hist], [float(h["G_adv"]) for h in hist]
    assert d_real[-1] < min(d_real[0], np.log(35)) - 0.1, d_real
    assert g_adv[-1] < g_adv[0] - 0.1, g_adv


def test_a_fresh_discriminator_takes_its_first_steps_without_blowing_up(tmp_path):
    """At the default learning rate a fresh U-Net discriminator's losses stay near chance (ln 35) over its
    first steps: with SPADE's 0.02 init they jumped to 10-1e5 at the third step and the discriminator
    then sat at exactly ln 35 (frozen by the gradient left in Adam's second moment)."""
    torch.manual_seed(0)
    t = _trainer(tmp_path)  # lr 2e-4: D at 4e-4, G at 1e-4, as the presets
    t.train()
    scenes = TinyScenes(4)
    hist = []
    for s in range(1, 13):
        batch = {k: (v[None] if torch.is_tensor(v) else v) for k, v in scenes[s % 4].items()}
        hist.append(t.train_step(batch, s))
    for k in ("D_real", "D_fake", "G_adv"):
        values = [float(h[k]) for h in hist]
        assert max(values) < 2 * np.log(35), (k, values)
    d_fake = [float(h["D_fake"]) for h in hist]
    assert d_fake[-1] < d_fake[0] - 0.05, d_fake  # and it is learning: fakes are told apart


def test_noise_gives_a_different_photo_per_latent_and_the_same_for_the_same(tmp_path):
    cfg = spade_config_for("cityscapes", (32, 64), ngf=4, nhidden=8, noise_dim=4, norm_G="spectralspadeinstance1x1")
    assert cfg.cond_nc == cfg.semantic_nc + 4 and cfg.latent_dim == 4
    torch.manual_seed(0)
    g = SPADEGenerator(cfg).eval()
    sem = torch.zeros(1, cfg.semantic_nc, 32, 64)
    sem[:, 7] = 1
    z1, z2 = torch.randn(1, 4), torch.randn(1, 4)
    with torch.no_grad():
        a, b, c = g(sem, z1), g(sem, z1), g(sem, z2)
    assert torch.equal(a, b) and (a - c).abs().mean() > 1e-3
    with pytest.raises(ConfigError, match="not both"):
        spade_config_for("cityscapes", (32, 64), ngf=4, noise_dim=4, use_vae=True)
    # the exported card's render graph takes the noise as its z input
    card, sd = _trainer(tmp_path).export()
    card = load_card(save_checkpoint(card, sd, tmp_path, "noise"))
    graph = render_graph_from_card(card)
    assert graph.z_dim == 4
    ids = torch.full((1, 1, 32, 64), 7, dtype=torch.uint8)
    inst = torch.zeros(1, 1, 32, 64, dtype=torch.int32)
    img1, img2 = graph(ids, inst, z1), graph(ids, inst, z2)
    assert img1.dtype == torch.uint8 and not torch.equal(img1, img2)


def test_ema_averages_parameters_copies_buffers_and_is_what_gets_exported(tmp_path):
    t = _trainer(tmp_path, ema_decay=0.9)
    assert "netEMA" in t.modules()
    batch = _batch()
    t.train()
    for s in range(1, 6):
        t.train_step(batch, s)
    g, e = t.G.state_dict(), t.ema.module.state_dict()
    assert not torch.equal(g["conv_img.weight"], e["conv_img.weight"])
    card, sd = t.export()
    assert torch.equal(sd["conv_img.weight"], t.ema.module.state_dict()["conv_img.weight"])
    # after the refresh sigma = u.(W v) is the spectral norm of the averaged weight
    w = t.ema.module.head_0.conv_0.weight_orig
    sigma = torch.linalg.matrix_norm(w.reshape(w.shape[0], -1), ord=2)
    u, v = t.ema.module.head_0.conv_0.weight_u, t.ema.module.head_0.conv_0.weight_v
    assert float(u @ (w.reshape(w.shape[0], -1) @ v)) == pytest.approx(float(sigma), rel=1e-3)


def test_refresh_spectral_vectors_converges_to_the_spectral_norm():
    conv = torch.nn.utils.spectral_norm(torch.nn.Conv2d(8, 16, 3))
    with torch.no_grad():
        conv.weight_orig.mul_(3.0)
    refresh_spectral_vectors(conv, iters=50)
    w = conv.weight_orig.reshape(16, -1)
    assert float(conv.weight_u @ (w @ conv.weight_v).detach()) == pytest.approx(
        float(torch.linalg.matrix_norm(w.detach(), 2)), rel=1e-4
    )
    with pytest.raises(ValueError):
        EMA(conv, 1.0)


def test_precision_resolution_and_a_bf16_step_close_to_fp32(tmp_path):
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32"
    assert resolve_precision("auto", cpu) in ("fp32", "bf16")
    with pytest.raises(ConfigError, match="CUDA"):
        resolve_precision("fp16", cpu)
    with pytest.raises(ConfigError, match="one of"):
        resolve_precision("fp8", cpu)
    losses = {}
    for p in ("fp32", "bf16"):
        torch.manual_seed(0)
        t = _trainer(tmp_path / p, precision=p)
        assert t.runner.channels_last  # the default on a CPU, in both precisions
        t.train()
        losses[p] = {k: float(v) for k, v in t.train_step(_batch(), 1).items()}
    for k, v in losses["fp32"].items():  # the same first step, in BF16: the same losses to BF16 accuracy
        assert losses["bf16"][k] == pytest.approx(v, rel=0.05, abs=0.02), (k, losses)


def test_mode_seeking_term_makes_the_noise_matter(tmp_path):
    """With --lambda-ms the generator is pushed to give different photos for different noise: after the
    same few steps from the same seed, two noises give photos further apart than without the term."""
    batch = _batch()
    spread = {}
    for lam in (0.0, 1.0):
        torch.manual_seed(0)
        t = _trainer(tmp_path / str(lam), lambda_ms=lam)
        t.train()
        for step in range(1, 6):
            losses = t.train_step(batch, step)
        assert ("G_ms" in losses) == bool(lam)
        assert all(torch.isfinite(v) for v in losses.values())
        t.G.eval()
        with torch.no_grad():
            sem = t.semantics(batch)
            z = torch.randn(2, t.gcfg.noise_dim, generator=torch.Generator().manual_seed(1))
            a, b = t.G(sem, z[:1]), t.G(sem, z[1:])
        spread[lam] = float((a - b).abs().mean())
    assert spread[1.0] > 2 * spread[0.0], spread


def test_mode_seeking_needs_a_noise_generator(tmp_path):
    runner = Runner(RunConfig(out=tmp_path, progress=False, tensorboard=False))
    gcfg = spade_config_for("cityscapes", (32, 64), ngf=4, nhidden=8, norm_G="spectralspadeinstance1x1")
    with pytest.raises(ConfigError, match="noise"):
        SPADETrainer(runner, gcfg, "cityscapes", SPADETrainConfig(objective="oasis", ndf=4, lambda_ms=1.0))
    with pytest.raises(ConfigError, match="lambda_ms"):
        SPADETrainConfig(lambda_ms=-1)

"""The layout generators (StyleGAN2-style and DCGAN) and their discriminators, at tiny widths."""

from __future__ import annotations

import pytest
import torch

from cityserve.errors import ConfigError
from cityserve.models.layout_dcgan import DCGANDiscriminator, DCGANGenerator, LayoutDCGANConfig
from cityserve.models.layout_stylegan import (
    LayoutDiscriminator,
    LayoutDiscriminatorConfig,
    LayoutGenerator,
    LayoutStyleGANConfig,
    MinibatchStdLayer,
    base_grid,
    modulated_conv2d,
    r1_penalty,
    soft_one_hot,
)

TINY = dict(num_classes=5, height=16, width=32, z_dim=8, w_dim=8, mapping_layers=2, channel_base=16, channel_min=4)


def test_base_grid_and_bad_sizes():
    assert base_grid(128, 256) == (4, 8, 5)
    assert base_grid(32, 64) == (4, 8, 3)
    for h, w in ((24, 48), (32, 60), (2, 8)):
        with pytest.raises(ConfigError):
            base_grid(h, w)


def test_generator_shapes_noise_truncation_and_mixing():
    torch.manual_seed(0)
    G = LayoutGenerator(LayoutStyleGANConfig(**TINY)).eval()
    assert G.num_ws == 1 + 2 * 2 + 1  # conv1 at 4x8, two convs at 8x16 and 16x32, the last tologits
    z = torch.randn(3, 8)
    out = G(z, noise_mode="const")
    assert out.shape == (3, 5, 16, 32)
    assert torch.equal(out, G(z, noise_mode="const"))  # const noise: deterministic
    for layer in (G.synthesis.b1.conv0, G.synthesis.b2.conv1):
        layer.noise_strength.data.fill_(1.0)
    assert not torch.equal(G(z, noise_mode="random"), G(z, noise_mode="random"))
    # truncation psi = 0 gives w_avg for every z: the same map for all samples
    G.mapping.w_avg.copy_(torch.randn(8))
    t0 = G(z, truncation_psi=0.0, noise_mode="const")
    assert torch.allclose(t0[0], t0[1], atol=1e-5) and torch.allclose(t0[1], t0[2], atol=1e-5)
    # style mixing from layer 0 is the second z's map; from past the last layer it is the first's
    z2 = torch.randn(3, 8)
    assert torch.allclose(G(z, noise_mode="const", mix_z=z2, mix_cutoff=0), G(z2, noise_mode="const"), atol=1e-5)
    same = G(z, noise_mode="const", mix_z=z2, mix_cutoff=G.num_ws)
    assert torch.allclose(same, G(z, noise_mode="const"), atol=1e-5)


def test_mapping_tracks_w_avg():
    G = LayoutGenerator(LayoutStyleGANConfig(**TINY))
    assert float(G.mapping.w_avg.abs().sum()) == 0
    G.mapping(torch.randn(4, 8), update_emas=True)
    assert float(G.mapping.w_avg.abs().sum()) > 0


def test_demodulation_gives_unit_output_norm_weights():
    """With demodulation the effective weights have unit norm per output channel, whatever the styles."""
    torch.manual_seed(0)
    w = torch.randn(4, 3, 3, 3)
    x = torch.zeros(2, 3, 5, 5)
    x[:, :, 2, 2] = torch.eye(3)[0]  # an impulse on input channel 0
    styles = torch.tensor([[1.0, 1.0, 1.0], [10.0, 10.0, 10.0]])
    y = modulated_conv2d(x, w, styles, demodulate=True, padding=1)
    assert torch.allclose(y[0], y[1], atol=1e-5)  # a global style scale is normalized away
    y_nodemod = modulated_conv2d(x, w, styles, demodulate=False, padding=1)
    assert torch.allclose(y_nodemod[1], 10 * y_nodemod[0], atol=1e-4)


def test_discriminator_mbstd_and_r1():
    torch.manual_seed(0)
    D = LayoutDiscriminator(
        LayoutDiscriminatorConfig(num_classes=5, height=16, width=32, channel_base=16, channel_min=4)
    )
    x = torch.softmax(torch.randn(4, 5, 16, 32), 1)
    assert D(x).shape == (4, 1)
    assert D(x[:3]).shape == (3, 1)  # a batch of 3: groups of 3
    r1 = r1_penalty(D, x)
    assert r1.ndim == 0 and float(r1.detach()) > 0
    r1.backward()
    assert D.fromlogits.weight.grad is not None  # R1 is a function of D's weights: it trains D
    y = MinibatchStdLayer(2)(torch.tensor([[[[1.0]]], [[[3.0]]]]))
    assert y.shape == (2, 2, 1, 1) and torch.allclose(y[:, 1], torch.ones(2, 1, 1))  # std of {1, 3} = 1


def test_soft_one_hot_sums_to_one_and_passes_gradients():
    logits = torch.randn(2, 5, 4, 8, requires_grad=True)
    for mode in ("softmax", "gumbel"):
        p = soft_one_hot(logits, mode, tau=0.5)
        assert torch.allclose(p.sum(1), torch.ones(2, 4, 8), atol=1e-5)
        p[:, 0].sum().backward()
        assert logits.grad is not None and float(logits.grad.abs().sum()) > 0
        logits.grad = None
    with pytest.raises(ConfigError):
        soft_one_hot(logits, "hard")


def test_dcgan_shapes():
    cfg = LayoutDCGANConfig(num_classes=5, height=16, width=32, z_dim=6, ngf=4, ndf=4)
    G, D = DCGANGenerator(cfg), DCGANDiscriminator(cfg)
    logits = G(torch.randn(2, 6))
    assert logits.shape == (2, 5, 16, 32)
    assert D(torch.softmax(logits, 1)).shape == (2, 1)

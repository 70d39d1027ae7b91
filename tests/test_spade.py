"""SPADE generator / encoder: official fixtures reproduced, inference form, sizes, key names."""

from __future__ import annotations

import pytest
import torch
from _helpers_spade import fixture_config, fixture_input, input_sha256, load_pt, randomize_, spade_config, tiny_config

from cityserve.errors import ConfigError
from cityserve.models import registry
from cityserve.models.spade import ConvEncoder, SPADEConfig, SPADEGenerator
from cityserve.models.spectral_norm import fold_spectral_norm, to_inference

# (cityscapes 'more' / output_more is reproduced through the Renderer API in test_render_cli.py)
FIXTURE_CASES = [
    ("cityscapes_ngf2", None, "output"),
    ("ade20k_ngf2", None, "output"),
    ("ade20k_more_vae_ngf2", None, "output"),
]


@pytest.mark.parametrize("name,upsampling,output", FIXTURE_CASES)
def test_official_fixture_reproduced(fixtures_dir, name, upsampling, output):
    cfg = spade_config(fixtures_dir, name, upsampling)
    meta = fixture_config(fixtures_dir, name)
    gen = SPADEGenerator(cfg)
    gen.load_state_dict(torch.load(fixtures_dir / "spade" / f"{name}_netG.pth", weights_only=True), strict=True)
    gen.eval()
    x = fixture_input(fixtures_dir, name, cfg)
    assert input_sha256(x) == meta["input"]["sha256_float32_bytes"]  # input assembly is exact
    z = load_pt(fixtures_dir, name, "z") if cfg.use_vae else None
    with torch.no_grad():
        y = gen(x, z)
    expected = load_pt(fixtures_dir, name, output)
    assert y.shape == expected.shape == (1, 3, cfg.height, cfg.width)
    assert (y - expected).abs().max().item() <= 1e-4


def test_official_encoder_reproduced(fixtures_dir):
    name = "ade20k_more_vae_ngf2"
    cfg = spade_config(fixtures_dir, name)
    enc = ConvEncoder(cfg)
    enc.load_state_dict(torch.load(fixtures_dir / "spade" / f"{name}_netE.pth", weights_only=True), strict=True)
    enc.eval()
    style = load_pt(fixtures_dir, name, "style")
    with torch.no_grad():
        mu, logvar = enc(style)
        assert (mu - load_pt(fixtures_dir, name, "mu")).abs().max().item() <= 1e-4
        assert (logvar - load_pt(fixtures_dir, name, "logvar")).abs().max().item() <= 1e-4
        to_inference(enc)
        mu2, logvar2 = enc(style)
    assert (mu2 - mu).abs().max().item() <= 1e-5 and (logvar2 - logvar).abs().max().item() <= 1e-5


@pytest.mark.parametrize("name", ["cityscapes_ngf2", "ade20k_more_vae_ngf2"])
def test_module_names_match_official_keys(fixtures_dir, name):
    meta = fixture_config(fixtures_dir, name)
    gen = SPADEGenerator(spade_config(fixtures_dir, name))
    ours = [[k, list(v.shape)] for k, v in gen.state_dict().items()]
    assert ours == [[k, shape] for k, shape, _ in meta["netG_state_dict_keys"]]
    if meta.get("encoder"):
        enc = ConvEncoder(spade_config(fixtures_dir, name))
        assert [[k, list(v.shape)] for k, v in enc.state_dict().items()] == [
            [k, shape] for k, shape, _ in meta["encoder"]["state_dict_keys"]
        ]


VARIANTS = [
    dict(num_upsampling_layers=up, use_vae=vae, no_instance=noi, contain_dontcare_label=dc)
    for up, vae, (noi, dc) in [
        ("normal", False, (False, False)),
        ("normal", True, (True, True)),
        ("more", False, (True, True)),
        ("more", True, (False, False)),
        ("most", False, (False, True)),
        ("most", True, (True, False)),
    ]
]
VARIANTS += [
    dict(norm_G="spadebatch3x3"),
    dict(norm_G="spectralspadeinstance3x3"),
    dict(norm_G="spectralspadesyncbatch5x5", use_vae=True, norm_E="spectralbatch"),
    dict(use_vae=True, norm_E="none"),
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(f"{k}={v[k]}" for k in v))
def test_inference_form_equals_original(variant):
    most = variant.get("num_upsampling_layers") == "most"
    cfg = tiny_config(label_nc=4, crop_size=128 if most else 64, aspect_ratio=1.0, z_dim=8, **variant)
    gen = randomize_(SPADEGenerator(cfg), seed=1)
    g = torch.Generator().manual_seed(2)
    labels = torch.randint(0, cfg.num_classes, (2, 1, cfg.height, cfg.width), generator=g)
    x = torch.nn.functional.one_hot(labels[:, 0], cfg.num_classes).permute(0, 3, 1, 2).float()
    if not cfg.no_instance:
        x = torch.cat([x, (torch.rand(2, 1, cfg.height, cfg.width, generator=g) > 0.7).float()], 1)
    z = torch.randn(2, cfg.z_dim, generator=g) if cfg.use_vae else None
    with torch.no_grad():
        y = gen(x, z)
        folded = to_inference(gen)
        y2 = folded(x, z)
    assert y.shape == (2, 3, cfg.height, cfg.width)
    assert y.std() > 0.05  # a real image, not a constant
    assert (y - y2).abs().max().item() <= 2e-5
    keys = folded.state_dict().keys()
    assert not any(k.endswith(("weight_orig", "weight_u", "weight_v")) for k in keys)
    assert all(not m._forward_pre_hooks and not m._load_state_dict_pre_hooks for m in folded.modules())
    if cfg.use_vae:  # the encoder folds too
        enc = randomize_(ConvEncoder(cfg), seed=3)
        img = torch.rand(1, 3, 32, 64, generator=g) * 2 - 1
        with torch.no_grad():
            mu, lv = enc(img)
            mu2, lv2 = to_inference(enc)(img)
        assert (mu - mu2).abs().max() <= 2e-5 and (lv - lv2).abs().max() <= 2e-5


def test_spectral_norm_uses_stored_vectors_not_exact_sigma():
    """Eval-mode spectral norm divides by u.(W v) with the stored vectors (no power iteration)."""
    cfg = tiny_config(label_nc=3, ngf=1)
    gen = randomize_(SPADEGenerator(cfg), seed=4)
    conv = gen.head_0.conv_0
    w, u, v = conv.weight_orig, conv.weight_u, conv.weight_v
    sigma_stored = torch.dot(u, w.reshape(w.shape[0], -1) @ v)
    sigma_exact = torch.linalg.matrix_norm(w.reshape(w.shape[0], -1), ord=2)
    assert abs(sigma_stored - sigma_exact) > 1e-3  # the test would not tell them apart otherwise
    fold_spectral_norm(gen)
    assert torch.allclose(gen.head_0.conv_0.weight, w / sigma_stored, atol=1e-6)


@pytest.mark.parametrize("up,n", [("normal", 5), ("more", 6), ("most", 7)])
def test_output_sizes(up, n):
    cfg = tiny_config(label_nc=3, crop_size=256, aspect_ratio=2.0, num_upsampling_layers=up, no_instance=True)
    assert cfg.n_up == n and cfg.sw == 256 // 2**n and cfg.sh == round(cfg.sw / 2.0)
    assert (cfg.height, cfg.width) == (128, 256)
    gen = SPADEGenerator(cfg).eval()
    with torch.no_grad():
        y = gen(torch.zeros(1, cfg.semantic_nc, 128, 256))
    assert y.shape == (1, 3, 128, 256)
    assert hasattr(gen, "up_4") == (up == "most")
    if up == "most":
        assert gen.conv_img.in_channels == cfg.ngf // 2
    # sizes SPADE cannot render come out as SPADE would render them
    odd = tiny_config(crop_size=500, aspect_ratio=2.0, num_upsampling_layers="normal")
    assert (odd.sw, odd.sh, odd.height, odd.width) == (15, 8, 256, 480)


def test_vae_samples_z_when_none():
    cfg = tiny_config(label_nc=3, use_vae=True, z_dim=4, no_instance=True)
    gen = randomize_(SPADEGenerator(cfg), seed=5)
    x = torch.zeros(1, cfg.semantic_nc, cfg.height, cfg.width)
    x[:, 1] = 1
    with torch.no_grad():
        a, b = gen(x), gen(x)
        c, d = gen(x, torch.ones(1, 4)), gen(x, torch.ones(1, 4))
    assert not torch.equal(a, b) and torch.equal(c, d)


def test_config_helpers_and_validation():
    cfg = SPADEConfig(label_nc=150, contain_dontcare_label=True, no_instance=True, crop_size=256)
    assert (cfg.semantic_nc, cfg.num_classes) == (151, 151)
    cs = SPADEConfig(label_nc=35, crop_size=512, aspect_ratio=2.0, num_upsampling_layers="more")
    assert (cs.semantic_nc, cs.num_classes, cs.sw, cs.sh, cs.height, cs.width) == (36, 35, 8, 4, 256, 512)
    with pytest.raises(ConfigError, match="num_upsampling_layers"):
        SPADEConfig(num_upsampling_layers="lots")
    with pytest.raises(ConfigError, match="norm_G"):
        SPADEConfig(norm_G="spectralbatch")
    with pytest.raises(ConfigError, match="too small"):
        SPADEConfig(crop_size=64, num_upsampling_layers="most")


def test_registered_family_and_render_io():
    fam = registry.family("spade")
    assert fam.config_cls is SPADEConfig and fam.kind == "generator"
    io = fam.render_io(SPADEConfig(label_nc=35, crop_size=512, aspect_ratio=2.0))
    assert (io.num_classes, io.use_instance, io.z_dim, io.input_mode) == (35, True, 0, "onehot")
    io = fam.render_io(SPADEConfig(label_nc=150, contain_dontcare_label=True, no_instance=True, use_vae=True))
    assert (io.num_classes, io.use_instance, io.z_dim) == (151, False, 256)
    assert isinstance(fam.build(tiny_config()), SPADEGenerator)


def test_generator_ignores_encoder_keys_strictly_otherwise():
    cfg = tiny_config(label_nc=3, use_vae=True, z_dim=4)
    gen, enc = SPADEGenerator(cfg), ConvEncoder(cfg)
    sd = dict(gen.state_dict())
    sd.update({"netE." + k: v for k, v in enc.state_dict().items()})
    SPADEGenerator(cfg).load_state_dict(sd, strict=True)
    sd["bogus"] = torch.zeros(1)
    with pytest.raises(RuntimeError, match="bogus"):
        SPADEGenerator(cfg).load_state_dict(sd, strict=True)

"""Training an unconditional street-layout GAN on label maps only: StyleGAN2-style or DCGAN.

Per step, as stylegan2-ada-pytorch's ``StyleGAN2Loss`` without path-length regularization: a generator
update with the non-saturating logistic loss softplus(-D(G(z))), then a discriminator update with
softplus(D(G(z))) + softplus(-D(real)), and every ``r1_every`` steps the R1 penalty gamma / 2 *
|grad D(real)|^2 (lazy regularization: scaled by ``r1_every``). Real maps reach D one-hot; fakes as the
softmax (or Gumbel-softmax) of their logits, so D's gradients reach G. The StyleGAN2 generator mixes
styles from two z with ``style_mixing_prob``, updates the mean w it truncates toward, and an
exponential moving average of its weights (``ema_decay``) is what gets exported, as StyleGAN's G_ema.
DCGAN trains with the same loss (its BCE) and Adam (0.5, 0.999), no R1, no mixing.

``target="photos"`` trains the same StyleGAN2 on the photos instead (the paper's one-stage baseline): G
has 3 outputs read as RGB in [-1, 1] (StyleGAN2's ToRGB is a 3-output ToLogits), D sees the real photos
and the raw fakes (no softmax); everything else is the same. It exports a card of kind ``photo-gan``,
which no layout or serving path accepts (``cityserve.models.photo_gan`` draws its samples).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..card_sections import LayoutSection
from ..cards import ModelCard
from ..errors import ConfigError
from ..labels import get_label_set
from ..models.layout_dcgan import DCGANDiscriminator, DCGANGenerator, LayoutDCGANConfig
from ..models.layout_stylegan import (
    LayoutDiscriminator,
    LayoutDiscriminatorConfig,
    LayoutGenerator,
    LayoutStyleGANConfig,
    r1_penalty,
    soft_one_hot,
)
from ..models.render import one_hot
from ..options import option
from .common import colorize, label_set_for_card, palette_tensor, to_unit
from .ema import EMA
from .entry import Preset
from .runner import Runner, Trainer

ARCHS = ("stylegan2", "dcgan")
CARD_ARCHS = {"stylegan2": "layout-stylegan2", "dcgan": "layout-dcgan"}
TARGETS = ("labels", "photos")
PHOTO_KIND, PHOTO_ARCH = "photo-gan", "photo-stylegan2"  # the card of a photos-mode run


@dataclasses.dataclass
class LayoutModelConfig:
    """The layout networks' options, for either architecture (the run adds the label set and size)."""

    arch: str = option(
        "stylegan2", "stylegan2: mapping + modulated convs + noise; dcgan: the baseline", cli={"choices": ARCHS}
    )
    z_dim: int = option(128, "latent size")
    w_dim: int = option(128, "stylegan2: intermediate latent (w) size")
    mapping_layers: int = option(4, "stylegan2: mapping network depth")
    channel_base: int = option(256, "stylegan2: channels at the 4-row base grid (G and D), halved per doubling")
    channel_min: int = option(32, "stylegan2: fewest channels of a block")
    mbstd_group_size: int = option(4, "stylegan2: minibatch-stddev group size in D (0: off)")
    ngf: int = option(32, "dcgan: generator channels at full resolution")
    ndf: int = option(32, "dcgan: discriminator channels at full resolution")
    target: str = option(
        "labels",
        "labels: label maps (per-class logits); photos: the same StyleGAN2 on RGB photos (the one-stage baseline)",
        cli={"choices": TARGETS},
    )

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ConfigError(f"arch must be one of {', '.join(ARCHS)}, not {self.arch!r}")
        if self.target not in TARGETS:
            raise ConfigError(f"target must be one of {', '.join(TARGETS)}, not {self.target!r}")
        if self.target == "photos" and self.arch != "stylegan2":
            raise ConfigError("--target photos trains the stylegan2 architecture only")

    @property
    def photos(self) -> bool:
        return self.target == "photos"

    def generator_config(self, num_classes: int, size: tuple[int, int]):
        h, w = size
        if self.arch == "dcgan":
            return LayoutDCGANConfig(num_classes, h, w, self.z_dim, self.ngf, self.ndf)
        return LayoutStyleGANConfig(
            num_classes, h, w, self.z_dim, self.w_dim, self.mapping_layers, self.channel_base, self.channel_min
        )

    def discriminator_config(self, num_classes: int, size: tuple[int, int]):
        if self.arch == "dcgan":
            return self.generator_config(num_classes, size)
        h, w = size
        return LayoutDiscriminatorConfig(num_classes, h, w, self.channel_base, self.channel_min, self.mbstd_group_size)


@dataclasses.dataclass
class LayoutTrainConfig:
    """Training options (StyleGAN2's names: r1_gamma, style_mixing_prob, ema)."""

    lr: float = option(0.0025, "Adam learning rate of G and D (StyleGAN2: 0.0025; DCGAN: 2e-4)")
    beta1: float = option(0.0, "Adam beta1 (StyleGAN2: 0; DCGAN: 0.5)")
    beta2: float = option(0.99, "Adam beta2 (StyleGAN2: 0.99; DCGAN: 0.999)")
    r1_gamma: float = option(1.0, "R1 weight (0: off)")
    r1_every: int = option(16, "steps between R1 penalties (lazy regularization)")
    style_mixing_prob: float = option(0.9, "stylegan2: probability of mixing the styles of two z")
    fake_input: str = option(
        "softmax",
        "what D sees of a fake: softmax of the logits or a Gumbel-softmax sample",
        cli={"choices": ("softmax", "gumbel")},
    )
    tau: float = option(1.0, "softmax / Gumbel temperature of the fakes D sees")
    ema_decay: float = option(0.999, "export an exponential moving average of G (0: off)")
    truncation_psi: float = option(1.0, "the truncation the card records for generation (1: none; e.g. 0.7)")
    min_area: int = option(0, "the speck size (pixels) the card records: smaller components are merged when generating")

    def __post_init__(self) -> None:
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1), not {self.ema_decay}")
        if self.r1_every < 1:
            raise ConfigError(f"r1_every must be >= 1, not {self.r1_every}")
        if self.tau <= 0:
            raise ConfigError(f"tau must be > 0, not {self.tau}")
        if not 0.0 <= self.style_mixing_prob <= 1.0:
            raise ConfigError(f"style_mixing_prob must be in [0, 1], not {self.style_mixing_prob}")


def build_layout_networks(mcfg: LayoutModelConfig, num_classes: int, size: tuple[int, int]):
    """(generator config, discriminator config, G, D) of ``mcfg`` at ``size`` for ``num_classes`` ids
    (for 3 RGB channels when ``mcfg.target`` is photos)."""
    if mcfg.photos:
        num_classes = 3
    gcfg, dcfg = mcfg.generator_config(num_classes, size), mcfg.discriminator_config(num_classes, size)
    if mcfg.arch == "dcgan":
        return gcfg, dcfg, DCGANGenerator(gcfg), DCGANDiscriminator(dcfg)
    return gcfg, dcfg, LayoutGenerator(gcfg), LayoutDiscriminator(dcfg)


class LayoutTrainer(Trainer):
    def __init__(
        self,
        runner: Runner,
        mcfg: LayoutModelConfig,
        label_set: Any,
        tcfg: LayoutTrainConfig,
        size: tuple[int, int],
        name: str = "layout",
    ):
        super().__init__(runner)
        self.name, self.mcfg, self.tcfg, self.label_set = name, mcfg, tcfg, label_set
        self.num_classes = get_label_set(label_set).num_ids
        self.size = (int(size[0]), int(size[1]))
        self.stylegan = mcfg.arch == "stylegan2"
        self.photos = mcfg.photos
        self.gcfg, self.dcfg, G, D = build_layout_networks(mcfg, self.num_classes, self.size)
        self.G, self.netG = runner.distribute(G)
        self.D, self.netD = runner.distribute(D)
        betas = (tcfg.beta1, tcfg.beta2)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=tcfg.lr, betas=betas)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=tcfg.lr, betas=betas)
        self.scaler_G, self.scaler_D = runner.make_scaler(), runner.make_scaler()
        self.ema = EMA(self.G, tcfg.ema_decay) if tcfg.ema_decay > 0 else None
        self.palette = palette_tensor(label_set)

    # -- Trainer interface
    def modules(self) -> dict[str, nn.Module]:
        m = {"netG": self.G, "netD": self.D}
        if self.ema is not None:
            m["netEMA"] = self.ema.module
        return m

    def train(self) -> None:
        super().train()
        if self.ema is not None:
            self.ema.module.eval()

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"G": self.opt_G, "D": self.opt_D}

    def scalers(self) -> dict[str, torch.amp.GradScaler]:
        return {"G": self.scaler_G, "D": self.scaler_D}

    def identity(self) -> dict[str, Any]:
        return {
            "arch": CARD_ARCHS[self.mcfg.arch],
            "config": dataclasses.asdict(self.gcfg),
            "D": dataclasses.asdict(self.dcfg),
            "ema": self.tcfg.ema_decay,
            "label_set": label_set_for_card(self.label_set),
            "seed": self.runner.cfg.seed,
            "batch_size": self.runner.cfg.batch_size,
            "world_size": self.runner.ctx.world_size,
            **({"target": "photos"} if self.photos else {}),  # label runs keep their old identity
        }

    def _fake_logits(self, b: int, device: torch.device, update_emas: bool) -> torch.Tensor:
        z = torch.randn(b, self.mcfg.z_dim, device=device)
        if not self.stylegan:
            return self.netG(z)
        mix_z, cutoff = None, None
        if self.tcfg.style_mixing_prob > 0 and float(torch.rand([])) < self.tcfg.style_mixing_prob:
            mix_z = torch.randn(b, self.mcfg.z_dim, device=device)
            cutoff = int(torch.randint(1, self.G.num_ws, []))
        return self.netG(z, mix_z=mix_z, mix_cutoff=cutoff, update_emas=update_emas)

    def _d_input(self, logits: torch.Tensor) -> torch.Tensor:
        if self.photos:  # RGB fakes reach D as they are, like StyleGAN2's
            return self.runner.to_memory_format(logits)
        return self.runner.to_memory_format(soft_one_hot(logits, self.tcfg.fake_input, self.tcfg.tau))

    def train_step(self, batch: dict[str, Any], step: int) -> dict[str, torch.Tensor]:
        t = self.tcfg
        labels = batch["labels"]
        if self.photos:
            real = self.runner.to_memory_format(batch["image"].float())  # [-1, 1], as the dataset gives it
        else:
            real = self.runner.to_memory_format(one_hot(labels, self.num_classes))
        b = real.shape[0]
        # generator: non-saturating logistic loss
        with self.runner.autocast():
            logits = self._fake_logits(b, real.device, update_emas=True)
            g = {"G_adv": F.softplus(-self.netD(self._d_input(logits)).float()).mean()}
        self.runner.guard(step, g)
        self.runner.backward_step(sum(g.values()), self.opt_G, self.scaler_G)
        # discriminator on fresh fakes, then (lazily) R1 on the reals in float32
        with self.runner.autocast():
            with torch.no_grad():
                fake_d = self._d_input(self._fake_logits(b, real.device, update_emas=False))
            d = {
                "D_fake": F.softplus(self.netD(fake_d).float()).mean(),
                "D_real": F.softplus(-self.netD(real).float()).mean(),
            }
        if t.r1_gamma > 0 and step % t.r1_every == 0:
            d["D_r1"] = r1_penalty(self.netD, real) * (t.r1_gamma / 2) * t.r1_every
        self.runner.guard(step, d)
        self.runner.backward_step(sum(d.values()), self.opt_D, self.scaler_D)
        if self.ema is not None:
            self.ema.update(self.G, step)
        if self.photos:  # generated (G's step) | generated (D's step) | real photos
            self.last_visuals = (to_unit(logits), to_unit(fake_d), to_unit(real))
            return {k: v.detach() for k, v in {**g, **d}.items()}
        fake_ids = logits.detach().argmax(1, keepdim=True)
        soft = torch.einsum(
            "bchw,cd->bdhw", torch.softmax(logits.detach().float(), 1), self.palette.to(real.device).float() / 255
        )
        self.last_visuals = (colorize(fake_ids, self.palette), soft.clamp(0, 1), colorize(labels, self.palette))
        return {k: v.detach() for k, v in {**g, **d}.items()}

    def export(self) -> tuple[ModelCard, dict[str, torch.Tensor]]:
        G = self.ema.module if self.ema is not None else self.G
        sd = {k: v.detach().cpu().contiguous() for k, v in G.state_dict().items()}
        h, w = self.size
        if self.photos:
            return self._photo_card(), sd
        card = ModelCard(
            name=self.runner.cfg.name,
            kind="layout",
            arch=CARD_ARCHS[self.mcfg.arch],
            config=dataclasses.asdict(self.gcfg),
            label_set=label_set_for_card(self.label_set),
            height=h,
            width=w,
            layout=LayoutSection(
                z_dim=self.mcfg.z_dim,
                truncation_psi=self.tcfg.truncation_psi if self.stylegan else 1.0,
                noise_mode="const",
                min_area=self.tcfg.min_area,
            ),
            training={**dataclasses.asdict(self.tcfg), "model": dataclasses.asdict(self.mcfg)},
            notes={"discriminator": dataclasses.asdict(self.dcfg)},
        )
        return card, sd

    def _photo_card(self) -> ModelCard:
        h, w = self.size
        return ModelCard(
            name=self.runner.cfg.name,
            kind=PHOTO_KIND,
            arch=PHOTO_ARCH,
            config=dataclasses.asdict(self.gcfg),
            label_set=label_set_for_card(self.label_set),
            height=h,
            width=w,
            training={**dataclasses.asdict(self.tcfg), "model": dataclasses.asdict(self.mcfg)},
            notes={
                "what": "unconditional StyleGAN2 trained on photos (no label maps): 3 outputs = RGB in [-1, 1]; "
                "config.num_classes is the output channel count; label_set is the training data's only",
                "sampling": "cityserve.models.photo_gan: z from each seed's CPU generator, truncation 1, const noise",
                "discriminator": dataclasses.asdict(self.dcfg),
            },
        )


def _preset(size, model: LayoutModelConfig, train: LayoutTrainConfig, batch_size: int, **kw) -> Preset:
    return Preset(model, train, size, batch_size, label_set="cityscapes", **kw)


PRESETS: dict[str, Preset] = {
    # StyleGAN2 at 128x256 Cityscapes ids (the issue's full size), StyleGAN2's config-f-like optimiser
    "cityscapes": _preset((128, 256), LayoutModelConfig(), LayoutTrainConfig(r1_gamma=1.0), 16, epochs=100),
    # the paper's DCGAN baseline at the same size
    "dcgan": _preset(
        (128, 256),
        LayoutModelConfig(arch="dcgan", z_dim=100, ngf=64, ndf=64),
        LayoutTrainConfig(lr=2e-4, beta1=0.5, beta2=0.999, r1_gamma=0.0, ema_decay=0.0),
        64,
        epochs=50,
    ),
    # synthetic scenes on a CPU
    "demo": _preset(
        (64, 128),
        LayoutModelConfig(z_dim=64, w_dim=64, channel_base=128, channel_min=16),
        LayoutTrainConfig(),
        8,
        max_steps=2000,
    ),
    # tests
    "tiny": _preset(
        (32, 64),
        LayoutModelConfig(z_dim=8, w_dim=8, mapping_layers=2, channel_base=16, channel_min=4, ngf=4, ndf=4),
        LayoutTrainConfig(r1_every=2, ema_decay=0.9),
        2,
        epochs=1,
    ),
}

"""SPADE / GauGAN training, as NVlabs SPADE's ``Pix2PixModel`` + ``Pix2PixTrainer`` do it.

Per step: a generator update (hinge GAN loss against the multiscale discriminator, discriminator
feature matching x lambda_feat, VGG19 perceptual loss x lambda_vgg when a weights file is given, KL x
lambda_kld when the model has a VAE encoder), then a discriminator update on a freshly generated,
detached fake (hinge loss on fake and real). Fake and real are discriminated in one batch
(``cat([fake, real])``). Two time-scale update rule: G lr = lr / 2, D lr = lr * 2, Adam (0, 0.9); with
``no_TTUR`` both use lr and (beta1, beta2). The learning rate is constant for ``niter`` epochs and
decays linearly to zero over the last ``niter_decay``. Xavier init (gain 0.02), SPADE's default.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Optional

import torch
from torch import nn

from ..cards import ModelCard, load_card
from ..errors import ConfigError
from ..models.render import instance_edges, one_hot
from .common import colorize, init_weights, label_set_for_card, palette_tensor, to_unit
from .discriminators import MultiscaleDConfig, MultiscaleDiscriminator, divide_pred
from .losses import HingeGANLoss, build_vgg_loss, feature_matching_loss, kl_divergence
from .runner import Runner, Trainer

log = logging.getLogger("cityserve.training")


@dataclasses.dataclass
class SPADETrainConfig:
    """Training options under SPADE's option names (defaults: SPADE's train options)."""

    lr: float = 2e-4
    beta1: float = 0.0
    beta2: float = 0.9
    no_TTUR: bool = False
    niter_decay: int = 0  # epochs of linear decay at the end of the run
    lambda_feat: float = 10.0
    lambda_vgg: float = 10.0
    lambda_kld: float = 0.05
    no_ganFeat_loss: bool = False
    vgg_weights: Optional[str] = None  # torchvision vgg19 state dict; None: no perceptual loss (warned)
    ndf: int = 64
    n_layers_D: int = 4
    num_D: int = 2
    norm_D: str = "spectralinstance"
    init_type: str = "xavier"
    init_variance: float = 0.02
    init_from: Optional[str] = None  # a SPADE card (e.g. from `cityserve import spade`) to fine-tune
    init_D: Optional[str] = None  # an official latest_net_D.pth to start the discriminator from


def spade_config_for(label_set: Any, size: tuple[int, int], **options: Any):
    """A SPADEConfig whose label channels fit ``label_set`` and whose output is exactly ``size`` (H, W)."""
    from ..labels import get_label_set
    from ..models.spade import SPADEConfig

    ls = get_label_set(label_set)
    h, w = size
    dontcare = ls.dontcare_id is not None
    options.setdefault("label_nc", ls.num_ids - int(dontcare))
    options.setdefault("contain_dontcare_label", dontcare)
    cfg = SPADEConfig(crop_size=w, aspect_ratio=w / h, **options)
    if (cfg.height, cfg.width) != (h, w):
        raise ConfigError(
            f"SPADE with num_upsampling_layers {cfg.num_upsampling_layers!r} cannot produce {h}x{w}: "
            f"width and height must be multiples of {2**cfg.n_up} (it would give "
            f"{cfg.height}x{cfg.width})"
        )
    if cfg.num_classes < ls.num_ids:
        raise ConfigError(
            f"label set {ls.name!r} has {ls.num_ids} ids but the generator only {cfg.num_classes} channels"
        )
    return cfg


class SPADETrainer(Trainer):
    def __init__(self, runner: Runner, gcfg, label_set: Any, tcfg: SPADETrainConfig, name: str = "spade"):
        super().__init__(runner)
        from ..models.spade import ConvEncoder, SPADEGenerator

        self.name = name
        self.tcfg = tcfg
        self.label_set = label_set
        self.init_card: Optional[ModelCard] = None
        enc = None
        if tcfg.init_from:
            G, enc, gcfg, self.label_set = self._from_card(tcfg.init_from)
        else:
            G = init_weights(SPADEGenerator(gcfg), tcfg.init_type, tcfg.init_variance)
            if gcfg.use_vae:
                enc = init_weights(ConvEncoder(gcfg), tcfg.init_type, tcfg.init_variance)
        self.gcfg = gcfg
        dcfg = MultiscaleDConfig(
            input_nc=gcfg.semantic_nc + gcfg.output_nc,
            ndf=tcfg.ndf,
            n_layers_D=tcfg.n_layers_D,
            num_D=tcfg.num_D,
            norm_D=tcfg.norm_D,
            get_intermediate_features=not tcfg.no_ganFeat_loss,
        )
        self.dcfg = dcfg
        D = init_weights(MultiscaleDiscriminator(dcfg), tcfg.init_type, tcfg.init_variance)
        if tcfg.init_D:
            from ..checkpoints import safe_load, state_dict_from

            D.load_state_dict(state_dict_from(safe_load(tcfg.init_D), tcfg.init_D), strict=True)

        self.G, self.netG = runner.distribute(G)
        self.D, self.netD = runner.distribute(D)
        self.E, self.netE = runner.distribute(enc) if enc is not None else (None, None)

        if tcfg.no_TTUR:
            betas, g_lr, d_lr = (tcfg.beta1, tcfg.beta2), tcfg.lr, tcfg.lr
        else:
            betas, g_lr, d_lr = (0.0, 0.9), tcfg.lr / 2, tcfg.lr * 2
        g_params = list(self.G.parameters()) + (list(self.E.parameters()) if self.E is not None else [])
        self.opt_G = torch.optim.Adam(g_params, lr=g_lr, betas=betas)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=d_lr, betas=betas)
        self.base_lr = {"G": g_lr, "D": d_lr}
        self.scaler_G, self.scaler_D = runner.make_scaler(), runner.make_scaler()
        self.gan_loss = HingeGANLoss()
        self.vgg = build_vgg_loss(tcfg.vgg_weights)
        if self.vgg is not None:
            self.vgg = self.vgg.to(runner.device)
        self.palette = palette_tensor(self.label_set)

    def _from_card(self, path: str):
        from ..labels import get_label_set
        from ..models.registry import build_from_card, config_from_card
        from ..models.spade import has_encoder, load_encoder

        card = load_card(path)
        if card.arch != "spade":
            raise ConfigError(f"--init-from {path}: a {card.arch} model, not SPADE")
        self.init_card = card
        gcfg = config_from_card(card)
        G = build_from_card(card, load=True, inference=False).train()
        G.requires_grad_(True)
        enc = None
        if gcfg.use_vae:
            if not has_encoder(card):
                raise ConfigError(
                    f"--init-from {path}: a VAE model without its encoder (netE) weights; "
                    f"import it with its latest_net_E.pth"
                )
            enc = load_encoder(card, inference=False).train()
            enc.requires_grad_(True)
        get_label_set(card.label_set)  # fail early on a card whose label set is unreadable
        return G, enc, gcfg, card.label_set

    # -- Trainer interface
    def modules(self) -> dict[str, nn.Module]:
        m = {"netG": self.G, "netD": self.D}
        if self.E is not None:
            m["netE"] = self.E
        return m

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"G": self.opt_G, "D": self.opt_D}

    def scalers(self) -> dict[str, torch.amp.GradScaler]:
        return {"G": self.scaler_G, "D": self.scaler_D}

    def identity(self) -> dict[str, Any]:
        return {
            "arch": "spade",
            "config": dataclasses.asdict(self.gcfg),
            "D": dataclasses.asdict(self.dcfg),
            "label_set": label_set_for_card(self.label_set),
            "seed": self.runner.cfg.seed,
            "batch_size": self.runner.cfg.batch_size,
            "world_size": self.runner.ctx.world_size,
        }

    def set_lr(self, step: int, epoch: int, steps_per_epoch: int, total_steps: int) -> None:
        decay = self.tcfg.niter_decay
        f = 1.0
        if decay > 0:
            total_epochs = -(-total_steps // steps_per_epoch)
            f = 1.0 - max(0, epoch - (total_epochs - decay)) / decay
        for k, opt in self.optimizers().items():
            for g in opt.param_groups:
                g["lr"] = self.base_lr[k] * f

    def semantics(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        sem = one_hot(batch["labels"], self.gcfg.num_classes)
        if not self.gcfg.no_instance:
            sem = torch.cat([sem, instance_edges(batch["instances"])], dim=1)
        return sem

    def _generate(self, sem: torch.Tensor, real: torch.Tensor, kld: bool):
        z, loss_kld = None, None
        if self.netE is not None:
            mu, logvar = self.netE(real)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            if kld:
                loss_kld = kl_divergence(mu, logvar) * self.tcfg.lambda_kld
        fake = self.netG(sem, z) if self.gcfg.use_vae else self.netG(sem)
        return fake, loss_kld

    def train_step(self, batch: dict[str, Any], step: int) -> dict[str, torch.Tensor]:
        real = batch["image"]
        sem = self.semantics(batch)
        t = self.tcfg
        # generator
        with self.runner.autocast():
            fake, loss_kld = self._generate(sem, real, kld=True)
            pred = self.netD(torch.cat([torch.cat([sem, fake], 1), torch.cat([sem, real], 1)], 0))
            pred_fake, pred_real = divide_pred(pred)
            g = {"G_GAN": self.gan_loss(pred_fake, True, for_discriminator=False)}
            if not t.no_ganFeat_loss:
                g["G_GAN_Feat"] = feature_matching_loss(pred_fake, pred_real, t.lambda_feat)
            if self.vgg is not None:
                g["G_VGG"] = self.vgg(fake.float(), real.float()) * t.lambda_vgg
            if loss_kld is not None:
                g["KLD"] = loss_kld
        self.runner.guard(step, g)
        self.runner.backward_step(sum(g.values()), self.opt_G, self.scaler_G)
        # discriminator, on a fresh fake from the updated generator
        with self.runner.autocast():
            with torch.no_grad():
                fake_d, _ = self._generate(sem, real, kld=False)
            fake_d = fake_d.detach()
            pred = self.netD(torch.cat([torch.cat([sem, fake_d], 1), torch.cat([sem, real], 1)], 0))
            pred_fake, pred_real = divide_pred(pred)
            d = {
                "D_Fake": self.gan_loss(pred_fake, False, for_discriminator=True),
                "D_real": self.gan_loss(pred_real, True, for_discriminator=True),
            }
        self.runner.guard(step, d)
        self.runner.backward_step(sum(d.values()), self.opt_D, self.scaler_D)
        self.last_visuals = (colorize(batch["labels"], self.palette), to_unit(fake), to_unit(real))
        return {k: v.detach() for k, v in {**g, **d}.items()}

    def export(self) -> tuple[ModelCard, dict[str, torch.Tensor]]:
        sd = {k: v.detach().cpu() for k, v in self.G.state_dict().items()}
        encoder = None
        if self.E is not None:
            from ..models.spade import ENCODER_PREFIX

            sd.update({ENCODER_PREFIX + k: v.detach().cpu() for k, v in self.E.state_dict().items()})
            encoder = {"prefix": ENCODER_PREFIX}
        card = ModelCard(
            name=self.runner.cfg.name,
            kind="generator",
            arch="spade",
            config=dataclasses.asdict(self.gcfg),
            label_set=label_set_for_card(self.label_set),
            height=self.gcfg.height,
            width=self.gcfg.width,
            training=dataclasses.asdict(self.tcfg),
            encoder=encoder,
            notes={"discriminator": dataclasses.asdict(self.dcfg)},
        )
        if self.init_card is not None:
            card.provenance["init_from"] = {
                "card": str(self.init_card.path),
                "name": self.init_card.name,
                "sha256": self.init_card.sha256,
            }
        return card, sd


# ---- presets ------------------------------------------------------------------------------------------
# name -> (generator options, training options, size (H, W), batch size, epochs, label set)
PRESETS: dict[str, dict[str, Any]] = {
    # The Hong Kong street-scene setup: Adam lr 2e-4 for both networks (no TTUR), batch 1, 100 epochs at
    # a constant rate, Xavier init; SPADE's generator at its Cityscapes resolution.
    "hongkong": dict(
        gen=dict(ngf=64, num_upsampling_layers="more"),
        train=dict(lr=2e-4, no_TTUR=True, beta1=0.0, beta2=0.9, niter_decay=0, init_type="xavier"),
        size=(256, 512),
        batch_size=1,
        epochs=100,
        label_set="cityscapes",
    ),
    # SPADE's published Cityscapes run: 256x512, 35 label channels + instance edges, upsampling 'more',
    # batch 16, niter 100 + niter_decay 100 (200 epochs), TTUR (G 1e-4, D 4e-4, Adam (0, 0.9)),
    # lambda_feat 10, lambda_vgg 10, multiscale D (2 x 4 layers, spectral instance norm), Xavier init.
    "cityscapes": dict(
        gen=dict(ngf=64, num_upsampling_layers="more", label_nc=35, contain_dontcare_label=False),
        train=dict(lr=2e-4, niter_decay=100),
        size=(256, 512),
        batch_size=16,
        epochs=200,
        label_set="cityscapes",
    ),
    # SPADE's published ADE20K run: 256x256, 150 classes + dontcare, no instances, batch 32,
    # niter 100 + niter_decay 100, TTUR.
    "ade20k": dict(
        gen=dict(ngf=64, num_upsampling_layers="normal", no_instance=True),
        train=dict(lr=2e-4, niter_decay=100),
        size=(256, 256),
        batch_size=32,
        epochs=200,
        label_set="ade20k",
    ),
    # Synthetic Cityscapes-like scenes on a 2-core CPU. SPADE's cost is dominated by the 128-wide hidden
    # layer of every SPADE norm at full resolution; nhidden 32 makes a step ~2.5x cheaper. The shipped demo
    # model adds --ngf 8 --norm-G spectralspadebatch1x1 --size 256x512 (~1.2 s a step on 2 cores; the exact
    # command is in models/demo/README.md and in its card).
    "demo": dict(
        gen=dict(ngf=16, nhidden=32, num_upsampling_layers="normal"),
        train=dict(lr=2e-4, ndf=16, n_layers_D=3, num_D=2),
        size=(128, 256),
        batch_size=1,
        epochs=None,
        label_set="cityscapes",
    ),
    # The smallest sensible configuration: for tests and smoke runs.
    "tiny": dict(
        gen=dict(ngf=2, num_upsampling_layers="normal"),
        train=dict(ndf=4, n_layers_D=2, num_D=2),
        size=(32, 64),
        batch_size=1,
        epochs=1,
        label_set="cityscapes",
    ),
}

"""SPADE / GauGAN training, as NVlabs SPADE's ``Pix2PixModel`` + ``Pix2PixTrainer`` do it, or with the
OASIS objective (``objective="oasis"``, see ``oasis.py``).

SPADE objective, per step: a generator update (hinge GAN loss against the multiscale discriminator, discriminator
feature matching x lambda_feat, VGG19 perceptual loss x lambda_vgg when a weights file is given, KL x
lambda_kld when the model has a VAE encoder), then a discriminator update on a freshly generated,
detached fake (hinge loss on fake and real). Fake and real are discriminated in one batch
(``cat([fake, real])``). Two time-scale update rule: G lr = lr / 2, D lr = lr * 2, Adam (0, 0.9); with
``no_TTUR`` both use lr and (beta1, beta2). The learning rate is constant for ``niter`` epochs and
decays linearly to zero over the last ``niter_decay``. Xavier init (gain 0.02), SPADE's default.

OASIS objective, per step: a generator update with the class-balanced (N+1)-class loss of the U-Net
discriminator on the fake (+ VGG when a weights file is given), then a discriminator update: the same
loss on real (targets: the label classes) and fake (target: "fake"), plus LabelMix x lambda_labelmix.
Adam (beta1, beta2) = (0, 0.999) with G lr / 2 and D lr * 2 (OASIS: 1e-4 / 4e-4). The generator usually
takes 3D noise (``noise_dim`` 64 in OASIS) so one label map gives a different photo per seed.

Either objective: ``ema_decay`` > 0 keeps an exponential moving average of the generator's weights,
which is what gets exported. The steps run under the runner's precision (BF16 autocast on CPUs and GPUs
that have it) with losses in float32.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Optional

import torch
from torch import nn

from ..cards import ModelCard, load_card, portable_path
from ..checkpoints import safe_load, state_dict_from
from ..data.depth import STAGES, LogDepth, card_depth, depth_section
from ..errors import CheckpointError, ConfigError
from ..labels import get_label_set
from ..models.registry import build_from_card, config_from_card
from ..models.render import instance_edges, one_hot
from ..models.spade import ENCODER_PREFIX, ConvEncoder, SPADEConfig, SPADEGenerator
from ..models.spade_style import has_encoder, load_encoder
from ..options import option
from .common import colorize, init_weights, label_set_for_card, palette_tensor, to_unit
from .discriminators import MultiscaleDConfig, MultiscaleDiscriminator, divide_pred
from .ema import EMA, refresh_spectral_vectors
from .losses import HingeGANLoss, build_vgg_loss, feature_matching_loss, kl_divergence
from .oasis import OASISDConfig, OASISDiscriminator, class_balance_weights, labelmix, labelmix_mask, n_plus_1_loss
from .runner import Runner, Trainer
from .state import STATE_FORMAT

OBJECTIVES = ("spade", "oasis")
# The OASIS discriminator's spectral-normed convolutions start at xavier gain 1, not SPADE's init_variance
# (0.02): Adam's first steps move every weight by about lr, which at 2e-4-4e-4 is a third of a weight
# initialised at gain 0.02; the one power iteration per forward then underestimates the new spectral
# norms, the 12-conv U-Net's logits jumped from 0.01 to 1e4-1e5 at the third step, and the gradient it
# left in Adam's second moment froze the discriminator for thousands of steps (measured on the demo
# preset: D_real stuck at ln(35), the loss of a uniform guess). tests/test_oasis.py keeps it out.
OASIS_D_INIT_GAIN = 1.0
#: photo: label -> photo (plain SPADE); depth: label -> normalised log-depth (stage 1 of the depth-aware
#: pair); photo-from-depth: label + depth -> photo (stage 2).
TRAIN_STAGES = ("photo",) + STAGES
DEPTH_SOURCES = ("true", "predicted")

log = logging.getLogger("cityserve.training")


@dataclasses.dataclass
class SPADETrainConfig:
    """Training options under SPADE's (and OASIS's) option names; defaults are SPADE's train options."""

    objective: str = option(
        "spade",
        "spade: hinge GAN + discriminator feature matching (+ VGG); oasis: N+1-class U-Net discriminator + LabelMix",
        cli={"choices": OBJECTIVES},
    )
    lr: float = option(2e-4, "base learning rate (with TTUR: G lr / 2, D lr * 2)")
    beta1: float = option(0.0, "Adam beta1 (SPADE's TTUR uses 0)")
    beta2: float = option(0.9, "Adam beta2 (SPADE's TTUR uses 0.9; OASIS 0.999)")
    no_TTUR: bool = option(False, "same lr for G and D")
    niter_decay: int = option(0, "epochs of linear lr decay at the end of the run")
    lambda_feat: float = option(10.0, "spade objective: feature-matching weight")
    lambda_vgg: float = option(10.0, "VGG19 perceptual-loss weight (with --vgg-weights)")
    lambda_kld: float = option(0.05, "VAE KL weight")
    no_ganFeat_loss: bool = option(False, "spade objective: no feature matching")
    vgg_weights: Optional[str] = option(
        None, "local torchvision VGG19 state dict (vgg19-dcbb9e9d.pth) for the perceptual loss; without it: off"
    )
    ndf: int = option(64, "discriminator width")
    n_layers_D: int = option(4, "spade objective: layers per PatchGAN")
    num_D: int = option(2, "spade objective: PatchGAN scales")
    norm_D: str = option("spectralinstance", "spade objective: discriminator norm")
    init_type: str = option(
        "xavier", "", cli={"choices": ("xavier", "normal", "xavier_uniform", "kaiming", "orthogonal", "none")}
    )
    init_variance: float = option(0.02, "init gain")
    init_from: Optional[str] = option(
        None,
        "a SPADE card to fine-tune (e.g. from `cityserve import spade`, or a run at another --size: the "
        "convolutions fit any size); its architecture and label set are used",
    )
    init_D: Optional[str] = option(
        None,
        "start the discriminator from an official latest_net_D.pth or a cityserve training state (state/step_N.pt)",
    )
    lambda_labelmix: float = option(10.0, "oasis objective: LabelMix weight")
    num_res_blocks_D: int = option(6, "oasis objective: U-Net discriminator depth")
    no_balancing_inloss: bool = option(False, "oasis objective: no class balancing in the N+1 loss")
    ema_decay: float = option(0.0, "export an exponential moving average of G with this decay (e.g. 0.999; 0: off)")
    stage: str = option(
        "photo",
        "photo: label -> photo; depth-aware pair: depth (stage 1, label -> depth) or photo-from-depth "
        "(stage 2, label + depth -> photo); the depth stages read depth maps with the data",
        cli={"choices": TRAIN_STAGES},
    )
    depth_source: str = option(
        "true",
        "photo-from-depth: condition on the data's true depth, or on --depth-model's predictions "
        "(what the chained graph feeds it)",
        cli={"choices": DEPTH_SOURCES},
    )
    depth_model: Optional[str] = option(None, "the stage-1 (depth) card for --depth-source predicted")
    lambda_depth_l1: float = option(10.0, "depth stage: weight of the L1 loss on normalised log-depth")
    depth_near: float = option(1.0, "depth stages: metres at normalised log-depth -1")
    depth_far: float = option(1000.0, "depth stages: metres at normalised log-depth +1 (the synthetic sky)")
    lambda_ms: float = option(
        0.0,
        "mode seeking (MSGAN, Mao et al. 2019) for noise generators: weight of 1 / (|G(s,z1) - G(s,z2)| / "
        "|z1 - z2|), so different noise gives different photos (MSGAN uses 1; 0: off)",
    )

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"objective must be one of {', '.join(OBJECTIVES)}, not {self.objective!r}")
        if self.stage not in TRAIN_STAGES:
            raise ConfigError(f"stage must be one of {', '.join(TRAIN_STAGES)}, not {self.stage!r}")
        if self.depth_source not in DEPTH_SOURCES:
            raise ConfigError(f"depth_source must be one of {', '.join(DEPTH_SOURCES)}, not {self.depth_source!r}")
        if self.stage == "depth" and self.objective != "spade":
            raise ConfigError("the depth stage trains with the spade objective (OASIS's discriminator segments photos)")
        if self.depth_source == "predicted" and not self.depth_model:
            raise ConfigError("--depth-source predicted needs --depth-model CARD (a stage-1 depth card)")
        if self.depth_model and (self.stage != "photo-from-depth" or self.depth_source != "predicted"):
            raise ConfigError("--depth-model is for --stage photo-from-depth --depth-source predicted")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1), not {self.ema_decay}")
        if self.lambda_ms < 0:
            raise ConfigError(f"lambda_ms must be >= 0, not {self.lambda_ms}")
        LogDepth(near=float(self.depth_near), far=float(self.depth_far))  # near < far, both positive

    @property
    def depth_norm(self) -> LogDepth:
        return LogDepth(near=float(self.depth_near), far=float(self.depth_far))


def stage_config(cfg: SPADEConfig, stage: str) -> SPADEConfig:
    """The generator config of a training stage: 1 output channel for depth, 1 extra condition channel
    (the depth map) for photo-from-depth, the config itself for photo."""
    if stage == "depth":
        if cfg.use_vae:
            raise ConfigError("the depth stage has no VAE style encoder (it encodes photos)")
        return dataclasses.replace(cfg, output_nc=1, extra_condition_nc=0)
    if stage == "photo-from-depth":
        return dataclasses.replace(cfg, output_nc=3, extra_condition_nc=1)
    return cfg


def mode_seeking_loss(a: torch.Tensor, b: torch.Tensor, za: torch.Tensor, zb: torch.Tensor) -> torch.Tensor:
    """MSGAN's term, in float32: 1 / (mean |a - b| / mean |za - zb| + 1e-5). It is large while the generator
    ignores its noise (equal photos for different z) and falls as the photos move apart."""
    ratio = (a.float() - b.float()).abs().mean() / (za.float() - zb.float()).abs().mean()
    return 1.0 / (ratio + 1e-5)


def _twice(weights: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if weights is None else torch.cat([weights, weights])


def discriminator_state(path: str) -> dict[str, torch.Tensor]:
    """A discriminator state dict from an official ``latest_net_D.pth`` or a cityserve training state."""
    obj = safe_load(path)
    if isinstance(obj, dict) and obj.get("format") == STATE_FORMAT:
        if "netD" not in obj.get("modules", {}):
            raise CheckpointError(f"--init-D {path}: the training state holds no discriminator (netD)")
        return obj["modules"]["netD"]
    return state_dict_from(obj, path)


def spade_config_for(label_set: Any, size: tuple[int, int], **options: Any) -> SPADEConfig:
    """A SPADEConfig whose label channels fit ``label_set`` and whose output is exactly ``size`` (H, W)."""
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
    def __init__(
        self,
        runner: Runner,
        gcfg,
        label_set: Any,
        tcfg: SPADETrainConfig,
        name: str = "spade",
        size: Optional[tuple[int, int]] = None,
    ):
        """``gcfg`` is ignored with ``tcfg.init_from`` (the card's architecture is used), at ``size`` (H, W)
        when given, else at the card's size."""
        super().__init__(runner)
        self.name = name
        self.tcfg = tcfg
        self.label_set = label_set
        self.init_card: Optional[ModelCard] = None
        enc = None
        if tcfg.init_from:
            G, enc, gcfg, self.label_set = self._from_card(tcfg.init_from, size)
        else:
            G = init_weights(SPADEGenerator(gcfg), tcfg.init_type, tcfg.init_variance)
            if gcfg.use_vae:
                enc = init_weights(ConvEncoder(gcfg), tcfg.init_type, tcfg.init_variance)
        self.gcfg = gcfg
        self.stage = tcfg.stage
        want = stage_config(gcfg, self.stage)
        if (want.output_nc, want.extra_condition_nc) != (gcfg.output_nc, gcfg.extra_condition_nc):
            raise ConfigError(
                f"--stage {self.stage} needs a generator with {want.output_nc} output and {want.extra_condition_nc} "
                f"extra condition channel(s), not {gcfg.output_nc} and {gcfg.extra_condition_nc} "
                "(is --init-from a card of another stage?)"
            )
        self.depth_norm = tcfg.depth_norm
        self.depth_G = self.depth_G_norm = self.depth_card = None
        if self.stage == "photo-from-depth" and tcfg.depth_source == "predicted":
            self.depth_G, self.depth_G_norm, self.depth_card = self._depth_model(tcfg.depth_model, runner)
        if tcfg.lambda_ms and not gcfg.noise_dim:
            raise ConfigError("--lambda-ms needs a generator that takes noise (--noise-dim > 0): there is no z to vary")
        self.oasis = tcfg.objective == "oasis"
        if self.oasis:
            dcfg = OASISDConfig(semantic_nc=gcfg.num_classes, ndf=tcfg.ndf, num_res_blocks=tcfg.num_res_blocks_D)
            if gcfg.height % 2**dcfg.num_res_blocks or gcfg.width % 2**dcfg.num_res_blocks:
                raise ConfigError(
                    f"the OASIS discriminator with {dcfg.num_res_blocks} blocks needs height and width that are "
                    f"multiples of {2**dcfg.num_res_blocks}, not {gcfg.height}x{gcfg.width}"
                )
            D = init_weights(OASISDiscriminator(dcfg), tcfg.init_type, OASIS_D_INIT_GAIN)
        else:
            dcfg = MultiscaleDConfig(
                input_nc=gcfg.input_nc + gcfg.output_nc,
                ndf=tcfg.ndf,
                n_layers_D=tcfg.n_layers_D,
                num_D=tcfg.num_D,
                norm_D=tcfg.norm_D,
                get_intermediate_features=not tcfg.no_ganFeat_loss,
            )
            D = init_weights(MultiscaleDiscriminator(dcfg), tcfg.init_type, tcfg.init_variance)
        self.dcfg = dcfg
        if tcfg.init_D:
            D.load_state_dict(discriminator_state(tcfg.init_D), strict=True)

        self.G, self.netG = runner.distribute(G)
        self.D, self.netD = runner.distribute(D)
        self.E, self.netE = runner.distribute(enc) if enc is not None else (None, None)

        if tcfg.no_TTUR:
            betas, g_lr, d_lr = (tcfg.beta1, tcfg.beta2), tcfg.lr, tcfg.lr
        elif self.oasis:  # OASIS: G 1e-4, D 4e-4 (lr 2e-4 here), Adam (beta1, beta2) = (0, 0.999)
            betas, g_lr, d_lr = (tcfg.beta1, tcfg.beta2), tcfg.lr / 2, tcfg.lr * 2
        else:
            betas, g_lr, d_lr = (0.0, 0.9), tcfg.lr / 2, tcfg.lr * 2
        g_params = list(self.G.parameters()) + (list(self.E.parameters()) if self.E is not None else [])
        self.opt_G = torch.optim.Adam(g_params, lr=g_lr, betas=betas)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=d_lr, betas=betas)
        self.base_lr = {"G": g_lr, "D": d_lr}
        self.scaler_G, self.scaler_D = runner.make_scaler(), runner.make_scaler()
        self.ema = EMA(self.G, tcfg.ema_decay) if tcfg.ema_decay > 0 else None
        self.gan_loss = HingeGANLoss()
        self.vgg = build_vgg_loss(tcfg.vgg_weights)
        if self.vgg is not None:
            self.vgg = self.vgg.to(runner.device)
        self.palette = palette_tensor(self.label_set)

    def _depth_model(self, path: str, runner: Runner):
        """The frozen stage-1 generator whose predictions stage 2 trains on, and its normalisation."""
        card = load_card(path)
        stage, norm = card_depth(card)
        if stage != "depth":
            raise ConfigError(f"--depth-model {path}: a {stage} stage, not a depth (stage 1) model")
        G1 = build_from_card(card, load=True, inference=True).to(runner.device).eval().requires_grad_(False)
        return G1, norm, card

    def _from_card(self, path: str, size: Optional[tuple[int, int]]):
        card = load_card(path)
        if card.arch != "spade":
            raise ConfigError(f"--init-from {path}: a {card.arch} model, not SPADE")
        self.init_card = card
        gcfg = config_from_card(card)
        if size is not None and tuple(size) != (card.height, card.width):
            if gcfg.use_vae:
                raise ConfigError(
                    f"--init-from {path}: a VAE model's first layer is sized for {card.height}x{card.width}; "
                    f"it cannot be fine-tuned at {size[0]}x{size[1]}"
                )
            gcfg = dataclasses.replace(gcfg, crop_size=size[1], aspect_ratio=size[1] / size[0])
            if (gcfg.height, gcfg.width) != tuple(size):
                raise ConfigError(f"--init-from {path}: SPADE cannot produce {size[0]}x{size[1]}")
            G = SPADEGenerator(gcfg)  # the same weights at another size: every layer is a convolution
            G.load_state_dict(build_from_card(card, load=True, inference=False).state_dict(), strict=True)
            G.train().requires_grad_(True)
            get_label_set(card.label_set)
            return G, None, gcfg, card.label_set
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
        config = dataclasses.asdict(self.gcfg)
        depth = {}
        if self.stage != "photo":
            depth = {"stage": self.stage, "depth": self._depth_facts()}
        elif not config["extra_condition_nc"]:
            del config["extra_condition_nc"]  # a plain run's identity as before depth-aware stages: it resumes
        return {
            **depth,
            "arch": "spade",
            "config": config,
            "objective": self.tcfg.objective,
            "ema": self.tcfg.ema_decay,
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

    def _depth_facts(self) -> Optional[dict[str, Any]]:
        if self.stage == "photo":
            return None
        facts: dict[str, Any] = {}
        if self.stage == "photo-from-depth":
            facts["depth_source"] = self.tcfg.depth_source
            if self.depth_card is not None:
                facts["depth_model"] = {"name": self.depth_card.name, "sha256": self.depth_card.sha256}
        return depth_section(self.stage, self.depth_norm, **facts)

    @staticmethod
    def _label_map(batch: dict[str, torch.Tensor], cfg: SPADEConfig) -> torch.Tensor:
        sem = one_hot(batch["labels"], cfg.num_classes)
        if not cfg.no_instance:
            sem = torch.cat([sem, instance_edges(batch["instances"])], dim=1)
        return sem

    def semantics(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """What the generator (and the discriminator beside its output) reads: one-hot labels, instance
        edges, and for photo-from-depth the normalised log-depth (true, or stage 1's prediction)."""
        sem = self._label_map(batch, self.gcfg)
        if self.stage == "photo-from-depth":
            if self.depth_G is not None:
                with torch.no_grad():
                    pred = self.depth_G(self._label_map(batch, self.depth_G.cfg)).float()
                depth = self.depth_G_norm.metres(pred)
            else:
                depth = batch["depth"]
            sem = torch.cat([sem, self.depth_norm.normalise(depth).to(sem.dtype)], dim=1)
        return sem

    def target(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """What the generator should produce: the photo, or (depth stage) the normalised log-depth."""
        return self.depth_norm.normalise(batch["depth"]) if self.stage == "depth" else batch["image"]

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
        real = self.runner.to_memory_format(self.target(batch))
        sem = self.runner.to_memory_format(self.semantics(batch))
        step_fn = self._oasis_step if self.oasis else self._spade_step
        fake, losses = step_fn(batch, sem, real, step)
        if self.ema is not None:
            self.ema.update(self.G, step)
        as_rgb = (lambda t: to_unit(t).expand(-1, 3, -1, -1)) if self.stage == "depth" else to_unit
        self.last_visuals = (colorize(batch["labels"], self.palette), as_rgb(fake), as_rgb(real))
        return {k: v.detach() for k, v in losses.items()}

    def _spade_step(self, batch, sem, real, step):
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
            if self.stage == "depth":
                g["G_L1"] = (fake.float() - real.float()).abs().mean() * t.lambda_depth_l1
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
        return fake, {**g, **d}

    def _oasis_step(self, batch, sem, real, step):
        t = self.tcfg
        onehot = sem[:, : self.gcfg.num_classes]
        weights = None if t.no_balancing_inloss else class_balance_weights(onehot, self.gcfg.contain_dontcare_label)
        # generator: every fake pixel should be segmented as its label's class
        with self.runner.autocast():
            if t.lambda_ms:  # two noises per label map: both fakes are judged, and pushed apart
                b = sem.shape[0]
                z = torch.randn(2 * b, self.gcfg.noise_dim, device=sem.device)
                fakes = self.netG(torch.cat([sem, sem]), z)
                pred = self.netD(fakes)
                g = {
                    "G_adv": n_plus_1_loss(pred, torch.cat([onehot, onehot]), for_real=True, weights=_twice(weights)),
                    "G_ms": mode_seeking_loss(fakes[:b], fakes[b:], z[:b], z[b:]) * t.lambda_ms,
                }
                fake, loss_kld = fakes[:b], None
            else:
                fake, loss_kld = self._generate(sem, real, kld=True)
                g = {"G_adv": n_plus_1_loss(self.netD(fake), onehot, for_real=True, weights=weights)}
            if self.vgg is not None:
                g["G_VGG"] = self.vgg(fake.float(), real.float()) * t.lambda_vgg
            if loss_kld is not None:
                g["KLD"] = loss_kld
        self.runner.guard(step, g)
        self.runner.backward_step(sum(g.values()), self.opt_G, self.scaler_G)
        # discriminator: real -> label classes, fake -> "fake", LabelMix on a per-class mix of both
        with self.runner.autocast():
            with torch.no_grad():
                fake_d, _ = self._generate(sem, real, kld=False)
            fake_d = fake_d.detach()
            mask = self.runner.to_memory_format(labelmix_mask(batch["labels"]).to(real.dtype))
            mixed = mask * real + (1 - mask) * fake_d
            d_fake, d_real, d_mixed = torch.chunk(self.netD(torch.cat([fake_d, real, mixed], 0)), 3, dim=0)
            d = {
                "D_fake": n_plus_1_loss(d_fake, onehot, for_real=False),
                "D_real": n_plus_1_loss(d_real, onehot, for_real=True, weights=weights),
            }
            if t.lambda_labelmix > 0:
                d["D_labelmix"] = labelmix(mask, d_mixed, d_fake, d_real) * t.lambda_labelmix
        self.runner.guard(step, d)
        self.runner.backward_step(sum(d.values()), self.opt_D, self.scaler_D)
        return fake, {**g, **d}

    def export(self) -> tuple[ModelCard, dict[str, torch.Tensor]]:
        G = self.G
        if self.ema is not None:
            G = refresh_spectral_vectors(self.ema.module)
        sd = {k: v.detach().cpu().contiguous() for k, v in G.state_dict().items()}
        encoder = None
        if self.E is not None:
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
            depth=self._depth_facts(),
        )
        if self.init_card is not None:
            card.provenance["init_from"] = {
                "card": portable_path(self.init_card.path),
                "name": self.init_card.name,
                "sha256": self.init_card.sha256,
            }
        return card, sd

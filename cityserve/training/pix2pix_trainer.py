"""pix2pix training as in the CityGAN setup (junyanz pix2pix ``Pix2PixModel``): a U-Net generator and
a 70x70 PatchGAN on ``cat(label input, photo)``, BCE adversarial loss with label smoothing (real 0.9,
fake 0.1), L1 to the photo x 100, Adam lr 2e-4 (0.5, 0.999), batch 1, random flips; the learning rate
is constant for ``n_epochs`` and decays linearly over ``n_epochs_decay`` (pix2pix's ``lambda_rule``).

Per step, as the official ``optimize_parameters``: fake = G(A); update D on (A, fake.detach()) vs
(A, B), halved; update G on D(A, fake) towards "real" plus lambda_L1 * |fake - B|. The label input A is
the one-hot label map or its palette colors in [-1, 1] (``input_mode``), as the render graph feeds it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..cards import ModelCard
from ..errors import ConfigError
from ..labels import get_label_set
from ..models.pix2pix import Pix2PixConfig
from ..models.render import one_hot
from ..options import option
from .common import colorize, label_set_for_card, palette_tensor, to_unit
from .entry import Preset
from .losses import BCEGANLoss
from .runner import Runner, Trainer


@dataclasses.dataclass
class Pix2PixTrainConfig:
    """pix2pix's (and CityGAN's) training options."""

    lr: float = option(2e-4, "Adam learning rate")
    beta1: float = option(0.5, "Adam beta1")
    beta2: float = option(0.999, "Adam beta2")
    lambda_L1: float = option(100.0, "L1 weight")
    real_label: float = option(0.9, "BCE target for real (label smoothing)")
    fake_label: float = option(0.1, "BCE target for fake")
    n_epochs_decay: int = option(0, "epochs of linear lr decay at the end (pix2pix: 100 of 200)")


class Pix2PixTrainer(Trainer):
    def __init__(
        self,
        runner: Runner,
        cfg,
        label_set: Any,
        tcfg: Pix2PixTrainConfig,
        size: tuple[int, int],
        name: str = "pix2pix",
    ):
        super().__init__(runner)
        from ..models.pix2pix import build_discriminator, build_generator

        self.name, self.cfg, self.tcfg, self.label_set = name, cfg, tcfg, label_set
        self.G, self.netG = runner.distribute(build_generator(cfg))
        self.D, self.netD = runner.distribute(build_discriminator(cfg))
        betas = (tcfg.beta1, tcfg.beta2)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=tcfg.lr, betas=betas)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=tcfg.lr, betas=betas)
        self.scaler_G, self.scaler_D = runner.make_scaler(), runner.make_scaler()
        self.gan_loss = BCEGANLoss(tcfg.real_label, tcfg.fake_label)
        self.palette = palette_tensor(label_set)
        self.color_table = (self.palette.float() / 127.5 - 1.0).to(runner.device)
        self.size = (int(size[0]), int(size[1]))
        m = 2**cfg.num_downs
        if self.size[0] % m or self.size[1] % m:
            raise ConfigError(
                f"pix2pix {cfg.netG} needs height and width that are multiples of {m}, not "
                f"{self.size[0]}x{self.size[1]}"
            )

    def modules(self) -> dict[str, nn.Module]:
        return {"netG": self.G, "netD": self.D}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"G": self.opt_G, "D": self.opt_D}

    def scalers(self) -> dict[str, torch.amp.GradScaler]:
        return {"G": self.scaler_G, "D": self.scaler_D}

    def identity(self) -> dict[str, Any]:
        return {
            "arch": "pix2pix",
            "config": dataclasses.asdict(self.cfg),
            "label_set": label_set_for_card(self.label_set),
            "seed": self.runner.cfg.seed,
            "batch_size": self.runner.cfg.batch_size,
            "world_size": self.runner.ctx.world_size,
        }

    def set_lr(self, step: int, epoch: int, steps_per_epoch: int, total_steps: int) -> None:
        decay = self.tcfg.n_epochs_decay
        f = 1.0
        if decay > 0:
            n_epochs = -(-total_steps // steps_per_epoch) - decay
            f = 1.0 - max(0, epoch + 1 - n_epochs) / float(decay + 1)
        for opt in (self.opt_G, self.opt_D):
            for g in opt.param_groups:
                g["lr"] = self.tcfg.lr * f

    def label_input(self, labels: torch.Tensor) -> torch.Tensor:
        if self.cfg.input_mode == "onehot":
            return one_hot(labels, self.cfg.label_nc)
        idx = labels[:, 0].long().clamp(0, self.color_table.shape[0] - 1)
        return self.color_table[idx].permute(0, 3, 1, 2).contiguous()

    def train_step(self, batch: dict[str, Any], step: int) -> dict[str, torch.Tensor]:
        A, B = self.label_input(batch["labels"]), batch["image"]
        with self.runner.autocast():
            fake = self.netG(A)
            d = {
                "D_fake": self.gan_loss(self.netD(torch.cat([A, fake.detach()], 1)), False) * 0.5,
                "D_real": self.gan_loss(self.netD(torch.cat([A, B], 1)), True) * 0.5,
            }
        self.runner.guard(step, d)
        self.runner.backward_step(sum(d.values()), self.opt_D, self.scaler_D)
        with self.runner.autocast():
            g = {
                "G_GAN": self.gan_loss(self.netD(torch.cat([A, fake], 1)), True),
                "G_L1": F.l1_loss(fake.float(), B.float()) * self.tcfg.lambda_L1,
            }
        self.runner.guard(step, g)
        self.runner.backward_step(sum(g.values()), self.opt_G, self.scaler_G)
        self.last_visuals = (colorize(batch["labels"], self.palette), to_unit(fake), to_unit(B))
        return {k: v.detach() for k, v in {**g, **d}.items()}

    def export(self) -> tuple[ModelCard, dict[str, torch.Tensor]]:
        sd = {k: v.detach().cpu() for k, v in self.G.state_dict().items()}
        h, w = self.size
        card = ModelCard(
            name=self.runner.cfg.name,
            kind="generator",
            arch="pix2pix",
            config=dataclasses.asdict(self.cfg),
            label_set=label_set_for_card(self.label_set),
            height=int(h),
            width=int(w),
            extra={"training": dataclasses.asdict(self.tcfg)},
        )
        return card, sd


def _preset(size, train: Pix2PixTrainConfig, batch_size: int = 1, epochs=None, **model) -> Preset:
    return Preset(Pix2PixConfig(label_nc=get_label_set("cityscapes").num_ids, **model), train, size, batch_size, epochs)


PRESETS: dict[str, Preset] = {
    # CityGAN: pix2pix unet_256 + 70x70 PatchGAN, BCE with label smoothing 0.9 / 0.1, L1 x 100,
    # Adam 2e-4 (0.5, 0.999), batch 1, random flips, 256x256, pix2pix's 100 + 100 epochs.
    "citygan": _preset(
        (256, 256),
        Pix2PixTrainConfig(n_epochs_decay=100),
        epochs=200,
        netG="unet_256",
        ngf=64,
        ndf=64,
        n_layers_D=3,
        norm="batch",
        use_dropout=True,
    ),
    # synthetic scenes on a CPU
    "demo": _preset((128, 256), Pix2PixTrainConfig(), netG="unet_128", ngf=16, ndf=16, n_layers_D=3),
    # tests
    "tiny": _preset((128, 128), Pix2PixTrainConfig(), epochs=1, netG="unet_128", ngf=2, ndf=4, n_layers_D=2),
}

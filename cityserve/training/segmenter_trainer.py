"""Semantic segmenter training (FCHarDNet, DeepLabV3+): photo -> train ids.

Targets are the dataset's label ids mapped to train ids (255 = ignored, e.g. Cityscapes 'unlabeled');
the loss is cross-entropy with that ignore label, or FCHarDNet's bootstrapped cross-entropy (per image
the pixels with loss > ``loss_th``, at least the ``min_k`` hardest). SGD with momentum and the poly
schedule ``lr * (1 - step / total) ** 0.9`` per step. Inputs are normalized exactly as the exported
segment graph does it (``SegmentGraph.normalize``: channel order, mean, std), so a trained card serves
with no extra step.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from ..cards import ModelCard
from ..labels import get_label_set
from ..models.deeplab import DeepLabConfig, load_backbone_weights
from ..models.fchardnet import FCHarDNetConfig
from ..models.registry import family
from ..models.segment import SegmentGraph, train_id_lut
from ..options import option
from .common import colorize, label_set_for_card, palette_tensor, to_unit
from .entry import Preset
from .losses import IGNORE_INDEX, bootstrapped_cross_entropy, cross_entropy
from .runner import Runner, Trainer


@dataclasses.dataclass
class SegmenterTrainConfig:
    """Segmenter training options (FCHarDNet's and DeepLabV3+'s recipes use the same ones)."""

    loss: str = option("bootstrapped", "", cli={"choices": ("bootstrapped", "ce")})
    min_k: int = option(4096, "bootstrapped CE: at least this many hardest pixels per image")
    loss_th: float = option(0.3, "bootstrapped CE: loss threshold")
    lr: float = option(0.02, "SGD learning rate (poly schedule)")
    momentum: float = option(0.9, "SGD momentum")
    weight_decay: float = option(5e-4, "SGD weight decay")
    poly_power: float = option(0.9, "poly schedule power")
    backbone_weights: Optional[str] = option(None, "DeepLabV3+: local torchvision ImageNet state dict for the backbone")
    scale: tuple[float, float] = option((1.0, 1.0), cli=False)  # random scale jitter of the crops (min, max)


class SegmenterTrainer(Trainer):
    def __init__(
        self,
        runner: Runner,
        arch: str,
        cfg,
        label_set: Any,
        tcfg: SegmenterTrainConfig,
        size: tuple[int, int],
        name: str = "segmenter",
    ):
        super().__init__(runner)

        self.name, self.arch, self.cfg, self.tcfg, self.label_set = name, arch, cfg, tcfg, label_set
        self.size = (int(size[0]), int(size[1]))
        net = family(arch).build(cfg)
        if tcfg.backbone_weights:
            load_backbone_weights(net, tcfg.backbone_weights)
        self.net, self.model = runner.distribute(net)
        self.opt = torch.optim.SGD(
            self.net.parameters(), lr=tcfg.lr, momentum=tcfg.momentum, weight_decay=tcfg.weight_decay
        )
        self.scaler = runner.make_scaler()
        ls = get_label_set(label_set)
        self.to_train = torch.from_numpy(ls.to_train_ids(np.arange(ls.num_ids)).astype(np.int64)).to(runner.device)
        lut = train_id_lut(label_set, cfg.num_classes)
        self.from_train = torch.from_numpy(lut.astype(np.int64)).to(runner.device)
        # the exported graph's normalization, without its network
        self.pre = SegmentGraph(nn.Identity(), lut, cfg.mean, cfg.std, cfg.bgr).to(runner.device)
        self.palette = palette_tensor(label_set)

    def modules(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"net": self.opt}

    def scalers(self) -> dict[str, torch.amp.GradScaler]:
        return {"net": self.scaler}

    def identity(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "config": dataclasses.asdict(self.cfg),
            "label_set": label_set_for_card(self.label_set),
            "seed": self.runner.cfg.seed,
            "batch_size": self.runner.cfg.batch_size,
            "world_size": self.runner.ctx.world_size,
            "loss": self.tcfg.loss,
        }

    def set_lr(self, step: int, epoch: int, steps_per_epoch: int, total_steps: int) -> None:
        f = (1.0 - step / float(total_steps)) ** self.tcfg.poly_power
        for g in self.opt.param_groups:
            g["lr"] = self.tcfg.lr * f

    def inputs(self, image: torch.Tensor) -> torch.Tensor:
        """[-1, 1] RGB float -> the network's normalized input (via 0..255 RGB, as the graph sees uint8)."""
        rgb255 = ((image + 1.0) * 127.5).clamp(0, 255).permute(0, 2, 3, 1)
        return self.pre.normalize(rgb255)

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        return self.to_train[labels[:, 0].long().clamp(0, self.to_train.shape[0] - 1)]

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.tcfg.loss == "bootstrapped":
            return bootstrapped_cross_entropy(logits, target, self.tcfg.min_k, self.tcfg.loss_th, IGNORE_INDEX)
        return cross_entropy(logits, target, IGNORE_INDEX)

    def train_step(self, batch: dict[str, Any], step: int) -> dict[str, torch.Tensor]:
        x, target = self.inputs(batch["image"]), self.targets(batch["labels"])
        with self.runner.autocast():
            logits = self.model(x)
            losses = {"loss": self.loss(logits, target)}
        self.runner.guard(step, losses)
        self.runner.backward_step(losses["loss"], self.opt, self.scaler)
        with torch.no_grad():
            pred = logits.detach().argmax(1)
            valid = target != IGNORE_INDEX
            acc = (pred[valid] == target[valid]).float().mean() if valid.any() else torch.zeros(())
        self.last_visuals = (
            colorize(batch["labels"], self.palette),
            colorize(self.from_train[pred][:, None], self.palette),
            to_unit(batch["image"]),
        )
        return {"loss": losses["loss"].detach(), "pixel_acc": acc}

    def export(self) -> tuple[ModelCard, dict[str, torch.Tensor]]:
        sd = {k: v.detach().cpu() for k, v in self.net.state_dict().items()}
        card = ModelCard(
            name=self.runner.cfg.name,
            kind="segmenter",
            arch=self.arch,
            config=dataclasses.asdict(self.cfg),
            label_set=label_set_for_card(self.label_set),
            height=self.size[0],
            width=self.size[1],
            extra={"training": dataclasses.asdict(self.tcfg)},
        )
        return card, sd


PRESETS: dict[str, Preset] = {
    # FCHarDNet's published Cityscapes recipe: hardnet70, bootstrapped CE (min_K 4096, th 0.3), SGD lr 0.02
    # momentum 0.9 wd 5e-4, poly 0.9 over 90k iterations, batch 16, 1024x1024 crops (scale 0.5-2 jitter).
    "fchardnet": Preset(
        FCHarDNetConfig(),
        SegmenterTrainConfig(loss="bootstrapped", lr=0.02, momentum=0.9, weight_decay=5e-4, scale=(1.0, 2.0)),
        size=(1024, 1024),
        batch_size=16,
        max_steps=90000,
    ),
    # DeepLabV3+ (ResNet-101, output stride 16) as commonly trained on Cityscapes: CE ignore 255, SGD 0.01
    # momentum 0.9 wd 1e-4, poly 0.9 over 30k iterations, batch 16, 768x768 crops.
    "deeplab": Preset(
        DeepLabConfig(backbone="resnet101", output_stride=16),
        SegmenterTrainConfig(loss="ce", lr=0.01, momentum=0.9, weight_decay=1e-4, scale=(1.0, 2.0)),
        size=(768, 768),
        batch_size=16,
        max_steps=30000,
    ),
    # the shipped demo segmenter: FCHarDNet on synthetic scenes, 2-core CPU, ~20-30 minutes (~1.5-2 s a step)
    "demo": Preset(
        FCHarDNetConfig(),
        SegmenterTrainConfig(
            loss="bootstrapped", min_k=2048, lr=0.02, momentum=0.9, weight_decay=5e-4, scale=(1.0, 1.25)
        ),
        size=(128, 256),
        batch_size=4,
        max_steps=800,
    ),
    # tests
    "tiny": Preset(
        FCHarDNetConfig(), SegmenterTrainConfig(loss="bootstrapped", min_k=256, lr=0.01), size=(32, 64), max_steps=4
    ),
}

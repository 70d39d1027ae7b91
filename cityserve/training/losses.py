"""Training losses: the GAN objectives of SPADE and pix2pix, feature matching, VGG19 perceptual loss,
KL divergence, and the segmenters' (bootstrapped) cross-entropy.

Written to match the reference implementations term for term (NVlabs SPADE ``models/networks/loss.py``,
junyanz pix2pix ``GANLoss``, FCHarDNet ``bootstrapped_cross_entropy2d``), because a loss that differs by
a mean-vs-sum or a missing ``/ num_D`` changes what the published hyper-parameters mean.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError

log = logging.getLogger(__name__)

Pred = Union[torch.Tensor, Sequence]  # one tensor, or per-discriminator lists of [features..., prediction]


def _final(pred: Pred) -> list[torch.Tensor]:
    """Each discriminator's final prediction from SPADE's nested output (intermediate features first)."""
    if isinstance(pred, torch.Tensor):
        return [pred]
    return [p[-1] if isinstance(p, (list, tuple)) else p for p in pred]


class HingeGANLoss(nn.Module):
    """SPADE's hinge loss. D: mean(relu(1 - D(real))) + mean(relu(1 + D(fake))); G: -mean(D(fake)).
    Averaged over the multiscale discriminators as SPADE does (per-sample mean, then / num_D)."""

    def forward(self, pred: Pred, target_is_real: bool, for_discriminator: bool = True) -> torch.Tensor:
        preds = _final(pred)
        total = 0.0
        for p in preds:
            p = p.float()
            if for_discriminator:
                x = p - 1 if target_is_real else -p - 1
                loss = -torch.minimum(x, torch.zeros_like(x))
            else:
                loss = -p
            total = total + loss.reshape(loss.shape[0], -1).mean(dim=1)
        return (total / len(preds)).mean()


class BCEGANLoss(nn.Module):
    """pix2pix's vanilla GAN loss (BCE with logits) with one-sided-or-not label smoothing: targets are
    ``real_label`` (CityGAN: 0.9) and ``fake_label`` (0.1). The generator is trained towards ``real_label``."""

    def __init__(self, real_label: float = 0.9, fake_label: float = 0.1):
        super().__init__()
        self.real_label = float(real_label)
        self.fake_label = float(fake_label)

    def forward(self, pred: Pred, target_is_real: bool, for_discriminator: bool = True) -> torch.Tensor:
        preds = _final(pred)
        target = self.real_label if target_is_real else self.fake_label
        total = 0.0
        for p in preds:
            p = p.float()
            total = total + F.binary_cross_entropy_with_logits(p, torch.full_like(p, target))
        return total / len(preds)


def feature_matching_loss(pred_fake: Sequence, pred_real: Sequence, lambda_feat: float = 10.0) -> torch.Tensor:
    """SPADE's discriminator feature matching: L1 between D's intermediate features of the fake and the
    (detached) real image, every layer but the prediction, weighted ``lambda_feat / num_D``."""
    num_d = len(pred_fake)
    loss = pred_fake[0][0].new_zeros((), dtype=torch.float32)
    for fake_feats, real_feats in zip(pred_fake, pred_real):
        for f, r in zip(fake_feats[:-1], real_feats[:-1]):
            loss = loss + F.l1_loss(f.float(), r.detach().float()) * (lambda_feat / num_d)
    return loss


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) summed over everything, as SPADE's KLDLoss (times lambda_kld 0.05
    in the trainer)."""
    mu, logvar = mu.float(), logvar.float()
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


# ---- VGG19 perceptual loss -----------------------------------------------------------------------
# torchvision's vgg19 ``features``: numbers are conv widths, "M" max-pools. Each entry becomes modules at
# the same indices as torchvision (conv, relu / pool), so ``features.N.weight`` keys load unchanged.
VGG19_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
# SPADE's VGG19 slices end after relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 (feature indices 1, 6, 11, 20, 29).
VGG_SLICE_ENDS = (2, 7, 12, 21, 30)
VGG_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)


def vgg19_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    in_ch = 3
    for v in VGG19_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_ch, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            in_ch = int(v)
    return nn.Sequential(*layers)


def load_vgg19_features(path: str | os.PathLike) -> nn.Sequential:
    """VGG19 ``features`` with weights from a local torchvision-format state dict (``vgg19-dcbb9e9d.pth``:
    keys ``features.N.weight`` / ``features.N.bias``; ``classifier.*`` is ignored; bare ``N.weight`` keys
    of a saved ``features`` module are accepted too)."""
    from ..checkpoints import safe_load

    obj = safe_load(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"VGG19 weights {path} do not hold a state dict")
    sd = {k[len("features.") :]: v for k, v in obj.items() if k.startswith("features.")}
    if not sd:
        sd = {k: v for k, v in obj.items() if k.split(".")[0].isdigit()}
    feats = vgg19_features()
    try:
        feats.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise CheckpointError(
            f"VGG19 weights {path} do not fit torchvision's vgg19 features: {str(e).strip().splitlines()[0][:200]}"
        ) from None
    return feats


class VGGLoss(nn.Module):
    """SPADE's perceptual loss: sum_i w_i * L1(vgg_i(fake), vgg_i(real).detach()) over relu1_1..relu5_1.

    Images go in as SPADE feeds them (the generator's [-1, 1] range, no ImageNet normalization) unless
    ``imagenet_normalize``. The network is frozen and kept out of state dicts / optimizers.
    """

    def __init__(self, features: nn.Sequential, imagenet_normalize: bool = False):
        super().__init__()
        self.vgg = features.eval()  # frozen; never in an optimizer or a saved checkpoint
        for p in self.vgg.parameters():
            p.requires_grad_(False)
        self.imagenet_normalize = imagenet_normalize
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True):  # the VGG stays in eval mode
        super().train(mode)
        self.vgg.eval()
        return self

    def _feats(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.imagenet_normalize:
            x = ((x + 1) / 2 - self.mean) / self.std
        out, start = [], 0
        for end in VGG_SLICE_ENDS:
            for j in range(start, end):
                x = self.vgg[j](x)
            out.append(x)
            start = end
        return out

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        fx, rx = self._feats(fake), self._feats(real)
        loss = fake.new_zeros((), dtype=torch.float32)
        for w, a, b in zip(VGG_WEIGHTS, fx, rx):
            loss = loss + w * F.l1_loss(a.float(), b.detach().float())
        return loss


def build_vgg_loss(path: Optional[str | os.PathLike], imagenet_normalize: bool = False) -> Optional[VGGLoss]:
    """The perceptual loss from a local VGG19 weights file, or None (with a warning) when none is given:
    nothing is ever downloaded."""
    if not path:
        log.warning(
            "no --vgg-weights file given: the VGG19 perceptual loss is OFF "
            "(pass a torchvision vgg19 state dict, e.g. vgg19-dcbb9e9d.pth, to turn it on)"
        )
        return None
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"VGG19 weights file {p} does not exist")
    return VGGLoss(load_vgg19_features(p), imagenet_normalize=imagenet_normalize)


# ---- segmentation ---------------------------------------------------------------------------------
IGNORE_INDEX = 255


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Pixel-wise cross-entropy on train ids, pixels labelled ``ignore_index`` (255) excluded. Logits of a
    lower resolution are upsampled bilinearly to the target's size first."""
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(logits.float(), target.long(), ignore_index=ignore_index)


def bootstrapped_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    min_k: int = 4096,
    loss_th: float = 0.3,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """FCHarDNet's ``bootstrapped_cross_entropy2d``: per image, keep the pixels whose loss exceeds
    ``loss_th`` when at least ``min_k`` of them do, else the ``min_k`` hardest pixels; mean; average over
    the batch. Ignored pixels have zero loss and sort to the end."""
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=True)
    n, c = logits.shape[:2]
    total = logits.new_zeros((), dtype=torch.float32)
    for i in range(n):
        loss = F.cross_entropy(
            logits[i : i + 1].float(), target[i : i + 1].long(), ignore_index=ignore_index, reduction="none"
        ).reshape(-1)
        sorted_loss, _ = torch.sort(loss, descending=True)
        k = min(int(min_k), sorted_loss.numel() - 1)
        if sorted_loss[k] > loss_th:
            kept = sorted_loss[sorted_loss > loss_th]
        else:
            kept = sorted_loss[:k]
        total = total + kept.mean()
    return total / n

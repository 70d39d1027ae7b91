"""The OASIS objective (Schoenfeld et al., "You Only Need Adversarial Supervision for Semantic Image
Synthesis", ICLR 2021; boschresearch/OASIS): a segmentation-based discriminator instead of SPADE's
PatchGAN + feature matching + VGG.

* ``OASISDiscriminator``: a U-Net of residual blocks over the image alone, predicting per pixel one of
  N+1 classes: the N semantic classes of a *real* image, or "fake" (class 0).
* ``n_plus_1_loss``: its class-balanced cross-entropy. Real pixels are weighted by the inverse frequency
  of their class in the batch (rare, small classes count as much as road and sky); fake pixels are all
  class 0. The generator is trained with the same balanced loss on its fakes: every generated pixel
  should be segmented as the class the label map asks for, which is what makes OASIS photos follow the
  layout without a perceptual loss.
* ``labelmix``: LabelMix regularisation. Real and fake are mixed by a random per-class binary mask; the
  discriminator's output on the mix must equal the same mix of its outputs on real and fake.

Module names and the defaults (6 residual blocks, lambda_labelmix 10) follow the official code; the
channel widths scale with ``ndf`` (official: 64 -> 128, 128, 256, 256, 512, 512) so the discriminator
fits a CPU budget.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm


@dataclasses.dataclass
class OASISDConfig:
    semantic_nc: int  # N: the label channels the generator reads (without the instance edge); D outputs N + 1
    ndf: int = 64  # official widths are 2*ndf, 2*ndf, 4*ndf, 4*ndf, 8*ndf, 8*ndf
    num_res_blocks: int = 6
    spectral: bool = True

    def widths(self) -> list[int]:
        """Channels after each encoder block (the official [128, 128, 256, 256, 512, 512] at ndf 64)."""
        mult = [2, 2, 4, 4, 8, 8, 8, 8]
        return [self.ndf * mult[i] for i in range(self.num_res_blocks)]


class ResBlockD(nn.Module):
    """OASIS's ``residual_block_D``: leaky ReLU -> (upsample) -> conv3x3 -> leaky ReLU -> conv3x3, plus a
    (1x1 where channels change) shortcut; ``up_or_down`` < 0 average-pools after, > 0 upsamples before."""

    def __init__(self, fin: int, fout: int, up_or_down: int, first: bool = False, spectral: bool = True):
        super().__init__()
        sn = spectral_norm if spectral else (lambda m: m)
        self.up_or_down, self.first = up_or_down, first
        self.learned_shortcut = fin != fout
        if first:
            self.conv1 = nn.Sequential(sn(nn.Conv2d(fin, fout, 3, 1, 1)))
        elif up_or_down > 0:
            self.conv1 = nn.Sequential(
                nn.LeakyReLU(0.2, False), nn.Upsample(scale_factor=2), sn(nn.Conv2d(fin, fout, 3, 1, 1))
            )
        else:
            self.conv1 = nn.Sequential(nn.LeakyReLU(0.2, False), sn(nn.Conv2d(fin, fout, 3, 1, 1)))
        self.conv2 = nn.Sequential(nn.LeakyReLU(0.2, False), sn(nn.Conv2d(fout, fout, 3, 1, 1)))
        if self.learned_shortcut:
            self.conv_s = sn(nn.Conv2d(fin, fout, 1, 1, 0))

    def _sample(self, x: torch.Tensor) -> torch.Tensor:
        if self.up_or_down > 0:
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        if self.up_or_down < 0:
            return F.avg_pool2d(x, 2)
        return x

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.first or self.up_or_down > 0:  # sample first (cheaper 1x1 conv after pooling)
            x = self._sample(x)
            return self.conv_s(x) if self.learned_shortcut else x
        if self.learned_shortcut:
            x = self.conv_s(x)
        return self._sample(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dx = self.conv2(self.conv1(x))
        if self.up_or_down < 0:
            dx = F.avg_pool2d(dx, 2)
        return self.shortcut(x) + dx


class OASISDiscriminator(nn.Module):
    """``forward(image [B,3,H,W]) -> logits [B, N+1, H, W]``: a U-Net (``body_down`` / ``body_up`` with
    skip connections) whose last 1x1 conv ``layer_up_last`` scores the N+1 classes at full resolution.
    H and W must be multiples of ``2**num_res_blocks``."""

    def __init__(self, cfg: OASISDConfig):
        super().__init__()
        self.cfg = cfg
        ch = [3] + cfg.widths()
        n = cfg.num_res_blocks
        sn = cfg.spectral
        self.body_down = nn.ModuleList([ResBlockD(ch[i], ch[i + 1], -1, first=(i == 0), spectral=sn) for i in range(n)])
        up = [ResBlockD(ch[-1], ch[-2], 1, spectral=sn)]
        up += [ResBlockD(2 * ch[-1 - i], ch[-2 - i], 1, spectral=sn) for i in range(1, n - 1)]
        up.append(ResBlockD(2 * ch[1], max(cfg.ndf, 16), 1, spectral=sn))
        self.body_up = nn.ModuleList(up)
        self.layer_up_last = nn.Conv2d(max(cfg.ndf, 16), cfg.semantic_nc + 1, 1, 1, 0)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image
        skips = []
        for block in self.body_down:
            x = block(x)
            skips.append(x)
        x = self.body_up[0](x)
        for i in range(1, len(self.body_down)):
            x = self.body_up[i](torch.cat([skips[-i - 1], x], dim=1))
        return self.layer_up_last(x)


def class_balance_weights(onehot: torch.Tensor, dontcare: bool = False) -> torch.Tensor:
    """[B,1,H,W] per-pixel weights: ``numel / (n_present * count_c)`` for the pixel's class c over the
    batch, so every class present carries the same total weight. The dontcare channel (the last one,
    where the label set has it) gets weight 0."""
    count = onehot.sum(dim=(0, 2, 3))
    if dontcare:
        count[-1] = 0
    present = (count > 0).sum().clamp(min=1)
    coeff = torch.where(count > 0, onehot[:, 0].numel() / (present * count.clamp(min=1)), torch.zeros_like(count))
    return coeff[onehot.argmax(dim=1, keepdim=True)]


def n_plus_1_loss(
    logits: torch.Tensor, onehot: torch.Tensor, for_real: bool, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """OASIS's (N+1)-class cross-entropy, in float32. ``for_real``: target = the label class + 1, weighted
    by ``weights`` (``class_balance_weights``); else target = 0 ("fake") for every pixel, unweighted.
    The generator's adversarial loss is this with ``for_real=True`` on its fakes."""
    logits = logits.float()
    if for_real:
        target = onehot.argmax(dim=1) + 1
        loss = F.cross_entropy(logits, target, reduction="none")
        return (loss * weights[:, 0]).mean() if weights is not None else loss.mean()
    target = torch.zeros(logits.shape[0], *logits.shape[2:], dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, target)


def labelmix_mask(labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """[B,1,H,W] float {0, 1}: each class of each image's label map is drawn real (1) or fake (0)."""
    ids = labels.long()
    table = torch.randint(0, 2, (ids.shape[0], int(ids.max()) + 1), generator=generator, device="cpu")
    table = table.to(ids.device)
    return torch.gather(table, 1, ids.flatten(1)).reshape(ids.shape).float()


def labelmix(mask: torch.Tensor, d_mixed: torch.Tensor, d_fake: torch.Tensor, d_real: torch.Tensor) -> torch.Tensor:
    """LabelMix: ``MSE(D(mix), mask * D(real) + (1 - mask) * D(fake))`` in float32."""
    target = mask * d_real.float() + (1 - mask) * d_fake.float()
    return F.mse_loss(d_mixed.float(), target)

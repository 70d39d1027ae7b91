"""The segment graph: photo in, label ids out, as one module (the segmenter's side of ``cityserve.contract``).

    image   uint8 [B,H,W,3]  RGB photo
    labels  uint8 [B,1,H,W]  label ids of the segmenter's label set (Cityscapes: labelIds.png values)

Channel order, mean/std normalization, the network, a bilinear resize of the logits to the input size
(when the network returns them smaller), the argmax over train ids and the trainId -> labelId lookup
are all inside, written with ops every exporter handles (gather on constant tables, argmax, resize),
so the same module runs in torch, exports to ONNX / TensorRT and serves without a Python step.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..labels import get_label_set
from .registry import build_from_card, config_from_card, family


def train_id_lut(label_set, num_classes: int) -> np.ndarray:
    """int32 [num_classes]: the label id of each train id (the lowest id carrying it)."""
    ls = get_label_set(label_set)
    return ls.from_train_ids(np.arange(num_classes)).astype(np.int32)


class SegmentGraph(nn.Module):
    """Wraps ``net(x [B,3,H,W] normalized) -> logits [B,num_classes,h,w]`` into the contract.

    ``mean``/``std`` are in [0, 1] units in the network's channel order; ``bgr`` feeds channels as
    BGR (FCHarDNet's official preprocessing). ``lut`` maps train id -> label id.
    """

    def __init__(
        self,
        net: nn.Module,
        lut: Sequence[int] | np.ndarray,
        mean: Sequence[float],
        std: Sequence[float],
        bgr: bool = False,
    ):
        super().__init__()
        self.net = net
        self.bgr = bool(bgr)
        self.register_buffer("channel_order", torch.tensor([2, 1, 0] if bgr else [0, 1, 2], dtype=torch.int64))
        self.register_buffer("mean", torch.tensor([float(m) * 255.0 for m in mean], dtype=torch.float32))
        self.register_buffer("std", torch.tensor([float(s) * 255.0 for s in std], dtype=torch.float32))
        lut = np.asarray(lut)
        if lut.ndim != 1 or lut.size == 0 or lut.min() < 0 or lut.max() > 255:
            raise ValueError(f"train-id lookup table must map to label ids 0..255, got {lut.tolist()}")
        self.register_buffer("lut", torch.as_tensor(lut.astype(np.int32)))
        self.num_classes = int(lut.size)

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 [B,H,W,3] RGB -> float32 [B,3,H,W] as the network was trained on."""
        x = image.to(torch.float32)
        if self.bgr:
            x = torch.index_select(x, 3, self.channel_order)
        x = (x - self.mean) / self.std
        return x.permute(0, 3, 1, 2)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits = self.net(self.normalize(image))
        with warnings.catch_warnings():  # when tracing, the answer is fixed per net (fully convolutional)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            smaller = bool(logits.shape[2] != image.shape[1] or logits.shape[3] != image.shape[2])
        if smaller:
            logits = F.interpolate(logits, size=(image.shape[1], image.shape[2]), mode="bilinear", align_corners=False)
        train_ids = torch.argmax(logits, dim=1, keepdim=True)  # [B,1,H,W] int64
        return self.lut[train_ids].to(torch.uint8)


def segment_graph_from_card(card, inference: bool = True) -> SegmentGraph:
    """The card's segmenter (weights sha256-checked, eval mode) wrapped in the segment contract; the
    label set is the card's, the normalization the config's."""
    fam = family(card.arch)
    if fam.kind != "segmenter":
        raise ConfigError(f"{card.name} is a {fam.kind} ({card.arch}), not a segmenter")
    cfg = config_from_card(card)
    net = build_from_card(card, inference=inference)
    lut = train_id_lut(card.label_set or cfg.label_set, cfg.num_classes)
    return SegmentGraph(net, lut, cfg.mean, cfg.std, cfg.bgr).eval()

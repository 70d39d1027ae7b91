"""DeepLabV3+ (Chen et al. 2018) with ResNet-50/101 or MobileNetV2 backbones, output stride 16 or 8.

Naming follows two public layouts so existing weights load without renaming:
  * the backbone uses torchvision's module names (``conv1``, ``bn1``, ``layer1.0.conv1`` …;
    ``features.N.conv.K`` for MobileNetV2), so an ImageNet state dict saved from torchvision's
    ``resnet50``/``resnet101``/``mobilenet_v2`` loads from a local file (``load_backbone_weights``;
    nothing is downloaded and torchvision is not imported);
  * the head uses the names of the widely used VainF/DeepLabV3Plus-Pytorch (``classifier.aspp``,
    ``classifier.project``, ``classifier.classifier``).

VainF's MobileNetV2 pads differently from torchvision's: its stem conv has no padding, and each inverted
residual zero-pads its *input* by the depthwise kernel's reach (``fixed_padding``) before the 1x1
expansion, so the border sees the expansion's response to zeros, not zeros. ``padding="vainf"`` builds
that form, so VainF's checkpoints give VainF's outputs (``cityserve.importing.deeplab`` sets it).

Output stride is set like torchvision's ``replace_stride_with_dilation``: the last stage(s) keep their
resolution and dilate instead; the ASPP rates double at OS 8. ``forward`` returns logits over train
ids at the input resolution (bilinear, ``align_corners=False``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoints import safe_load, state_dict_from
from ..errors import CheckpointError, ConfigError
from ..options import option
from .registry import Family, register_family

BACKBONES = ("resnet50", "resnet101", "mobilenetv2")
RESNET_BLOCKS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}


@dataclasses.dataclass
class DeepLabConfig:
    """DeepLabV3+ options plus the segment graph's needs: the label set of the train ids and the
    input normalization (``mean``/``std`` in [0, 1] units, RGB order; ImageNet statistics)."""

    backbone: str = option(
        "resnet101", "DeepLabV3+ backbone", cli={"choices": ("resnet50", "resnet101", "mobilenetv2")}
    )
    output_stride: int = option(16, "DeepLabV3+ output stride", cli={"choices": (8, 16)})
    num_classes: int = 19
    label_set: str = "cityscapes"
    mean: tuple = (0.485, 0.456, 0.406)
    std: tuple = (0.229, 0.224, 0.225)
    bgr: bool = False
    padding: str = "same"  # "same": torchvision's convs; "vainf": VainF's MobileNetV2 input padding

    def __post_init__(self) -> None:
        self.mean, self.std = tuple(float(v) for v in self.mean), tuple(float(v) for v in self.std)
        if self.backbone not in BACKBONES:
            raise ConfigError(
                f"deeplabv3plus backbone {self.backbone!r} is not supported; choose from {', '.join(BACKBONES)}"
            )
        if self.output_stride not in (8, 16):
            raise ConfigError(f"deeplabv3plus output_stride must be 8 or 16, not {self.output_stride}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ConfigError(f"deeplabv3plus mean/std need 3 values each, got {self.mean} / {self.std}")
        if self.padding not in ("same", "vainf"):
            raise ConfigError(f"deeplabv3plus padding must be 'same' or 'vainf', not {self.padding!r}")
        if self.padding == "vainf" and self.backbone != "mobilenetv2":
            raise ConfigError("deeplabv3plus padding 'vainf' applies to the mobilenetv2 backbone only")

    @property
    def aspp_rates(self) -> tuple[int, int, int]:
        return (6, 12, 18) if self.output_stride == 16 else (12, 24, 36)


# ---- ResNet (torchvision layout) -----------------------------------------------------------------
class Bottleneck(nn.Module):
    """torchvision's ResNet V1.5 bottleneck (stride on the 3x3 conv)."""

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, dilation: int = 1
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNetBackbone(nn.Module):
    """torchvision ResNet without ``avgpool``/``fc``; returns (stride-4 features, last features)."""

    IGNORED_KEYS = ("fc.",)

    def __init__(self, blocks: tuple[int, ...], output_stride: int = 16):
        super().__init__()
        dilate = (False, False, True) if output_stride == 16 else (False, True, True)
        self.inplanes, self.dilation = 64, 1
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, blocks[0])
        self.layer2 = self._make_layer(128, blocks[1], 2, dilate[0])
        self.layer3 = self._make_layer(256, blocks[2], 2, dilate[1])
        self.layer4 = self._make_layer(512, blocks[3], 2, dilate[2])
        self.low_level_channels, self.out_channels = 256, 2048

    def _make_layer(self, planes: int, blocks: int, stride: int = 1, dilate: bool = False) -> nn.Sequential:
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * 4, 1, stride=stride, bias=False), nn.BatchNorm2d(planes * 4)
            )
        layers = [Bottleneck(self.inplanes, planes, stride, downsample, previous_dilation)]
        self.inplanes = planes * 4
        layers += [Bottleneck(self.inplanes, planes, dilation=self.dilation) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        low = self.layer1(x)
        return low, self.layer4(self.layer3(self.layer2(low)))


# ---- MobileNetV2 (torchvision layout) -------------------------------------------------------------
class ConvBNReLU6(nn.Sequential):
    """torchvision's ``Conv2dNormActivation`` with ReLU6: keys ``0`` (conv), ``1`` (BN)."""

    def __init__(
        self, inp: int, oup: int, kernel: int = 3, stride: int = 1, groups: int = 1, dilation: int = 1, pad: bool = True
    ):
        padding = dilation * (kernel - 1) // 2 if pad else 0
        super().__init__(
            nn.Conv2d(inp, oup, kernel, stride, padding, dilation=dilation, groups=groups, bias=False),
            nn.BatchNorm2d(oup),
            nn.ReLU6(),
        )


class InvertedResidual(nn.Module):
    """``pad_input``: VainF's form (the input is zero-padded by ``dilation`` on each side, no conv pads)."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int, dilation: int = 1, pad_input: bool = False):
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        self.input_padding = dilation if pad_input else 0
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(inp, hidden, kernel=1))
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden, dilation=dilation, pad=not pad_input),
            nn.Conv2d(hidden, oup, 1, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.input_padding
        y = self.conv(F.pad(x, (p, p, p, p)) if p else x)
        return x + y if self.use_res_connect else y


MOBILENETV2_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class MobileNetV2Backbone(nn.Module):
    """torchvision MobileNetV2 (width 1.0) without its last 1x1 conv (``features.18``) and classifier,
    as DeepLabV3+ uses it: low-level features after ``features.3`` (24 ch, stride 4), high-level 320 ch."""

    IGNORED_KEYS = ("classifier.", "features.18.")

    def __init__(self, output_stride: int = 16, vainf_padding: bool = False):
        super().__init__()
        features: list[nn.Module] = [ConvBNReLU6(3, 32, stride=2, pad=not vainf_padding)]
        inp, current_stride, dilation = 32, 2, 1
        for t, c, n, s in MOBILENETV2_SETTING:
            previous_dilation = dilation
            if current_stride == output_stride:
                stride, dilation = 1, dilation * s
            else:
                stride, current_stride = s, current_stride * s
            for i in range(n):
                d = previous_dilation if i == 0 else dilation
                features.append(InvertedResidual(inp, c, stride if i == 0 else 1, t, d, pad_input=vainf_padding))
                inp = c
        self.features = nn.Sequential(*features)
        self.low_level_channels, self.out_channels = 24, 320

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low = self.features[:4](x)
        return low, self.features[4:](low)


# ---- DeepLabV3+ head --------------------------------------------------------------------------------
def _conv_bn_relu(inp: int, oup: int, kernel: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, oup, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation, bias=False),
        nn.BatchNorm2d(oup),
        nn.ReLU(),
    )


class ASPPPooling(nn.Sequential):
    """Image-level features: global average, 1x1 conv, broadcast back to the feature size."""

    def __init__(self, inp: int, oup: int):
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Conv2d(inp, oup, 1, bias=False), nn.BatchNorm2d(oup), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).expand(-1, -1, x.shape[2], x.shape[3])


class ASPP(nn.Module):
    def __init__(self, inp: int, rates: tuple[int, int, int], oup: int = 256):
        super().__init__()
        self.convs = nn.ModuleList(
            [_conv_bn_relu(inp, oup)] + [_conv_bn_relu(inp, oup, 3, r) for r in rates] + [ASPPPooling(inp, oup)]
        )
        self.project = nn.Sequential(
            nn.Conv2d(5 * oup, oup, 1, bias=False), nn.BatchNorm2d(oup), nn.ReLU(), nn.Dropout(0.1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([c(x) for c in self.convs], 1))


class DeepLabHeadV3Plus(nn.Module):
    def __init__(self, in_channels: int, low_level_channels: int, num_classes: int, rates: tuple[int, int, int]):
        super().__init__()
        self.project = _conv_bn_relu(low_level_channels, 48)
        self.aspp = ASPP(in_channels, rates)
        self.classifier = nn.Sequential(
            nn.Conv2d(304, 256, 3, padding=1, bias=False),
            nn.BatchNorm2d(256),
            nn.ReLU(),
            nn.Conv2d(256, num_classes, 1),
        )

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        low = self.project(low)
        high = F.interpolate(self.aspp(high), size=(low.shape[2], low.shape[3]), mode="bilinear", align_corners=False)
        return self.classifier(torch.cat([low, high], 1))


class DeepLabV3Plus(nn.Module):
    """[B,3,H,W] normalized RGB -> [B,num_classes,H,W] logits over train ids."""

    def __init__(self, cfg: DeepLabConfig):
        super().__init__()
        if cfg.backbone == "mobilenetv2":
            self.backbone: nn.Module = MobileNetV2Backbone(cfg.output_stride, cfg.padding == "vainf")
        else:
            self.backbone = ResNetBackbone(RESNET_BLOCKS[cfg.backbone], cfg.output_stride)
        self.classifier = DeepLabHeadV3Plus(
            self.backbone.out_channels, self.backbone.low_level_channels, cfg.num_classes, cfg.aspp_rates
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low, high = self.backbone(x)
        out = self.classifier(low, high)
        return F.interpolate(out, size=(x.shape[2], x.shape[3]), mode="bilinear", align_corners=False)


def build(cfg: DeepLabConfig) -> DeepLabV3Plus:
    net = DeepLabV3Plus(cfg)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return net


def load_backbone_weights(
    model: DeepLabV3Plus | nn.Module, source: str | os.PathLike | Mapping[str, torch.Tensor]
) -> None:
    """Load torchvision-format ImageNet weights (a local ``resnet50``/``resnet101``/``mobilenet_v2``
    state dict file, or the dict itself) into the backbone. The ImageNet classifier (``fc.*``;
    ``classifier.*`` and ``features.18.*`` for MobileNetV2) is skipped; every other key must match
    by name and shape, or a one-line ``CheckpointError`` names the first offenders."""
    backbone = model.backbone if isinstance(model, DeepLabV3Plus) else model
    if not isinstance(backbone, (ResNetBackbone, MobileNetV2Backbone)):
        raise ConfigError(
            f"ImageNet backbone weights apply to DeepLabV3+ (ResNet / MobileNetV2 backbones), "
            f"not to {type(model).__name__}"
        )
    name = "<state dict>" if isinstance(source, Mapping) else str(source)
    sd = state_dict_from(source if isinstance(source, Mapping) else safe_load(source), name)
    sd = {k: v for k, v in sd.items() if not k.startswith(backbone.IGNORED_KEYS)}
    own = backbone.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        raise CheckpointError(f"backbone weights {name} do not fit {type(backbone).__name__}: {'; '.join(parts)}")
    bad = [k for k in own if tuple(sd[k].shape) != tuple(own[k].shape)]
    if bad:
        k = bad[0]
        raise CheckpointError(
            f"backbone weights {name}: {len(bad)} shape mismatch(es), e.g. {k} is "
            f"{tuple(sd[k].shape)} but the backbone needs {tuple(own[k].shape)}"
        )
    backbone.load_state_dict(sd, strict=True)


register_family(Family(arch="deeplabv3plus", kind="segmenter", config_cls=DeepLabConfig, build=build))

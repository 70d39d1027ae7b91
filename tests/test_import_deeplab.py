"""``cityserve import deeplab``: VainF/DeepLabV3Plus-Pytorch checkpoints as VainF's main.py saves them.

The test builds such files itself: random weights with non-trivial batch-norm statistics under VainF's key
names (MobileNetV2 split into ``backbone.low_level_features.0-3`` / ``high_level_features.4-17``, ResNet with
torchvision's names, the ``classifier.*`` head), wrapped as ``{"cur_itrs", "model_state", "optimizer_state",
"scheduler_state", "best_score": numpy float}``, with and without DataParallel's ``module.``. The imported
MobileNetV2 model is compared with ``vainf_reference``, a functional forward pass written here from VainF's
definition (unpadded stem conv, each inverted residual zero-padding its input by the depthwise reach
before the 1x1 expansion), which differs from torchvision's padding at every border pixel.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cityserve.cards import load_card
from cityserve.cli import main
from cityserve.models.deeplab import MOBILENETV2_SETTING, DeepLabConfig, build
from cityserve.models.registry import build_from_card
from cityserve.models.segment import segment_graph_from_card


def vainf_state(backbone: str, output_stride: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random DeepLabV3+ weights under VainF's key names."""
    torch.manual_seed(seed)
    net = build(DeepLabConfig(backbone=backbone, output_stride=output_stride))
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, t in net.state_dict().items():
        t = t.clone()
        if k.endswith("running_var"):
            t = torch.rand(t.shape, generator=g) + 0.5
        elif k.endswith("running_mean"):
            t = torch.randn(t.shape, generator=g) * 0.2
        elif k.endswith(("bn1.weight", ".1.weight", "bn2.weight", "bn3.weight")) and t.ndim == 1:
            t = torch.rand(t.shape, generator=g) + 0.5
        elif k.endswith("bias"):
            t = torch.randn(t.shape, generator=g) * 0.1
        if backbone == "mobilenetv2" and k.startswith("backbone.features."):
            i = int(k.split(".")[2])
            k = k.replace(
                "backbone.features.", "backbone.low_level_features." if i < 4 else "backbone.high_level_features."
            )
        sd[k] = t
    return sd


def save_vainf(path, sd, prefix: str = "") -> None:
    params = [torch.nn.Parameter(torch.zeros(1))]
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-4)
    torch.save(
        {
            "cur_itrs": 30000,
            "model_state": {prefix + k: v for k, v in sd.items()},
            "optimizer_state": opt.state_dict(),
            "scheduler_state": {
                "max_iters": 30000,
                "power": 0.9,
                "min_lr": 1e-6,
                "last_epoch": 29999,
                "base_lrs": [0.1],
            },
            "best_score": np.float64(0.7215),
        },
        path,
    )


def _cbr(sd, p, x, stride=1, dilation=1, groups=1, padding=0, act="relu6"):
    x = F.conv2d(x, sd[p + "0.weight"], None, stride, padding, dilation, groups)
    x = F.batch_norm(
        x, sd[p + "1.running_mean"], sd[p + "1.running_var"], sd[p + "1.weight"], sd[p + "1.bias"], False, 0.0, 1e-5
    )
    return x.clamp(0, 6) if act == "relu6" else F.relu(x)


def _bn(sd, p, x):
    return F.batch_norm(
        x, sd[p + "running_mean"], sd[p + "running_var"], sd[p + "weight"], sd[p + "bias"], False, 0.0, 1e-5
    )


def vainf_reference(sd: dict[str, torch.Tensor], x: torch.Tensor, output_stride: int) -> torch.Tensor:
    """VainF's deeplabv3plus_mobilenet forward (eval mode), functionally, from the state dict."""
    feats = {
        int(k.split(".")[2]): None
        for k in sd
        if k.startswith(("backbone.low_level_features.", "backbone.high_level_features."))
    }

    def block_prefix(i):
        return ("backbone.low_level_features." if i < 4 else "backbone.high_level_features.") + f"{i}."

    y = _cbr(sd, block_prefix(0), x, stride=2)  # the stem: 3x3 stride 2, no padding
    current, dilation, i, low = 2, 1, 1, None
    for t, _channels, n, s in MOBILENETV2_SETTING:
        previous = dilation
        if current == output_stride:
            stride, dilation = 1, dilation * s
        else:
            stride, current = s, current * s
        for j in range(n):
            p, d = block_prefix(i) + "conv.", previous if j == 0 else dilation
            h = F.pad(y, (d, d, d, d))
            k = 0
            if t != 1:
                h = _cbr(sd, f"{p}0.", h)
                k = 1
            h = _cbr(sd, f"{p}{k}.", h, stride=stride if j == 0 else 1, dilation=d, groups=h.shape[1])
            h = _bn(sd, f"{p}{k + 2}.", F.conv2d(h, sd[f"{p}{k + 1}.weight"]))
            y = y + h if (stride if j == 0 else 1) == 1 and y.shape[1] == h.shape[1] else h
            if i == 3:
                low = y
            i += 1
    assert i - 1 == max(feats)
    # DeepLabV3+ head
    a = "classifier.aspp."
    rates = (6, 12, 18) if output_stride == 16 else (12, 24, 36)
    branches = [_cbr(sd, f"{a}convs.0.", y, act="relu")]
    branches += [_cbr(sd, f"{a}convs.{b + 1}.", y, dilation=r, padding=r, act="relu") for b, r in enumerate(rates)]
    pooled = y.mean((2, 3), keepdim=True)
    pooled = F.relu(_bn(sd, f"{a}convs.4.2.", F.conv2d(pooled, sd[f"{a}convs.4.1.weight"])))
    branches.append(F.interpolate(pooled, size=y.shape[2:], mode="bilinear", align_corners=False))
    out = _cbr(sd, f"{a}project.", torch.cat(branches, 1), act="relu")
    low = _cbr(sd, "classifier.project.", low, act="relu")
    out = F.interpolate(out, size=low.shape[2:], mode="bilinear", align_corners=False)
    h = _cbr(sd, "classifier.classifier.", torch.cat([low, out], 1), padding=1, act="relu")
    h = F.conv2d(h, sd["classifier.classifier.3.weight"], sd["classifier.classifier.3.bias"])
    return F.interpolate(h, size=x.shape[2:], mode="bilinear", align_corners=False)


@pytest.mark.parametrize("output_stride", [16, 8])
def test_vainf_mobilenet_imports_and_gives_vainfs_output(tmp_path, output_stride):
    sd = vainf_state("mobilenetv2", output_stride)
    path = tmp_path / f"best_deeplabv3plus_mobilenet_cityscapes_os{output_stride}.pth"
    save_vainf(path, sd, prefix="module.")  # saved from DataParallel
    assert main(["import", "deeplab", str(path), "--backbone", "mobilenetv2", "--out", str(tmp_path / "out")]) == 0
    card = load_card(tmp_path / "out" / f"deeplabv3plus_mobilenetv2_cityscapes_os{output_stride}.card.json")
    assert card.config["output_stride"] == output_stride and card.config["padding"] == "vainf"
    assert (
        card.provenance["official_best_score"] == pytest.approx(0.7215)
        and card.provenance["official_cur_itrs"] == 30000
    )
    assert (card.height, card.width) == (1024, 2048) and card.label_set == "cityscapes"
    net = build_from_card(card)
    x = torch.randn(1, 3, 67, 131, generator=torch.Generator().manual_seed(3))  # odd sizes: padding shows
    with torch.no_grad():
        ours, ref = net(x), vainf_reference(sd, x, output_stride)
        torchvision_padding = build(DeepLabConfig(backbone="mobilenetv2", output_stride=output_stride)).eval()
        torchvision_padding.load_state_dict(net.state_dict())
        other = torchvision_padding(x)
    assert ours.shape == (1, 19, 67, 131)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)
    assert (other - ref).abs().max() > 1e-2  # torchvision's padding would not do
    # The segment graph: RGB uint8 in, Cityscapes label ids out.
    photo = torch.randint(0, 256, (1, 64, 128, 3), dtype=torch.uint8)
    ids = segment_graph_from_card(card)(photo)
    assert ids.shape == (1, 1, 64, 128) and ids.dtype == torch.uint8
    mean, std = torch.tensor([0.485, 0.456, 0.406]) * 255, torch.tensor([0.229, 0.224, 0.225]) * 255
    logits = vainf_reference(sd, ((photo.float() - mean) / std).permute(0, 3, 1, 2), output_stride)
    from cityserve.labels import get_label_set

    want = get_label_set("cityscapes").from_train_ids(logits.argmax(1, keepdim=True).numpy())
    assert (ids.numpy() == want).mean() > 0.999


def test_vainf_resnet_imports_with_inferred_backbone(tmp_path, capsys):
    sd = vainf_state("resnet50", 8)
    path = tmp_path / "best_deeplabv3plus_resnet50_cityscapes_os8.pth"
    save_vainf(path, sd)  # model.module.state_dict(): no prefix, as VainF's main.py saves
    out = tmp_path / "out"
    assert main(["import", "deeplab", str(path), "--out", str(out), "--size", "512x1024"]) == 0
    card = load_card(out / "deeplabv3plus_resnet50_cityscapes_os8.card.json")
    assert card.config["backbone"] == "resnet50" and card.config["output_stride"] == 8 and card.width == 1024
    net = build_from_card(card)
    direct = build(DeepLabConfig(backbone="resnet50", output_stride=8)).eval()
    direct.load_state_dict(sd)
    x = torch.randn(1, 3, 40, 72)
    with torch.no_grad():
        torch.testing.assert_close(net(x), direct(x))
    # Flags that contradict the file, and files that are not DeepLabV3+, are one-line errors (exit 2).
    capsys.readouterr()
    assert main(["import", "deeplab", str(path), "--backbone", "resnet101", "--out", str(out)]) == 2
    assert "resnet101" in capsys.readouterr().err
    assert main(["import", "deeplab", str(path), "--output-stride", "16", "--out", str(out)]) == 2
    assert "os8" in capsys.readouterr().err
    sep = {k.replace("classifier.aspp.convs.1.0.", "classifier.aspp.convs.1.0.body.0."): v for k, v in sd.items()}
    save_vainf(tmp_path / "sep.pth", sep)
    assert main(["import", "deeplab", str(tmp_path / "sep.pth"), "--out", str(out)]) == 2
    assert "separable_conv" in capsys.readouterr().err
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    assert main(["import", "deeplab", str(tmp_path / "junk.pth"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "junk.pth" in err and err.count("\n") == 1
    assert json.loads(card.to_json())["arch"] == "deeplabv3plus"

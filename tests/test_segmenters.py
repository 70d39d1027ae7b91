"""Segmenters: FCHarDNet reproduces the official best-model fixture, DeepLabV3+ builds at each backbone
and output stride and takes torchvision-format ImageNet weights, and the segment graph (uint8 RGB ->
uint8 label ids) equals a hand computation and exports to ONNX."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from cityserve.checkpoints import safe_load, save_checkpoint, state_dict_from
from cityserve.cli import main
from cityserve.errors import CheckpointError, ConfigError
from cityserve.models.deeplab import DeepLabConfig, MobileNetV2Backbone, ResNetBackbone, load_backbone_weights
from cityserve.models.deeplab import build as build_deeplab
from cityserve.models.fchardnet import FCHarDNet, HarDBlock, get_link
from cityserve.models.segment import SegmentGraph

ATOL = 1e-4


def cityscapes_train_to_label_ids() -> np.ndarray:
    """Independent of cityserve.labels: the table cityscapesscripts ships."""
    from cityscapesscripts.helpers.labels import trainId2label

    return np.array([trainId2label[t].id for t in range(19)])


@pytest.fixture(scope="module")
def fc(fixtures_dir):
    d = fixtures_dir / "fchardnet"
    return {
        "state": d / "fchardnet70_state.pth",
        "config": json.loads((d / "fchardnet70_config.json").read_text()),
        "input": torch.load(d / "fchardnet70_input.pt", weights_only=True),
        "output": torch.load(d / "fchardnet70_output.pt", weights_only=True),
    }


@pytest.fixture(scope="module")
def fc_card(fc, tmp_path_factory):
    from cityserve.cards import load_card

    out = tmp_path_factory.mktemp("fchardnet")
    assert main(["import", "fchardnet", str(fc["state"]), "--size", "256x512", "--out", str(out)]) == 0
    return load_card(out)


# ---- FCHarDNet ---------------------------------------------------------------------------------------
def test_harmonic_links_match_official_blocks(fc):
    for blk in fc["config"]["hardblocks"]:
        b = HarDBlock(blk["in_channels"], blk["growth_rate"], 1.7, blk["n_layers"])
        assert b.links == blk["links"]
        assert [get_link(i + 1, blk["in_channels"], blk["growth_rate"], 1.7)[0] for i in range(blk["n_layers"])] == blk[
            "layer_out_ch"
        ]
        assert b.out_channels == blk["out_channels"]


def test_fchardnet_official_best_model_reproduces_fixture(fc):
    net = FCHarDNet(19)
    sd = state_dict_from(safe_load(fc["state"]), fc["state"])  # {"model_state": {"module.…": …}}
    assert [list(t.shape) for t in net.state_dict().values()] == [s for _, s in fc["config"]["state_dict_keys"]]
    net.load_state_dict(sd, strict=True)
    net.eval()
    with torch.no_grad():
        y = net(fc["input"])
    assert y.shape == (1, 19, 256, 512)
    torch.testing.assert_close(y, fc["output"], atol=ATOL, rtol=0)


def test_fchardnet_import_card_reproduces_fixture(fc, fc_card):
    from cityserve.models.registry import build_from_card

    assert (fc_card.kind, fc_card.arch, fc_card.label_set) == ("segmenter", "fchardnet", "cityscapes")
    cfg = fc_card.config
    assert cfg["num_classes"] == 19 and cfg["bgr"] is True
    assert cfg["mean"] == [0.406, 0.456, 0.485] and cfg["std"] == [0.225, 0.224, 0.229]
    assert fc_card.provenance["official_epoch"] == safe_load(fc["state"])["epoch"]
    net = build_from_card(fc_card)
    with torch.no_grad():
        torch.testing.assert_close(net(fc["input"]), fc["output"], atol=ATOL, rtol=0)


def test_fchardnet_import_rejects_bad_files(fc, fixtures_dir, tmp_path, capsys):
    bad = tmp_path / "best_model.pkl"
    bad.write_bytes(fc["state"].read_bytes()[:1_000_000])
    assert main(["import", "fchardnet", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and "truncated" in err
    from cityserve.importing.fchardnet import import_fchardnet

    with pytest.raises(CheckpointError, match="not an FCHarDNet"):
        import_fchardnet(fixtures_dir / "pix2pix" / "unet256_ngf16_latest_net_G.pth", tmp_path / "o")
    with pytest.raises(ConfigError, match="multiples of 32"):
        import_fchardnet(fc["state"], tmp_path / "o", size=(250, 500))
    assert not (tmp_path / "o").exists()


# ---- segment graph -------------------------------------------------------------------------------------
def test_segment_graph_fchardnet_equals_hand_computation(fc_card):
    from cityserve.models.registry import build_from_card
    from cityserve.models.segment import segment_graph_from_card

    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(2, 64, 128, 3), dtype=np.uint8)
    graph = segment_graph_from_card(fc_card)
    with torch.no_grad():
        labels = graph(torch.from_numpy(img)).numpy()
    assert labels.dtype == np.uint8 and labels.shape == (2, 1, 64, 128)

    # by hand: RGB->BGR, official mean/std in BGR order, net, argmax over train ids, trainId -> labelId
    x = img[..., ::-1].astype(np.float32)
    x = (x - np.array([0.406, 0.456, 0.485], np.float32) * 255) / (np.array([0.225, 0.224, 0.229], np.float32) * 255)
    with torch.no_grad():
        logits = build_from_card(fc_card)(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))))
    expect = cityscapes_train_to_label_ids()[logits.argmax(1, keepdim=True).numpy()]
    np.testing.assert_array_equal(labels, expect)
    assert set(np.unique(labels)) <= set(cityscapes_train_to_label_ids())


def test_segment_graph_upsamples_low_resolution_logits():
    torch.manual_seed(0)
    net = nn.Conv2d(3, 19, kernel_size=4, stride=4)  # a real net whose logits are at 1/4 resolution
    lut = cityscapes_train_to_label_ids()
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    graph = SegmentGraph(net, lut, mean, std, bgr=False).eval()
    img = torch.randint(0, 256, (1, 32, 48, 3), dtype=torch.uint8)
    with torch.no_grad():
        out = graph(img)
        x = ((img.float() - torch.tensor(mean) * 255) / (torch.tensor(std) * 255)).permute(0, 3, 1, 2)
        up = torch.nn.functional.interpolate(net(x), size=(32, 48), mode="bilinear", align_corners=False)
    assert out.shape == (1, 1, 32, 48) and out.dtype == torch.uint8
    np.testing.assert_array_equal(out.numpy(), lut[up.argmax(1, keepdim=True).numpy()])


def test_deeplab_segmenter_card_and_onnx_export(tmp_path):
    import onnxruntime as ort

    from cityserve.cards import ModelCard
    from cityserve.models.segment import segment_graph_from_card

    cfg = DeepLabConfig(backbone="mobilenetv2", output_stride=16)
    torch.manual_seed(0)
    net = build_deeplab(cfg)
    card = ModelCard(
        name="dl",
        kind="segmenter",
        arch="deeplabv3plus",
        config=dict(vars(cfg)),
        label_set="cityscapes",
        height=64,
        width=64,
    )
    save_checkpoint(card, net.state_dict(), tmp_path, "dl")
    graph = segment_graph_from_card(card)
    assert graph.bgr is False
    img = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    with torch.no_grad():
        ref = graph(img).numpy()
    path = tmp_path / "segment.onnx"
    torch.onnx.export(
        graph,
        (img,),
        str(path),
        input_names=["image"],
        output_names=["labels"],
        dynamic_axes={"image": {0: "batch"}, "labels": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {"image": img.numpy()[:1]})
    assert got.dtype == np.uint8 and got.shape == (1, 1, 64, 64)
    assert (got == ref[:1]).mean() > 0.999  # float rounding may flip a near-tie pixel


# ---- DeepLabV3+ ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "backbone,os_", [("resnet50", 16), ("resnet50", 8), ("resnet101", 8), ("mobilenetv2", 16), ("mobilenetv2", 8)]
)
def test_deeplab_builds_at_output_stride(backbone, os_):
    net = build_deeplab(DeepLabConfig(backbone=backbone, output_stride=os_, num_classes=19)).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        low, high = net.backbone(x)
        y = net(x)
    assert low.shape[2:] == (16, 24)
    assert high.shape[1:] == (net.backbone.out_channels, 64 // os_, 96 // os_)
    assert y.shape == (1, 19, 64, 96)
    rates = [m[0].dilation[0] for m in net.classifier.aspp.convs[1:4]]
    assert rates == ([6, 12, 18] if os_ == 16 else [12, 24, 36])


def test_deeplab_config_checks():
    with pytest.raises(ConfigError, match="output_stride"):
        DeepLabConfig(output_stride=32)
    with pytest.raises(ConfigError, match="backbone"):
        DeepLabConfig(backbone="vgg16")


def test_torchvision_resnet50_weights_load_strictly(tmp_path):
    bb = ResNetBackbone((3, 4, 6, 3), output_stride=16)
    names = list(bb.state_dict())
    for k in (
        "conv1.weight",
        "bn1.running_mean",
        "layer1.0.conv1.weight",
        "layer1.0.downsample.0.weight",
        "layer1.0.downsample.1.running_var",
        "layer3.5.bn3.weight",
        "layer4.2.conv3.weight",
    ):
        assert k in names
    assert len(names) + 2 == 320  # torchvision resnet50().state_dict() has 320 entries, fc.weight/bias included
    g = torch.Generator().manual_seed(0)
    fake = {
        k: (torch.randn(v.shape, generator=g) if v.is_floating_point() else v.clone())
        for k, v in bb.state_dict().items()
    }
    fake["fc.weight"], fake["fc.bias"] = torch.randn(1000, 2048), torch.randn(1000)
    path = tmp_path / "resnet50-imagenet.pth"
    torch.save(fake, path)

    net = build_deeplab(DeepLabConfig(backbone="resnet50", output_stride=8))
    load_backbone_weights(net, path)
    got = net.backbone.state_dict()
    for k in ("conv1.weight", "layer2.3.bn2.running_var", "layer4.2.conv2.weight"):
        torch.testing.assert_close(got[k], fake[k], atol=0, rtol=0)
    assert net.backbone.layer4[0].conv2.dilation == (2, 2)  # dilation does not change the weights' shapes

    missing = dict(fake)
    del missing["layer2.0.conv2.weight"]
    with pytest.raises(CheckpointError, match="missing.*layer2.0.conv2.weight"):
        load_backbone_weights(net, missing)
    with pytest.raises(CheckpointError, match="unexpected.*extra.weight"):
        load_backbone_weights(net, {**fake, "extra.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="shape"):
        load_backbone_weights(net, {**fake, "conv1.weight": torch.zeros(64, 3, 3, 3)})


def test_mobilenetv2_keys_follow_torchvision():
    sd = MobileNetV2Backbone(16).state_dict()
    assert sd["features.0.0.weight"].shape == (32, 3, 3, 3)
    assert sd["features.1.conv.0.0.weight"].shape == (32, 1, 3, 3)  # expand ratio 1: depthwise first
    assert sd["features.2.conv.0.0.weight"].shape == (96, 16, 1, 1)
    assert sd["features.17.conv.2.weight"].shape == (320, 960, 1, 1)
    assert "features.18.0.weight" not in sd  # DeepLab drops the 1280-channel head; its keys are skipped on load

"""Tiny models and label maps for the serving tests.

The generator is a real SPADE card (ngf 2, 64x128, Cityscapes with instance edges, random weights)
exported by ``cityserve.export.onnx_export.export_onnx``, so the served graph is the one users get. The
segmenter is a tiny convolutional net inside the real ``SegmentGraph`` contract (uint8 photo ->
uint8 Cityscapes label ids), exported with the same exporter function; a full segmenter would only add
seconds to every run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from cityserve.card_sections import OnnxArtifact, ServingOptions
from cityserve.cards import ModelCard, load_card, sha256_file
from cityserve.checkpoints import save_checkpoint

H, W = 64, 128
SPADE_CONFIG = dict(
    label_nc=35,
    contain_dontcare_label=False,
    no_instance=False,
    ngf=2,
    num_upsampling_layers="normal",
    crop_size=128,
    aspect_ratio=2.0,
)


def tiny_spade_card(
    out_dir: Path, name: str = "tiny-spade", max_batch_size: int = 8, serving: dict | None = None, **config
) -> ModelCard:
    """A saved SPADE generator card with seeded random weights (64x128, 35 channels + instance edges;
    ``config`` overrides, e.g. ``noise_dim=4`` for OASIS noise; ``serving``: more serving options).
    Every card made with the same ``config`` has the same weights, whatever its name."""
    from cityserve.models.registry import family

    fam = family("spade")
    torch.manual_seed(0)
    model = fam.build(fam.config_cls(**SPADE_CONFIG, **config)).eval()
    card = ModelCard(
        name=name,
        kind="generator",
        arch="spade",
        config={**SPADE_CONFIG, **config},
        label_set="cityscapes",
        height=H,
        width=W,
        provenance={"source": "random weights, serving tests"},
        serving=ServingOptions(max_batch_size=max_batch_size, **(serving or {})),
    )
    return load_card(save_checkpoint(card, model.state_dict(), out_dir, name))


class TinySegNet(nn.Module):
    """Two convs -> 19 Cityscapes train-id logits at 1/2 resolution (the graph resizes them back)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 19, 1))

    def forward(self, x):
        return self.body(x)


def tiny_segment_graph():
    from cityserve.models.segment import SegmentGraph, train_id_lut

    torch.manual_seed(1)
    net = TinySegNet().eval()
    with torch.no_grad():  # make several classes win somewhere: bias by color
        net.body[2].weight.mul_(4.0)
    return SegmentGraph(net, train_id_lut("cityscapes", 19), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)).eval()


def tiny_segmenter_onnx(out_dir: Path, name: str = "tiny-seg") -> Path:
    """``segment.onnx`` + ``segment.card.json`` (the exported-card layout) for the tiny segmenter."""
    import onnx

    from cityserve.export.onnx_export import describe_io, torch_to_onnx_bytes

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    graph = tiny_segment_graph()
    example = {"image": torch.randint(0, 256, (2, H, W, 3), dtype=torch.uint8)}
    data = torch_to_onnx_bytes(graph, example, ["image"], ["labels"])
    path = out_dir / "segment.onnx"
    path.write_bytes(data)
    model = onnx.load_from_string(data)
    card = ModelCard(
        name=name,
        kind="segmenter",
        arch="deeplabv3plus",
        config={},
        label_set="cityscapes",
        height=H,
        width=W,
        provenance={"source": "tiny conv stand-in for the serving tests"},
        artifacts={"onnx": OnnxArtifact(file=path.name, sha256=sha256_file(path), **describe_io(model))},
        serving=ServingOptions(max_batch_size=8),
    )
    card.save(out_dir / "segment.card.json")
    return path


def segment_locally(image: np.ndarray) -> np.ndarray:
    """The tiny segmenter in torch: RGB uint8 [B,H,W,3] -> ids uint8 [B,1,H,W]."""
    with torch.no_grad():
        return tiny_segment_graph()(torch.from_numpy(np.ascontiguousarray(image))).numpy()


# ---- label maps and PNGs ------------------------------------------------------------------------

CITYSCAPES_IDS = [7, 8, 11, 17, 19, 20, 21, 23, 24, 26]  # road sidewalk building pole light sign veg sky person car


def block_labels(seed: int, h: int = H, w: int = W) -> np.ndarray:
    """A blocky Cityscapes id map [h, w] (uint8): regions of a few classes."""
    rng = np.random.default_rng(seed)
    coarse = rng.choice(CITYSCAPES_IDS, size=(h // 8, w // 8)).astype(np.uint8)
    return np.kron(coarse, np.ones((8, 8), dtype=np.uint8))[:h, :w]


def png_bytes(arr: np.ndarray) -> bytes:
    """uint8 [H,W] (1-channel) or RGB [H,W,3] -> PNG bytes."""
    import cv2

    a = np.ascontiguousarray(arr if arr.ndim == 2 else arr[..., ::-1])
    ok, buf = cv2.imencode(".png", a)
    assert ok
    return buf.tobytes()


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A small PNG whose header claims ``width x height`` gray pixels (zeros compress ~1000x)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    comp = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    data = b"".join(comp.compress(row) for _ in range(64)) + comp.flush()  # only the first rows: enough to inflate
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def tiny_pix2pix_onnx(out_dir: Path, name: str = "tiny-p2p") -> Path:
    """The cheapest real generator the serving path runs (~1 ms a 128x128 image): a pix2pix U-Net
    (unet_128, ngf 2, palette-color input, random weights) exported as ``render.onnx`` + card, for
    the tests that send thousands of requests."""
    from cityserve.export.onnx_export import export_onnx
    from cityserve.models.registry import family

    config = dict(label_nc=35, input_mode="color", ngf=2, netG="unet_128", use_dropout=False)
    fam = family("pix2pix")
    torch.manual_seed(2)
    model = fam.build(fam.config_cls(**config)).eval()
    card = ModelCard(
        name=name,
        kind="generator",
        arch="pix2pix",
        config=config,
        label_set="cityscapes",
        height=128,
        width=128,
        provenance={"source": "random weights, failover tests"},
        serving=ServingOptions(max_batch_size=8),
    )
    card = load_card(save_checkpoint(card, model.state_dict(), out_dir, name))
    return export_onnx(card, Path(out_dir) / "exported")


def tiny_layout_card(out_dir: Path, name: str = "tiny-layout", truncation_psi: float = 0.8) -> ModelCard:
    """A saved StyleGAN2 layout generator card (32x64 Cityscapes ids, seeded random weights, a few
    channels; its w_avg is set off zero so that truncation changes the layout)."""
    import dataclasses

    from cityserve.card_sections import LayoutSection
    from cityserve.models.layout_stylegan import LayoutGenerator, LayoutStyleGANConfig

    cfg = LayoutStyleGANConfig(
        num_classes=34, height=32, width=64, z_dim=8, w_dim=8, mapping_layers=2, channel_base=16, channel_min=4
    )
    torch.manual_seed(3)
    G = LayoutGenerator(cfg).eval()
    with torch.no_grad():
        G.mapping.w_avg.normal_()
    card = ModelCard(
        name=name,
        kind="layout",
        arch="layout-stylegan2",
        config=dataclasses.asdict(cfg),
        label_set="cityscapes",
        height=32,
        width=64,
        layout=LayoutSection(z_dim=8, truncation_psi=truncation_psi, min_area=3),
        provenance={"source": "random weights, serving tests"},
        serving=ServingOptions(max_batch_size=8),
    )
    return load_card(save_checkpoint(card, G.state_dict(), out_dir, name))

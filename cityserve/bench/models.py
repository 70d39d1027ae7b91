"""The models the benchmarks time: official sizes with random weights (timing does not depend on the
weights; every card made here says ``random weights, for timing only``), the shipped demo models,
and tiny stand-ins for ``--quick``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ..cards import ModelCard, load_card
from ..checkpoints import save_checkpoint
from ..data.synthetic import generate_scene
from ..models.registry import family
from ..models.render import instance_edges, one_hot
from ..serving.defaults import DEMO_DIR


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    arch: str
    kind: str
    config: dict[str, Any]
    label_set: str
    height: int
    width: int
    note: str = ""

    def card(self, cache: Path) -> ModelCard:
        """A saved card with seeded random weights (made once per cache directory)."""
        path = cache / self.name / f"{self.name}.card.json"
        if path.is_file():
            return load_card(path)
        fam = family(self.arch)
        torch.manual_seed(0)
        model = fam.build(fam.config_cls(**self.config)).eval()
        source = "random weights, for timing only"
        if self.arch == "spade" and self.kind == "generator":
            calibrate_spade_batchnorm(model, self.height, self.width)
            source += " (batch-norm statistics calibrated on synthetic scenes: O(1) activations)"
        card = ModelCard(
            name=self.name,
            kind=self.kind,
            arch=self.arch,
            config=self.config,
            label_set=self.label_set,
            height=self.height,
            width=self.width,
            provenance={"source": source, "note": self.note},
        )
        save_checkpoint(card, model.state_dict(), path.parent, self.name)
        return load_card(path)


def calibrate_spade_batchnorm(model: torch.nn.Module, height: int, width: int, images: int = 2) -> None:
    """Set a random SPADE generator's batch-norm running statistics from one train-mode pass over
    synthetic scenes. With the default (mean 0, var 1) statistics activations grow block after block
    and tanh saturates almost everywhere, so low-precision engines flip signs (±255 levels) and any
    accuracy figure measured on it is meaningless; calibrated, outputs are O(1) as a trained model's.
    Timing does not change."""
    cfg = model.cfg
    if cfg.label_nc >= 34 and not cfg.contain_dontcare_label:
        scenes = [generate_scene(i, height, width) for i in range(images)]
        labels = np.stack([s.labels for s in scenes])[:, None]
        inst = np.stack([s.instances for s in scenes])[:, None].astype(np.int32)
    else:
        rng = np.random.default_rng(0)
        small = rng.integers(0, cfg.num_classes, (images, 1, max(1, height // 16), max(1, width // 16)))
        labels = np.kron(small, np.ones((1, 1, 16, 16), dtype=small.dtype))[..., :height, :width]
        inst = labels.astype(np.int32)
    labels_t = torch.from_numpy(np.ascontiguousarray(labels))
    x = one_hot(labels_t, cfg.num_classes)
    if not cfg.no_instance:
        x = torch.cat([x, instance_edges(torch.from_numpy(np.ascontiguousarray(inst)))], 1)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: one pass sets the statistics of these inputs
    model.train()
    with torch.no_grad():
        model(x) if not cfg.use_vae else model(x, torch.randn(images, cfg.z_dim))
    for m in bns:
        m.momentum = 0.1
    model.eval()


SPADE_CITYSCAPES = ModelSpec(
    "spade-cityscapes-256x512",
    "spade",
    "generator",
    dict(
        label_nc=35,
        contain_dontcare_label=False,
        no_instance=False,
        ngf=64,
        num_upsampling_layers="more",
        crop_size=512,
        aspect_ratio=2.0,
    ),
    "cityscapes",
    256,
    512,
    "official SPADE Cityscapes size: 256x512, upsampling 'more', ngf 64, instance edges",
)
SPADE_ADE20K = ModelSpec(
    "spade-ade20k-256x256",
    "spade",
    "generator",
    dict(
        label_nc=150,
        contain_dontcare_label=True,
        no_instance=True,
        ngf=64,
        num_upsampling_layers="normal",
        crop_size=256,
        aspect_ratio=1.0,
    ),
    "ade20k",
    256,
    256,
    "official SPADE ADE20K size: 151 labels",
)
PIX2PIX = ModelSpec(
    "pix2pix-unet256",
    "pix2pix",
    "generator",
    dict(label_nc=34, input_mode="color", ngf=64),
    "cityscapes",
    256,
    256,
    "junyanz unet_256, color label input",
)
FCHARDNET_1K = ModelSpec("fchardnet-512x1024", "fchardnet", "segmenter", dict(), "cityscapes", 512, 1024)
FCHARDNET_2K = ModelSpec("fchardnet-1024x2048", "fchardnet", "segmenter", dict(), "cityscapes", 1024, 2048)
DEEPLAB_R50 = ModelSpec(
    "deeplabv3plus-r50-512x1024",
    "deeplabv3plus",
    "segmenter",
    dict(backbone="resnet50", output_stride=16),
    "cityscapes",
    512,
    1024,
)

TINY_SPADE = ModelSpec(
    "tiny-spade-32x64",
    "spade",
    "generator",
    dict(label_nc=35, no_instance=False, ngf=4, num_upsampling_layers="normal", crop_size=64, aspect_ratio=2.0),
    "cityscapes",
    32,
    64,
    "quick mode stand-in",
)
TINY_DEEPLAB = ModelSpec(
    "tiny-deeplab-mbv2-32x64",
    "deeplabv3plus",
    "segmenter",
    dict(backbone="mobilenetv2", output_stride=16),
    "cityscapes",
    32,
    64,
    "quick mode stand-in",
)

OFFICIAL = [SPADE_CITYSCAPES, SPADE_ADE20K, PIX2PIX, FCHARDNET_1K, FCHARDNET_2K, DEEPLAB_R50]
QUICK = [TINY_SPADE, TINY_DEEPLAB]


def demo_cards() -> dict[str, Optional[ModelCard]]:
    """The shipped demo generator and segmenter, where present: the ones the demo serves by default
    (not the depth-aware pair's stages, not the layout generator)."""
    from ..serving.defaults import shipped_demo_cards

    out: dict[str, Optional[ModelCard]] = {"generator": None, "segmenter": None}
    for c in shipped_demo_cards(DEMO_DIR) if DEMO_DIR.is_dir() else []:
        if c.kind in out:
            out[c.kind] = out[c.kind] or c
    return out


@dataclasses.dataclass
class ChainCard:
    """The photo -> labels -> photo pipeline (what Triton's ``photo2photo`` ensemble runs), timed as one
    model: the segmenter's label ids feed the generator (instances = the label map, z = 0). Photos come
    in at the segmenter's size; ids of another size are nearest-resized to the generator's, as the
    ensemble's ``prepare_render`` step does, so the two must share an aspect ratio."""

    segmenter: ModelCard
    generator: ModelCard
    kind: str = "chain"
    arch: str = "photo2photo"

    def __post_init__(self):
        s, g = self.segmenter, self.generator
        if s.height * g.width != s.width * g.height:
            raise ValueError(
                f"photo2photo needs one aspect ratio: segmenter {s.height}x{s.width}, generator {g.height}x{g.width}"
            )

    @property
    def name(self) -> str:
        return f"photo2photo[{self.segmenter.name}->{self.generator.name}]"

    @property
    def height(self) -> int:  # of the input photo
        return self.segmenter.height

    @property
    def width(self) -> int:
        return self.segmenter.width

    @property
    def provenance(self) -> dict:
        return {
            "source": f"{self.segmenter.provenance.get('source', 'trained')} -> "
            f"{self.generator.provenance.get('source', 'trained')}"
        }

    def card(self, cache: Path) -> ChainCard:
        return self


class ChainSpec:
    """A chain of two ModelSpecs, resolved to cards in the run's cache."""

    def __init__(self, segmenter: ModelSpec, generator: ModelSpec):
        self.segmenter, self.generator = segmenter, generator

    def card(self, cache: Path) -> ChainCard:
        return ChainCard(self.segmenter.card(cache), self.generator.card(cache))

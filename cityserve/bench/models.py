"""The models the benchmarks time: official sizes with random weights (timing does not depend on the
weights; every card made here says ``random weights, for timing only``), the shipped demo models,
and tiny stand-ins for ``--quick``."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional

import torch

from ..cards import ModelCard, load_card
from ..checkpoints import save_checkpoint
from ..models.registry import family

REPO = Path(__file__).resolve().parents[2]
DEMO_DIR = REPO / "models" / "demo"


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
        card = ModelCard(name=self.name, kind=self.kind, arch=self.arch, config=self.config,
                         label_set=self.label_set, height=self.height, width=self.width,
                         provenance={"source": "random weights, for timing only", "note": self.note})
        save_checkpoint(card, model.state_dict(), path.parent, self.name)
        return load_card(path)


SPADE_CITYSCAPES = ModelSpec(
    "spade-cityscapes-256x512", "spade", "generator",
    dict(label_nc=35, contain_dontcare_label=False, no_instance=False, ngf=64, num_upsampling_layers="more",
         crop_size=512, aspect_ratio=2.0), "cityscapes", 256, 512,
    "official SPADE Cityscapes size: 256x512, upsampling 'more', ngf 64, instance edges")
SPADE_ADE20K = ModelSpec(
    "spade-ade20k-256x256", "spade", "generator",
    dict(label_nc=150, contain_dontcare_label=True, no_instance=True, ngf=64, num_upsampling_layers="normal",
         crop_size=256, aspect_ratio=1.0), "ade20k", 256, 256, "official SPADE ADE20K size: 151 labels")
PIX2PIX = ModelSpec(
    "pix2pix-unet256", "pix2pix", "generator",
    dict(label_nc=34, input_mode="color", ngf=64), "cityscapes", 256, 256, "junyanz unet_256, color label input")
FCHARDNET_1K = ModelSpec("fchardnet-512x1024", "fchardnet", "segmenter", dict(), "cityscapes", 512, 1024)
FCHARDNET_2K = ModelSpec("fchardnet-1024x2048", "fchardnet", "segmenter", dict(), "cityscapes", 1024, 2048)
DEEPLAB_R50 = ModelSpec("deeplabv3plus-r50-512x1024", "deeplabv3plus", "segmenter",
                        dict(backbone="resnet50", output_stride=16), "cityscapes", 512, 1024)

TINY_SPADE = ModelSpec(
    "tiny-spade-32x64", "spade", "generator",
    dict(label_nc=35, no_instance=False, ngf=4, num_upsampling_layers="normal", crop_size=64, aspect_ratio=2.0),
    "cityscapes", 32, 64, "quick mode stand-in")
TINY_DEEPLAB = ModelSpec("tiny-deeplab-mbv2-32x64", "deeplabv3plus", "segmenter",
                         dict(backbone="mobilenetv2", output_stride=16), "cityscapes", 32, 64, "quick mode stand-in")

OFFICIAL = [SPADE_CITYSCAPES, SPADE_ADE20K, PIX2PIX, FCHARDNET_1K, FCHARDNET_2K, DEEPLAB_R50]
QUICK = [TINY_SPADE, TINY_DEEPLAB]


def demo_cards() -> dict[str, Optional[ModelCard]]:
    """The shipped demo generator and segmenter, where present."""
    out: dict[str, Optional[ModelCard]] = {"generator": None, "segmenter": None}
    if DEMO_DIR.is_dir():
        for p in sorted(DEMO_DIR.glob("*.card.json")):
            c = load_card(p)
            out[c.kind] = out[c.kind] or c
    return out

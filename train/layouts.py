#!/usr/bin/env python
"""Train an unconditional street-layout GAN (label maps only): StyleGAN2-style or the DCGAN baseline.

The first stage of Aharoni and Israelov's two-stage street generation: the generator draws per-class
logits of a label map from noise; `cityserve` snaps them to label ids (argmax, specks merged, instance
maps) and SPADE renders the photo. Any dataset the project reads works: only its label maps are used.
Presets: ``cityscapes`` (StyleGAN2, 128x256 Cityscapes ids), ``dcgan`` (the paper's baseline),
``demo`` (CPU widths on synthetic scenes, 64x128), ``tiny`` (tests). Every flag overrides the preset;
``--arch`` picks the architecture. ``--target photos`` trains the same StyleGAN2 on the photos instead
(the paper's one-stage baseline; a card of kind ``photo-gan``, not servable). Multi-GPU / multi-node:
``torchrun``.
"""

from __future__ import annotations

import sys

from cityserve.data.transforms import Augment
from cityserve.labels import get_label_set
from cityserve.training.common import build_training_data
from cityserve.training.entry import ResolvedRun, TrainerSpec, train_main
from cityserve.training.layout_trainer import PRESETS, LayoutModelConfig, LayoutTrainConfig, LayoutTrainer

EPILOG = """examples:
  # a quick smoke run on synthetic scenes, then continue it: --resume takes the newest state in --out
  python train/layouts.py --preset tiny --seeds 0-3 --max-steps 4 --out runs/layout-smoke
  python train/layouts.py --preset tiny --seeds 0-3 --max-steps 8 --out runs/layout-smoke --resume

  # the DCGAN baseline at the same tiny size
  python train/layouts.py --preset tiny --arch dcgan --seeds 0-3 --max-steps 4 --out runs/layout-dcgan-smoke

  # the one-stage baseline: the same StyleGAN2 on the photos (3 outputs, RGB in [-1, 1])
  python train/layouts.py --preset tiny --target photos --seeds 0-3 --max-steps 4 --out runs/photo-gan-smoke

  # CPU widths on 2000 synthetic scenes
  python train/layouts.py --preset demo --seeds 0-1999 --max-steps 2000 --out runs/layout-demo

  # StyleGAN2 on Cityscapes label maps (128x256), 8 GPUs
  torchrun --nproc_per_node 8 train/layouts.py --preset cityscapes --data cityscapes --root data/cityscapes \\
      --out runs/layout-cityscapes

Outputs in --out: NAME.pt + NAME.card.json (a card of kind "layout", with its layout section: z size,
truncation, speck area), checkpoints/, state/ (for --resume), config.json, tensorboard/ (losses, learning
rates, generated ids | generated soft colors | real grids; with --target photos: a card of kind
"photo-gan" and generated | generated | real photo grids).
Exit codes: 0 done, 1 a loss became NaN/inf (the last good checkpoint is kept), 2 bad input, 3 unavailable.
"""


def resolved_model(r: ResolvedRun) -> LayoutModelConfig:
    import dataclasses

    return dataclasses.replace(r.preset.model, **r.model_overrides)


def build(r: ResolvedRun, runner):
    mcfg = resolved_model(r)
    trainer = LayoutTrainer(runner, mcfg, r.label_set, r.train, r.size, name=r.run.name)
    augment = Augment(flip=True, brightness=0.0, contrast=0.0) if r.data.flip else None
    num = get_label_set(r.label_set).num_ids
    return trainer, build_training_data(r.data, r.label_set, r.size, augment, num_channels=num)


SPEC = TrainerSpec(
    prog="train/layouts.py",
    description=__doc__,
    epilog=EPILOG,
    presets=PRESETS,
    default_preset="demo",
    model_cls=LayoutModelConfig,
    train_cls=LayoutTrainConfig,
    build=build,
    resolved_model=resolved_model,
)


def main(argv: list[str] | None = None) -> int:
    return train_main(SPEC, argv)


if __name__ == "__main__":
    sys.exit(main())

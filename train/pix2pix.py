#!/usr/bin/env python
"""Train a pix2pix generator (label map -> photo) as in the CityGAN setup.

BCE adversarial loss with label smoothing (real 0.9, fake 0.1), L1 x 100, Adam lr 2e-4 beta1 0.5,
batch 1, random flips; the same datasets and label sets as SPADE, with the label map fed one-hot
(``--input-mode onehot``) or as palette colors (``--input-mode color``).
"""

from __future__ import annotations

import dataclasses
import sys

from cityserve.data.transforms import Augment
from cityserve.labels import get_label_set
from cityserve.models.pix2pix import Pix2PixConfig
from cityserve.training.common import build_training_data
from cityserve.training.entry import ResolvedRun, TrainerSpec, train_main
from cityserve.training.pix2pix_trainer import PRESETS, Pix2PixTrainConfig, Pix2PixTrainer

EPILOG = """examples:
  python train/pix2pix.py --preset citygan --data cityscapes --root /data/cityscapes --out runs/citygan
  python train/pix2pix.py --preset demo --data synthetic --seeds 0-99 --max-steps 2000 --out runs/p2p-demo
  python train/pix2pix.py --preset citygan --data paired --root my_city --input-mode color --out runs/p2p-color

Outputs, --resume, exit codes: as train/spade.py (NAME.card.json + NAME.pt, checkpoints/, state/, tensorboard/).
"""


def resolved_model(r: ResolvedRun) -> Pix2PixConfig:
    """The preset's networks with the flags given, fed the run's label set."""
    return dataclasses.replace(r.preset.model, label_nc=get_label_set(r.label_set).num_ids, **r.model_overrides)


def build(r: ResolvedRun, runner):
    cfg = resolved_model(r)
    trainer = Pix2PixTrainer(runner, cfg, r.label_set, r.train, r.size, name=r.run.name)
    augment = Augment(flip=True, brightness=0.0, contrast=0.0) if r.data.flip else None
    return trainer, build_training_data(r.data, r.label_set, r.size, augment, num_channels=cfg.label_nc)


SPEC = TrainerSpec(
    prog="train/pix2pix.py",
    description=__doc__,
    epilog=EPILOG,
    presets=PRESETS,
    default_preset="citygan",
    model_cls=Pix2PixConfig,
    train_cls=Pix2PixTrainConfig,
    build=build,
    resolved_model=resolved_model,
)


def main(argv: list[str] | None = None) -> int:
    return train_main(SPEC, argv)


if __name__ == "__main__":
    sys.exit(main())

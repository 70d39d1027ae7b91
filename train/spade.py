#!/usr/bin/env python
"""Train a SPADE / GauGAN generator (label map -> photo), with SPADE's objective or OASIS's.

Presets: ``cityscapes`` / ``ade20k`` (SPADE's published settings), ``oasis`` (OASIS's), ``hongkong``
(Adam 2e-4, batch 1, 100 epochs, Xavier), ``demo`` (the shipped demo model: OASIS objective at CPU widths
on synthetic scenes), ``demo-spade`` (the previous demo recipe), ``tiny`` (tests). Every flag overrides
the preset; the resolved options are written to OUT/config.json. Multi-GPU / multi-node: ``torchrun``.
"""

from __future__ import annotations

import sys

from cityserve.cards import load_card
from cityserve.data.transforms import Augment
from cityserve.models.registry import config_from_card
from cityserve.models.spade import SPADEConfig
from cityserve.training.common import build_training_data
from cityserve.training.entry import ResolvedRun, TrainerSpec, train_main
from cityserve.training.spade_presets import PRESETS
from cityserve.training.spade_trainer import SPADETrainConfig, SPADETrainer, spade_config_for, stage_config

EPILOG = """examples:
  # the shipped demo model (models/demo/spade-demo): 128x256, then fine-tuned at 256x512 (2-core CPU; the
  # shipped run was started for 8000 steps and stopped at 4000, see models/demo/README.md)
  python train/spade.py --preset demo --seeds 0-1999 --max-steps 4000 --save-every 250 --out runs/demo128
  python train/spade.py --preset demo --seeds 0-1999 --size 256x512 --max-steps 300 --niter-decay 1 \\
      --init-from runs/demo128/spade-demo.card.json --init-D runs/demo128/state/step_00004000.pt --out runs/demo

  # SPADE's published Cityscapes settings on 8 GPUs (batch 16 per GPU here; SPADE used 16 in total)
  torchrun --nproc_per_node 8 train/spade.py --preset cityscapes --data cityscapes --root data/cityscapes \\
      --batch-size 2 --vgg-weights vgg19-dcbb9e9d.pth --out runs/spade-cityscapes

  # OASIS's objective on your own paired folders (no VGG weights needed)
  python train/spade.py --preset oasis --data paired --root my_city --batch-size 4 --out runs/oasis

  # fine-tune an imported official checkpoint on your own paired folders
  cityserve import spade latest_net_G.pth --label-set cityscapes --size 256x512 --out models/spade-cs
  python train/spade.py --preset hongkong --init-from models/spade-cs --data paired --root my_city --out runs/ft

  # the depth-aware pair (Sun, Fu and Huang): stage 1 label -> depth, stage 2 label + depth -> photo,
  # trained on true depth, or on stage 1's predictions (what the chained graph feeds it)
  python train/spade.py --preset tiny --seeds 0-3 --max-steps 4 --stage depth --out runs/depth
  python train/spade.py --preset tiny --seeds 0-3 --max-steps 4 --stage photo-from-depth --out runs/photo-d
  python train/spade.py --preset tiny --seeds 0-3 --max-steps 4 --stage photo-from-depth \
      --depth-source predicted --depth-model runs/depth/spade-tiny.card.json --out runs/photo-dp
  # (your own data: a depth/ folder beside the images, 16-bit PNGs in mm or .npy in metres: docs/depth.md)

  # a quick smoke run, then continue it: --resume takes the newest state in --out
  python train/spade.py --preset tiny --seeds 0-3 --max-steps 4 --out runs/smoke
  python train/spade.py --preset tiny --seeds 0-3 --max-steps 8 --out runs/smoke --resume

Outputs in --out: NAME.pt + NAME.card.json (newest checkpoint; `cityserve render` and export take it),
checkpoints/NAME_stepN.* (one card per saved checkpoint), state/step_N.pt (full training state for
--resume), config.json (every option this run used), tensorboard/ (losses, learning rates,
label | generated | real grids).
Exit codes: 0 done, 1 a loss became NaN/inf (the step and loss are named; the last good checkpoint is kept),
2 bad input, 3 unavailable.
"""


def resolved_model(r: ResolvedRun) -> SPADEConfig:
    """The preset's generator at the run's size and label set, with the flags given applied; with
    ``--init-from``, the card's architecture at the run's size."""
    if r.train.init_from:
        card = load_card(r.train.init_from)
        size = r.data.resolution((card.height, card.width))
        cfg = config_from_card(card)
        return spade_config_for(card.label_set, size, **{**_free_fields(cfg, keep_labels=True)})
    keep = r.label_set == r.preset.label_set  # another label set: its own label channels
    cfg = spade_config_for(r.label_set, r.size, **{**_free_fields(r.preset.model, keep), **r.model_overrides})
    return stage_config(cfg, r.train.stage)


def _free_fields(cfg: SPADEConfig, keep_labels: bool) -> dict:
    drop = {"crop_size", "aspect_ratio"} | (set() if keep_labels else {"label_nc", "contain_dontcare_label"})
    return {k: v for k, v in vars(cfg).items() if k not in drop}


def build(r: ResolvedRun, runner):
    gcfg = resolved_model(r)
    size = (gcfg.height, gcfg.width)
    label_set = load_card(r.train.init_from).label_set if r.train.init_from else r.label_set
    trainer = SPADETrainer(runner, gcfg, label_set, r.train, name=r.run.name, size=size)
    augment = Augment(flip=True, brightness=0.0, contrast=0.0) if r.data.flip else None
    with_depth = r.train.stage != "photo"  # the depth stages read a depth map with every sample
    data = build_training_data(
        r.data, trainer.label_set, size, augment, num_channels=trainer.gcfg.num_classes, with_depth=with_depth
    )
    return trainer, data


SPEC = TrainerSpec(
    prog="train/spade.py",
    description=__doc__,
    epilog=EPILOG,
    presets=PRESETS,
    default_preset="demo",
    model_cls=SPADEConfig,
    train_cls=SPADETrainConfig,
    build=build,
    resolved_model=resolved_model,
)


def main(argv: list[str] | None = None) -> int:
    return train_main(SPEC, argv)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Train a semantic segmenter (photo -> label ids): FCHarDNet (hardnet70) or DeepLabV3+.

Cross-entropy with the ignore label 255 (``--loss ce``) or FCHarDNet's bootstrapped cross-entropy
(``--loss bootstrapped``), SGD with the poly learning rate, mixed precision on CUDA, ``torchrun``
multi-GPU, atomic checkpoints with ``--resume``, a model card per checkpoint (`cityserve segment`, eval
and export take it), TensorBoard and progress bars.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from cityserve.data.transforms import Augment
from cityserve.labels import get_label_set
from cityserve.models.deeplab import DeepLabConfig
from cityserve.models.registry import family
from cityserve.training.common import build_training_data
from cityserve.training.entry import ResolvedRun, TrainerSpec, train_main
from cityserve.training.segmenter_trainer import PRESETS, SegmenterTrainConfig, SegmenterTrainer

ARCHS = ("fchardnet", "deeplabv3plus")

EPILOG = """examples:
  # the demo segmenter on synthetic scenes (2-core CPU, ~25 minutes)
  python train/segmenter.py --preset demo --data synthetic --seeds 0-99 --out runs/seg-demo

  # FCHarDNet's Cityscapes recipe on 4 GPUs
  torchrun --nproc_per_node 4 train/segmenter.py --preset fchardnet --data cityscapes --root /data/cityscapes \\
      --batch-size 4 --out runs/fchardnet

  # DeepLabV3+ MobileNetV2 from local ImageNet weights
  python train/segmenter.py --preset deeplab --backbone mobilenetv2 --backbone-weights mobilenet_v2.pth \\
      --data cityscapes --root /data/cityscapes --out runs/deeplab

Outputs, --resume, exit codes: as train/spade.py (NAME.card.json + NAME.pt, checkpoints/, state/, tensorboard/).
"""


def _arch(r: ResolvedRun) -> str:
    return r.args.arch or ("deeplabv3plus" if isinstance(r.preset.model, DeepLabConfig) else "fchardnet")


def resolved_model(r: ResolvedRun):
    """The preset's network (or ``--arch``'s defaults), with the flags given, over the run's label set."""
    arch = _arch(r)
    ls = get_label_set(r.label_set)
    same = isinstance(r.preset.model, family(arch).config_cls)
    base = r.preset.model if same else family(arch).config_cls()
    overrides = r.model_overrides if arch == "deeplabv3plus" else {}
    label = r.label_set if isinstance(r.label_set, str) else ls.name
    return dataclasses.replace(base, num_classes=ls.num_train_ids, label_set=label, **overrides)


def build(r: ResolvedRun, runner):
    cfg = resolved_model(r)
    trainer = SegmenterTrainer(runner, _arch(r), cfg, r.label_set, r.train, r.size, name=r.run.name)
    augment = Augment(flip=r.data.flip, brightness=0.2, contrast=0.2, scale=tuple(r.train.scale))
    return trainer, build_training_data(r.data, r.label_set, r.size, augment)


def _arch_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", choices=ARCHS, help="network (default: the preset's)")


SPEC = TrainerSpec(
    prog="train/segmenter.py",
    description=__doc__,
    epilog=EPILOG,
    presets=PRESETS,
    default_preset="demo",
    model_cls=DeepLabConfig,
    model_fields=("backbone", "output_stride"),
    train_cls=SegmenterTrainConfig,
    build=build,
    resolved_model=resolved_model,
    extra_args=_arch_flag,
)


def main(argv: list[str] | None = None) -> int:
    return train_main(SPEC, argv)


if __name__ == "__main__":
    sys.exit(main())

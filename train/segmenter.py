#!/usr/bin/env python
"""Train a semantic segmenter (photo -> label ids): FCHarDNet (hardnet70) or DeepLabV3+.

Cross-entropy with the ignore label 255 (``--loss ce``) or FCHarDNet's bootstrapped cross-entropy
(``--loss bootstrapped``), SGD with the poly learning rate, mixed precision on CUDA, ``torchrun``
multi-GPU, atomic checkpoints with ``--resume``, a model card per checkpoint (`cityserve segment`, eval
and export take it), TensorBoard and progress bars.
"""

from __future__ import annotations

import argparse
import sys

EPILOG = """examples:
  # the demo segmenter on synthetic scenes (2-core CPU, ~25 minutes)
  python train/segmenter.py --preset demo --data synthetic --seeds 0-99 --out runs/seg-demo

  # FCHarDNet's Cityscapes recipe on 4 GPUs
  torchrun --nproc_per_node 4 train/segmenter.py --preset fchardnet --data cityscapes --root data/cityscapes \\
      --batch-size 4 --out runs/fchardnet

  # DeepLabV3+ MobileNetV2 from local ImageNet weights
  python train/segmenter.py --preset deeplab --backbone mobilenetv2 --backbone-weights mobilenet_v2.pth \\
      --data cityscapes --root data/cityscapes --out runs/deeplab

Outputs, --resume, exit codes: as train/spade.py (NAME.card.json + NAME.pt, checkpoints/, state/, tensorboard/).
"""


def build_parser() -> argparse.ArgumentParser:
    from cityserve.training.common import training_parser
    from cityserve.training.segmenter_trainer import PRESETS

    p = training_parser("train/segmenter.py", __doc__, EPILOG, PRESETS, default="demo")
    m = p.add_argument_group("model")
    m.add_argument("--arch", choices=("fchardnet", "deeplabv3plus"))
    m.add_argument("--backbone", choices=("resnet50", "resnet101", "mobilenetv2"), help="DeepLabV3+ backbone")
    m.add_argument("--output-stride", type=int, choices=(8, 16), help="DeepLabV3+ output stride")
    m.add_argument("--backbone-weights", help="DeepLabV3+: local torchvision ImageNet state dict for the backbone")
    t = p.add_argument_group("optimisation")
    t.add_argument("--loss", choices=("bootstrapped", "ce"))
    t.add_argument("--min-k", type=int, help="bootstrapped CE: at least this many hardest pixels per image")
    t.add_argument("--loss-th", type=float, help="bootstrapped CE: loss threshold")
    t.add_argument("--lr", type=float)
    t.add_argument("--momentum", type=float)
    t.add_argument("--weight-decay", type=float)
    t.add_argument("--no-flip", dest="flip", action="store_false", help="no random horizontal flips")
    return p


def main(argv: list[str] | None = None) -> int:
    from cityserve.training.common import train_main
    from cityserve.training.segmenter_trainer import PRESETS

    return train_main(build_parser, PRESETS, _run, argv)


def _run(args: argparse.Namespace, preset: dict) -> int:
    from cityserve.data.transforms import Augment
    from cityserve.labels import get_label_set
    from cityserve.models.registry import family
    from cityserve.training.common import build_training_data, fit, given, run_config, size_from_args
    from cityserve.training.segmenter_trainer import SegmenterTrainConfig, SegmenterTrainer

    arch = args.arch or preset["arch"]
    label_set = args.label_set or "cityscapes"
    ls = get_label_set(label_set)
    model = dict(preset["model"]) if arch == preset["arch"] else {}
    if arch == "deeplabv3plus":
        model.update(given(args, ("backbone", "output_stride")))
    label_name = label_set if isinstance(label_set, str) else ls.name
    cfg = family(arch).config_cls(num_classes=ls.num_train_ids, label_set=label_name, **model)
    train = {
        **preset["train"],
        **given(args, ("loss", "min_k", "loss_th", "lr", "momentum", "weight_decay", "backbone_weights")),
    }
    size = size_from_args(args, preset["size"])
    rc = run_config(args, name=f"{arch}-{args.preset}", epochs=None, batch_size=preset["batch_size"])
    if rc.max_steps is None and rc.epochs is None:
        rc.max_steps = preset["max_steps"]

    def setup(runner):
        trainer = SegmenterTrainer(runner, arch, cfg, label_set, SegmenterTrainConfig(**train), size, name=rc.name)
        augment = Augment(flip=args.flip, brightness=0.2, contrast=0.2, scale=tuple(preset["scale"]))
        return trainer, build_training_data(args, label_set, size, augment)

    return fit(rc, setup)


if __name__ == "__main__":
    sys.exit(main())

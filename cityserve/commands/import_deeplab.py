"""``cityserve import deeplab``: a VainF/DeepLabV3Plus-Pytorch checkpoint -> cityserve weights + a segmenter
model card, checked against the architecture on the way in."""

from __future__ import annotations

import argparse

from ..cliutil import parse_size

EPILOG = """\
The file is VainF/DeepLabV3Plus-Pytorch's main.py checkpoint ({"cur_itrs", "model_state",
"optimizer_state", "scheduler_state", "best_score"}; keys may carry DataParallel's "module."), e.g. the
published best_deeplabv3plus_mobilenet_cityscapes_os16.pth or best_deeplabv3plus_resnet101_cityscapes_os16.pth.
The backbone and the class count are read from the tensors (--backbone, when given, must agree); the
output stride is not in the weights: --output-stride, else the file name's os8/os16, else 16. The card
records VainF's preprocessing (RGB, ImageNet mean/std) and maps the 19 Cityscapes train ids back to label
ids, so `cityserve eval segmenter` and the segment graph need nothing else. --size is the resolution the
card advertises (VainF validates Cityscapes at 1024x2048). Checkpoints trained with --separable_conv, and
DeepLabV3 (not V3+), HRNet or Xception models, are refused with the reason.

examples:
  cityserve import deeplab best_deeplabv3plus_mobilenet_cityscapes_os16.pth --out models/deeplab_mbv2
  cityserve import deeplab best_deeplabv3plus_resnet101_cityscapes_os16.pth --backbone resnet101 \\
      --output-stride 16 --size 512x1024 --out models/deeplab_r101
"""


def register(sub, groups) -> None:
    p = groups["import"].add_parser(
        "deeplab",
        help="import a VainF/DeepLabV3Plus-Pytorch checkpoint as a segmenter",
        description="Import a VainF/DeepLabV3Plus-Pytorch DeepLabV3+ checkpoint as it is: weights + a "
        "segmenter model card with its preprocessing.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", help="best_deeplabv3plus_<backbone>_<dataset>_os<N>.pth")
    p.add_argument(
        "--backbone", choices=("resnet50", "resnet101", "mobilenetv2"), help="expected backbone (default: read it)"
    )
    p.add_argument("--output-stride", type=int, choices=(8, 16), help="8 or 16 (default: from the file name, else 16)")
    p.add_argument("--label-set", default="cityscapes", help="label set of the train ids (default: cityscapes)")
    p.add_argument(
        "--size",
        type=parse_size,
        default=(1024, 2048),
        metavar="HxW",
        help="resolution recorded in the card (default: 1024x2048)",
    )
    p.add_argument("--name", help="checkpoint name (default: deeplabv3plus_<backbone>_<label set>_os<N>)")
    p.add_argument("--out", required=True, help="output directory for NAME.pt and NAME.card.json")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..importing.deeplab import import_deeplab

    card = import_deeplab(
        args.checkpoint, args.out, args.backbone, args.output_stride, args.label_set, args.size, args.name
    )
    print(f"imported {args.checkpoint} -> {card}")
    return 0

"""``cityserve import pix2pix`` and ``cityserve import fchardnet``: official checkpoints -> cityserve
weights + model card, checked against the architecture on the way in."""

from __future__ import annotations

import argparse

from ..cliutil import parse_size

PIX2PIX_EPILOG = """\
The file is junyanz/pytorch-CycleGAN-and-pix2pix's generator (checkpoints/NAME/latest_net_G.pth), a
U-Net (unet_256 or unet_128); ngf, depth and normalization are read from its keys. Say how the model
saw labels: --input onehot (one channel per label id; the file's input channels must cover the label
set's ids) or --input color (the palette color image, 3 channels); by default it follows from the
file's input channels. The model runs in eval mode
(dropout off, batch-norm running statistics), unlike the official test.py without --eval.

examples:
  cityserve import pix2pix checkpoints/cityscapes_label2photo/latest_net_G.pth \\
      --label-set cityscapes --size 256x256 --input color --out models/pix2pix_cityscapes
  cityserve import pix2pix checkpoints/cityscapes_label2photo/latest_net_G.pth --label-set my_labels.yaml \\
      --input color --size 256x256 --out models/pix2pix_mine
"""

FCHARDNET_EPILOG = """\
The file is PingoLH/FCHarDNet's train.py best-model file ({"epoch", "model_state", "best_iou"}, keys
prefixed "module."). The card records the official preprocessing (RGB->BGR, mean/std) and maps the
19 Cityscapes train ids back to label ids, so `cityserve eval segmenter` and the segment graph need
nothing else. --size is the resolution the card advertises (exports are built at it); any multiple of
32 works in torch.

examples:
  cityserve import fchardnet runs/hardnet/cityscapes/hardnet_cityscapes_best_model.pkl --out models/fchardnet
  cityserve import fchardnet best_model.pkl --size 512x1024 --name fchardnet_half --out models/fchardnet_half
"""


def register(sub, groups) -> None:
    imp = groups["import"]
    p = imp.add_parser(
        "pix2pix",
        help="import a junyanz pix2pix latest_net_G.pth (U-Net generator)",
        description="Import a junyanz pix2pix U-Net generator as it is: weights + a generator "
        "model card, checked against the options on the way in.",
        epilog=PIX2PIX_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", help="latest_net_G.pth (or <epoch>_net_G.pth)")
    p.add_argument(
        "--label-set",
        default="cityscapes",
        help="built-in name (cityscapes, ade20k, coco-stuff) or a label-set JSON/YAML file (default: cityscapes)",
    )
    p.add_argument(
        "--size",
        type=parse_size,
        default=(256, 256),
        metavar="HxW",
        help="resolution the model renders; multiples of 256 for unet_256 (default: 256x256)",
    )
    p.add_argument(
        "--input",
        dest="input_mode",
        choices=("onehot", "color"),
        default=None,
        help="how the model was fed labels: one-hot channels or palette colors (default: color "
        "when the file takes 3 input channels, else onehot)",
    )
    p.add_argument("--name", help="checkpoint name (default: pix2pix_<label set>_<H>x<W>)")
    p.add_argument("--out", required=True, help="output directory for NAME.pt and NAME.card.json")
    p.set_defaults(func=run_pix2pix)

    f = imp.add_parser(
        "fchardnet",
        help="import an FCHarDNet (hardnet70) best-model file as a segmenter",
        description="Import an official FCHarDNet (hardnet70) best-model file as it is: weights + "
        "a segmenter model card with the official preprocessing.",
        epilog=FCHARDNET_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    f.add_argument("checkpoint", help="*_best_model.pkl from FCHarDNet's train.py")
    f.add_argument("--label-set", default="cityscapes", help="label set of the train ids (default: cityscapes)")
    f.add_argument(
        "--size",
        type=parse_size,
        default=(1024, 2048),
        metavar="HxW",
        help="resolution recorded in the card, multiples of 32 (default: 1024x2048)",
    )
    f.add_argument("--name", help="checkpoint name (default: fchardnet70_<label set>)")
    f.add_argument("--out", required=True, help="output directory for NAME.pt and NAME.card.json")
    f.set_defaults(func=run_fchardnet)


def run_pix2pix(args) -> int:
    from ..importing.pix2pix import import_pix2pix

    card = import_pix2pix(args.checkpoint, args.label_set, args.size, args.input_mode, args.out, args.name)
    print(f"imported {args.checkpoint} -> {card}")
    return 0


def run_fchardnet(args) -> int:
    from ..importing.fchardnet import import_fchardnet

    card = import_fchardnet(args.checkpoint, args.out, args.label_set, args.size, args.name)
    print(f"imported {args.checkpoint} -> {card}")
    return 0

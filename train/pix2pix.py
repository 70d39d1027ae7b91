#!/usr/bin/env python
"""Train a pix2pix generator (label map -> photo) as in the CityGAN setup.

BCE adversarial loss with label smoothing (real 0.9, fake 0.1), L1 x 100, Adam lr 2e-4 beta1 0.5,
batch 1, random flips; the same datasets and label sets as SPADE, with the label map fed one-hot
(``--input-mode onehot``) or as palette colors (``--input-mode color``).
"""

from __future__ import annotations

import argparse
import sys

EPILOG = """examples:
  python train/pix2pix.py --preset citygan --data cityscapes --root data/cityscapes --out runs/citygan
  python train/pix2pix.py --preset demo --data synthetic --seeds 0-99 --max-steps 2000 --out runs/p2p-demo
  python train/pix2pix.py --preset citygan --data paired --root my_city --input-mode color --out runs/p2p-color

Outputs, --resume, exit codes: as train/spade.py (NAME.card.json + NAME.pt, checkpoints/, state/, tensorboard/).
"""


def build_parser() -> argparse.ArgumentParser:
    from cityserve.training.common import training_parser
    from cityserve.training.pix2pix_trainer import PRESETS

    p = training_parser("train/pix2pix.py", __doc__, EPILOG, PRESETS, default="citygan")
    m = p.add_argument_group("model")
    m.add_argument(
        "--input-mode", choices=("onehot", "color"), default="onehot", help="how the label map is fed (default onehot)"
    )
    m.add_argument("--netG", choices=("unet_128", "unet_256"))
    m.add_argument("--ngf", type=int)
    m.add_argument("--ndf", type=int)
    m.add_argument("--n-layers-D", type=int)
    m.add_argument("--norm", choices=("batch", "instance"))
    m.add_argument("--no-dropout", dest="use_dropout", action="store_false", default=None)
    t = p.add_argument_group("optimisation")
    t.add_argument("--lr", type=float)
    t.add_argument("--beta1", type=float)
    t.add_argument("--lambda-L1", type=float)
    t.add_argument("--n-epochs-decay", type=int, help="epochs of linear lr decay at the end")
    t.add_argument("--no-flip", dest="flip", action="store_false", help="no random horizontal flips")
    return p


def main(argv: list[str] | None = None) -> int:
    from cityserve.training.common import train_main
    from cityserve.training.pix2pix_trainer import PRESETS

    return train_main(build_parser, PRESETS, _run, argv)


def _run(args: argparse.Namespace, preset: dict) -> int:
    from cityserve.data.transforms import Augment
    from cityserve.labels import get_label_set
    from cityserve.models.pix2pix import Pix2PixConfig
    from cityserve.training.common import build_training_data, fit, given, run_config, size_from_args
    from cityserve.training.pix2pix_trainer import Pix2PixTrainConfig, Pix2PixTrainer

    label_set = args.label_set or "cityscapes"
    model = {**preset["model"], **given(args, ("netG", "ngf", "ndf", "n_layers_D", "norm", "use_dropout"))}
    cfg = Pix2PixConfig(label_nc=get_label_set(label_set).num_ids, input_mode=args.input_mode, **model)
    train = {**preset["train"], **given(args, ("lr", "beta1", "lambda_L1", "n_epochs_decay"))}
    size = size_from_args(args, preset["size"])
    rc = run_config(args, name=f"pix2pix-{args.preset}", epochs=preset["epochs"], batch_size=preset["batch_size"])

    def setup(runner):
        trainer = Pix2PixTrainer(runner, cfg, label_set, Pix2PixTrainConfig(**train), size, name=rc.name)
        augment = Augment(flip=True, brightness=0.0, contrast=0.0) if args.flip else None
        return trainer, build_training_data(args, label_set, size, augment, num_channels=cfg.label_nc)

    return fit(rc, setup)


if __name__ == "__main__":
    sys.exit(main())

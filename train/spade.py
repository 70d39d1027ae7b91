#!/usr/bin/env python
"""Train a SPADE / GauGAN generator (label map -> photo).

Presets: ``cityscapes`` / ``ade20k`` (SPADE's published settings), ``hongkong`` (Adam 2e-4, batch 1,
100 epochs, Xavier), ``demo`` (synthetic scenes on a CPU), ``tiny`` (tests). Any option given on the
command line overrides the preset. Multi-GPU / multi-node: launch with ``torchrun``.
"""

from __future__ import annotations

import argparse
import sys

EPILOG = """examples:
  # the shipped demo model (models/demo/spade-demo): synthetic scenes at 256x512, 2-core CPU, ~92 minutes
  python train/spade.py --preset demo --data synthetic --seeds 0-899 --size 256x512 --ngf 8 \\
      --norm-G spectralspadebatch1x1 --nhidden 32 --batch-size 1 --max-steps 4500 --niter-decay 3 \\
      --save-every 250 --threads 2 --out runs/spade-demo

  # SPADE's published Cityscapes settings on 8 GPUs (batch 16 per GPU here; SPADE used 16 in total)
  torchrun --nproc_per_node 8 train/spade.py --preset cityscapes --data cityscapes --root data/cityscapes \\
      --batch-size 2 --vgg-weights vgg19-dcbb9e9d.pth --out runs/spade-cityscapes

  # fine-tune an imported official checkpoint on your own paired folders
  cityserve import spade latest_net_G.pth --label-set cityscapes --size 256x512 --out models/spade-cs
  python train/spade.py --preset hongkong --init-from models/spade-cs --data paired --root my_city --out runs/ft

  # continue a run that was stopped or killed
  python train/spade.py ...the same options... --out runs/spade-demo --resume

Outputs in --out: NAME.pt + NAME.card.json (newest checkpoint; `cityserve render` and export take it),
checkpoints/NAME_stepN.* (one card per saved checkpoint), state/step_N.pt (full training state for
--resume), tensorboard/ (losses, learning rates, label | generated | real grids).
Exit codes: 0 done, 1 a loss became NaN/inf (the step and loss are named; the last good checkpoint is kept),
2 bad input, 3 unavailable.
"""


def build_parser() -> argparse.ArgumentParser:
    from cityserve.training.common import training_parser
    from cityserve.training.spade_trainer import PRESETS

    p = training_parser("train/spade.py", __doc__, EPILOG, PRESETS, default="demo")
    m = p.add_argument_group("model")
    m.add_argument("--ngf", type=int, help="generator width")
    m.add_argument("--ndf", type=int, help="discriminator width")
    m.add_argument("--num-upsampling-layers", choices=("normal", "more", "most"))
    m.add_argument("--norm-G", help="e.g. spectralspadesyncbatch3x3 (SPADE default), spectralspadeinstance3x3")
    m.add_argument("--no-instance", action="store_true", default=None, help="no instance-edge channel")
    m.add_argument("--use-vae", action="store_true", default=None, help="train with the style encoder (VAE + KL loss)")
    m.add_argument("--z-dim", type=int)
    m.add_argument("--nhidden", type=int, help="hidden width of each SPADE norm (official 128; the demo uses 32)")
    m.add_argument("--label-nc", type=int, help="label channels (default: the label set's ids)")
    m.add_argument(
        "--init-from",
        help="a SPADE card (e.g. from `cityserve import spade`) to fine-tune; "
        "its architecture, label set and size are used",
    )
    m.add_argument("--init-D", help="an official SPADE latest_net_D.pth to start the discriminator from")
    t = p.add_argument_group("optimisation")
    t.add_argument("--lr", type=float)
    t.add_argument("--beta1", type=float)
    t.add_argument("--beta2", type=float)
    t.add_argument("--no-TTUR", action="store_true", default=None, help="same lr for G and D, Adam (beta1, beta2)")
    t.add_argument("--niter-decay", type=int, help="epochs of linear lr decay at the end")
    t.add_argument("--lambda-feat", type=float)
    t.add_argument("--lambda-vgg", type=float)
    t.add_argument("--lambda-kld", type=float)
    t.add_argument("--no-ganFeat-loss", action="store_true", default=None)
    t.add_argument(
        "--vgg-weights",
        help="local torchvision VGG19 state dict (vgg19-dcbb9e9d.pth) for the "
        "perceptual loss; without it the loss is off (warned)",
    )
    t.add_argument("--init-type", choices=("xavier", "normal", "xavier_uniform", "kaiming", "orthogonal", "none"))
    t.add_argument("--init-variance", type=float)
    t.add_argument("--no-flip", dest="flip", action="store_false", help="no random horizontal flips")
    return p


def main(argv: list[str] | None = None) -> int:
    from cityserve.training.common import train_main
    from cityserve.training.spade_trainer import PRESETS

    return train_main(build_parser, PRESETS, _run, argv)


def _run(args: argparse.Namespace, preset: dict) -> int:
    from cityserve.data.transforms import Augment
    from cityserve.training.common import build_training_data, fit, given, run_config, size_from_args
    from cityserve.training.spade_trainer import SPADETrainConfig, SPADETrainer, spade_config_for

    gen = {
        **preset["gen"],
        **given(
            args, ("ngf", "num_upsampling_layers", "norm_G", "no_instance", "use_vae", "z_dim", "label_nc", "nhidden")
        ),
    }
    train = {
        **preset["train"],
        **given(
            args,
            (
                "ndf",
                "lr",
                "beta1",
                "beta2",
                "no_TTUR",
                "niter_decay",
                "lambda_feat",
                "lambda_vgg",
                "lambda_kld",
                "no_ganFeat_loss",
                "vgg_weights",
                "init_type",
                "init_variance",
                "init_from",
                "init_D",
            ),
        ),
    }
    tcfg = SPADETrainConfig(**train)
    label_set = args.label_set or preset["label_set"]
    size = size_from_args(args, preset["size"])
    if tcfg.init_from:
        from cityserve.cards import load_card

        card = load_card(tcfg.init_from)
        label_set, size = card.label_set, (card.height, card.width)
        if args.size and tuple(size) != tuple(size_from_args(args, size)):
            from cityserve.errors import ConfigError

            raise ConfigError(
                f"--size {args.size} differs from the {card.height}x{card.width} of --init-from {tcfg.init_from}"
            )
        gcfg = None
    else:
        gcfg = spade_config_for(label_set, size, **gen)
    cfg = run_config(args, name=f"spade-{args.preset}", epochs=preset["epochs"], batch_size=preset["batch_size"])

    def setup(runner):
        trainer = SPADETrainer(runner, gcfg, label_set, tcfg, name=cfg.name)
        augment = Augment(flip=True, brightness=0.0, contrast=0.0) if args.flip else None
        num_channels = trainer.gcfg.num_classes
        return trainer, build_training_data(args, trainer.label_set, size, augment, num_channels=num_channels)

    return fit(cfg, setup)


if __name__ == "__main__":
    sys.exit(main())

"""``cityserve import spade``: an official NVlabs SPADE checkpoint -> cityserve weights + model card."""

from __future__ import annotations

import argparse

from ..cliutil import parse_size

DESCRIPTION = """\
Import an official NVlabs SPADE generator (latest_net_G.pth, and for VAE models latest_net_E.pth) as it
is. What the tensors tell is inferred (ngf, number of label channels, VAE, 'most' upsampling, spectral
norm, batch vs instance norm); flags that contradict the tensors are refused. The file is loaded with
torch.load(weights_only=True): a checkpoint holding anything but tensors is rejected.

For the built-in label sets the official dataset options apply: cityscapes has 35 label channels and
defaults to 'more' upsampling; ade20k has 150 labels + dontcare; coco-stuff 182 labels + dontcare.
Whether the instance-edge channel is there is read from the tensors (--no-instance only asserts it).
'normal' vs 'more' cannot be read from a non-VAE generator's tensors: pass --upsampling if the model
was trained with a non-default value."""

EPILOG = """\
examples:
  cityserve import spade checkpoints/cityscapes_pretrained/latest_net_G.pth \\
      --label-set cityscapes --size 256x512 --out models/spade_cityscapes
  cityserve import spade ade20k/latest_net_G.pth --label-set ade20k --size 256x256 --out models/ade
  cityserve import spade vae/latest_net_G.pth --netE vae/latest_net_E.pth --label-set ade20k \\
      --size 256x256 --upsampling more --out models/ade_vae
  cityserve import spade mine/latest_net_G.pth --label-set my_labels.json --no-instance --dontcare \\
      --size 256x256 --out models/mine

The output directory gets NAME.pt (the official netG keys; a VAE's encoder under netE.*) and
NAME.card.json; render with `cityserve render LABELS.png --model DIR --out photo.png`.
"""


def register(sub, groups) -> None:
    p = groups["import"].add_parser(
        "spade",
        help="an official SPADE/GauGAN latest_net_G.pth (+ net_E)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("netG", metavar="NETG.pth", help="official generator state dict (latest_net_G.pth)")
    p.add_argument("--netE", metavar="NETE.pth", help="official encoder state dict of a VAE model (latest_net_E.pth)")
    p.add_argument(
        "--label-set",
        required=True,
        metavar="NAME|FILE",
        help="cityscapes, ade20k, coco-stuff, or a JSON/YAML label-set file",
    )
    p.add_argument(
        "--size",
        required=True,
        type=parse_size,
        metavar="HxW",
        help="output size, e.g. 256x512 (sets crop_size = W and aspect_ratio = W/H)",
    )
    p.add_argument(
        "--upsampling",
        choices=["normal", "more", "most"],
        help="num_upsampling_layers (default: inferred where the tensors tell, else the dataset's official default)",
    )
    p.add_argument("--no-instance", action="store_true", help="the model has no instance-edge channel")
    p.add_argument("--dontcare", action="store_true", help="the model has a dontcare label channel")
    p.add_argument("--vae", action="store_true", help="assert the generator is a VAE generator (inferred anyway)")
    p.add_argument("--name", help="model name and file stem (default spade_<labelset>_<H>x<W>)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..importing.spade import import_spade

    card_path = import_spade(
        args.netG,
        args.label_set,
        args.size,
        args.out,
        netE=args.netE,
        upsampling=args.upsampling,
        no_instance=args.no_instance,
        dontcare=args.dontcare,
        vae=args.vae,
        name=args.name,
    )
    print(f"wrote {card_path}")
    return 0

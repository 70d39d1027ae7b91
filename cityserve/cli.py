"""The ``cityserve`` command line.

Each subcommand lives in its own module under ``cityserve/commands/`` and exposes
``register(subparsers, groups)``; this file only discovers them, parses, and maps errors to exit codes
(see ``cityserve.errors``). ``groups`` holds the sub-parsers of the command groups that several modules
add to (``import``, ``export``, ``repo``), so ``cityserve import spade`` and ``cityserve import
pix2pix`` can live in different modules.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import commands
from .errors import run_with_exit_codes

GROUPS = {
    "import": "load official checkpoints (SPADE, pix2pix, FCHarDNet, DeepLabV3+) into a checkpoint + model card",
    "export": "turn a checkpoint into ONNX, a TensorRT engine or an AOT-compiled package",
    "repo": "build a Triton model repository from model cards",
}

EPILOG = """\
exit codes: 0 ok, 1 a check failed, 2 bad input or usage, 3 a needed component is unavailable here,
130 interrupted.

examples:
  cityserve render examples/street_01.png --model models/demo/spade-demo.card.json --out photo.png
  cityserve import spade latest_net_G.pth --label-set cityscapes --size 256x512 --out ckpt/
  cityserve export onnx ckpt/ --out exported/
  cityserve serve                  # the shipped demo model behind a local Triton server
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cityserve",
        description="Street-scene label maps to photos: train, import, export, serve, benchmark.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    groups = {}
    for name, help_text in GROUPS.items():
        gp = sub.add_parser(name, help=help_text, description=help_text)
        groups[name] = gp.add_subparsers(dest=f"{name}_command", metavar="WHAT", required=True)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub, groups)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_with_exit_codes(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())

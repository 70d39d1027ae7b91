"""``cityserve export aot``: an AOTInductor-compiled render package for CPUs (BF16 where supported)."""
from __future__ import annotations

import argparse

EPILOG = """\
examples:
  cityserve export aot models/demo --out exported/demo-aot              # BF16 if this CPU has it
  cityserve export aot ckpt/spade.card.json --out aot/ --dtype fp32

The package loads in seconds without recompiling (`cityserve render --engine aot`, or the Triton cpu
target). It records the torch version and CPU flags it was compiled for and refuses to load where they
are missing. Compiling the full-size SPADE generator takes about a minute on 2 cores.
"""


def register(sub, groups) -> None:
    p = groups["export"].add_parser("aot", help="compile the render graph ahead of time (AOTInductor, CPU)",
                                    description=__doc__, epilog=EPILOG,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("card", help="generator model card (or its .pt, or a directory with one card)")
    p.add_argument("--out", required=True, help="output directory (render.pt2 + a card)")
    p.add_argument("--dtype", choices=["bf16", "fp32"], help="default: bf16 if the CPU supports it, else fp32")
    p.add_argument("--fp32-layers", default="", help="comma-separated generator submodules kept in FP32")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..cards import load_card
    from ..export.aot import compile_aot, describe

    card = load_card(args.card)
    layers = [s for s in args.fp32_layers.split(",") if s]
    print(f"compiling {card.name} ({card.height}x{card.width}) with AOTInductor …", flush=True)
    out = compile_aot(card, args.out, args.dtype, layers)
    print(describe(load_card(out)))
    print(f"wrote {out}")
    return 0

"""``cityserve export aot``: an AOTInductor-compiled render package for CPUs (BF16 where supported).

The package (``render.pt2``) holds the whole render computation: uint8 label ids in, uint8 RGB out.
It loads in seconds without recompiling (`cityserve render --engine aot`, or the Triton cpu target),
records the torch version and CPU flags it was compiled for, and refuses to load where they are
missing. In BF16 the convolutions run in bfloat16 and the normalization / SPADE modulation /
activations / residual adds in float32; the layers nearest the output stay in float32 (see
``cityserve.export.aot``). After compiling it is checked against the float32 model on synthetic label
maps and the uint8 differences go into the card (budget: max 8 levels, mean 1).
"""

from __future__ import annotations

import argparse

from ..cards import load_card

EPILOG = """\
examples:
  cityserve export aot models/demo --out exported/demo-aot              # BF16 if this CPU has it
  cityserve export aot ckpt/spade.card.json --out aot/ --dtype fp32
  cityserve export aot ckpt/spade.card.json --out aot/ --fp32-layers up_2.conv_0,up_2.conv_1
  cityserve export aot ckpt/spade.card.json --out aot/ --precision-report report.json  # + its flagged layers

Compiling the full-size SPADE Cityscapes generator takes about 3 minutes on 2 busy cores.
A package is specific to the CPU's instruction set and the torch version: build it where it will run.
"""


def register(sub, groups) -> None:
    p = groups["export"].add_parser(
        "aot",
        help="compile the render graph ahead of time (AOTInductor, CPU)",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("card", help="generator model card (or its .pt, or a directory with one card)")
    p.add_argument("--out", required=True, help="output directory (render.pt2 + a card)")
    p.add_argument("--dtype", choices=["bf16", "fp32"], help="default: bf16 if the CPU supports it, else fp32")
    p.add_argument(
        "--fp32-layers",
        help="comma-separated generator submodules kept in FP32 (replaces the "
        "default: the output conv and the last residual block's convs); "
        "'' keeps every conv in BF16",
    )
    p.add_argument(
        "--precision-report",
        metavar="REPORT.json",
        help="also keep in FP32 the layers this `cityserve export precision` report flags",
    )
    p.add_argument(
        "--fused",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="SPADE's fused inference form (default: on for SPADE, measured faster, same output)",
    )
    p.add_argument(
        "--verify-images",
        type=int,
        default=2,
        help="synthetic label maps to check the package against FP32 (default 2; 0 skips)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from ..export.aot import compile_aot, default_fp32_layers, describe
    from ..models.render import render_graph_from_card

    card = load_card(args.card)
    layers = None
    if args.fp32_layers is not None:
        layers = [s for s in args.fp32_layers.split(",") if s.strip()]
    if args.precision_report:
        from ..export.precision_report import PrecisionReport

        flagged = PrecisionReport.load(args.precision_report).flagged
        if layers is None:
            layers = default_fp32_layers(card, render_graph_from_card(card).generator)
        layers = layers + [f for f in flagged if f.startswith("generator.")]
    print(f"compiling {card.name} ({card.height}x{card.width}) with AOTInductor …", flush=True)
    out = compile_aot(
        card,
        args.out,
        args.dtype,
        layers,
        verify_images=args.verify_images,
        fused=args.fused,
        log=lambda m: print(m, flush=True),
    )
    print(describe(load_card(out)))
    acc = load_card(out).extra["aot"].get("accuracy")
    if acc and not acc["within_budget"]:
        print(
            f"warning: the package differs from FP32 by up to {acc['max_levels']} levels (mean "
            f"{acc['mean_levels']:.2f}); keep more layers in FP32 (--fp32-layers) or use --dtype fp32"
        )
    print(f"wrote {out}")
    return 0

"""``cityserve eval``: segmentation mIoU, segmentation consistency + L1/SSIM of a generator, FID/KID."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..cliutil import parse_seeds

EPILOG = """\
examples:
  cityserve eval segmenter models/demo/segmenter-demo.card.json --seeds 10000-10049
  cityserve eval generator models/demo/spade-demo.card.json --segmenter models/demo/segmenter-demo.card.json \\
      --seeds 10000-10049 --out results/demo_eval.json
  cityserve eval fid generated/ real/ --inception pt_inception-2015-12-05-6726825d.pth

Synthetic seeds are the held-out protocol: the demo models train on seeds 0-9999, and are evaluated on
seeds from 10000 on. FID/KID use pytorch-fid's Inception weights from a file you supply (nothing is
downloaded); with that file the numbers are comparable to published pytorch-fid figures.
"""


def register(sub, groups) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate segmenters and generators (mIoU, consistency, L1/SSIM, FID/KID)",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ev = p.add_subparsers(dest="eval_command", metavar="WHAT", required=True)

    s = ev.add_parser("segmenter", help="mIoU / per-class IoU and F1 of a segmenter on synthetic scenes")
    s.add_argument("model", help="segmenter model card")
    s.add_argument("--seeds", type=parse_seeds, default=parse_seeds("10000-10049"))
    _common(s)
    s.set_defaults(func=run_segmenter)

    g = ev.add_parser("generator", help="segmentation consistency, L1/SSIM (and FID/KID) of a generator")
    g.add_argument("model", help="generator model card")
    g.add_argument(
        "--segmenter",
        required=True,
        help="segmenter model card used for consistency (photos of another size are segmented at "
        "the segmenter's own size, then the ids are nearest-resized back)",
    )
    g.add_argument("--seeds", type=parse_seeds, default=parse_seeds("10000-10049"))
    g.add_argument("--engine", default="torch", help="render engine (torch, onnxruntime, aot)")
    g.add_argument("--inception", help="pytorch-fid Inception weights file; adds FID and KID")
    _common(g)
    g.set_defaults(func=run_generator)

    f = ev.add_parser("fid", help="FID and KID between two image folders")
    f.add_argument("folder_a")
    f.add_argument("folder_b")
    f.add_argument(
        "--inception", required=True, help="pytorch-fid Inception weights file (pt_inception-2015-12-05-*.pth)"
    )
    _common(f)
    f.set_defaults(func=run_fid)


def _common(p) -> None:
    p.add_argument("--out", help="write the results as JSON here (and a .md table beside it)")


def _emit(args, result: dict, markdown: str) -> int:
    print(markdown)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        out.with_suffix(".md").write_text(markdown)
        print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


def run_segmenter(args) -> int:
    from ..cards import load_card
    from ..evaluation import evaluate_segmenter

    card = load_card(args.model)
    scores = evaluate_segmenter(card, args.seeds)
    result = {"model": card.name, "seeds": [min(args.seeds), max(args.seeds)], **scores.to_dict()}
    return _emit(args, result, scores.markdown(f"{card.name} on {len(args.seeds)} synthetic scenes"))


def run_generator(args) -> int:
    from ..cards import load_card
    from ..evaluation import evaluate_generator

    gen, seg = load_card(args.model), load_card(args.segmenter)
    report = evaluate_generator(gen, seg, args.seeds, engine=args.engine, inception=args.inception)
    result = {
        "model": gen.name,
        "size": f"{gen.height}x{gen.width}",
        "segmenter": seg.name,
        "segmenter_size": f"{seg.height}x{seg.width}",
        "engine": args.engine,
        **report.to_dict(),
    }
    return _emit(args, result, report.markdown())


def run_fid(args) -> int:
    from ..evaluation import folder_fid

    r = folder_fid(args.folder_a, args.folder_b, args.inception)
    md = f"| FID | KID |\n| ---: | ---: |\n| {r['fid']:.2f} | {r['kid']['mean']:.4f} ± {r['kid']['std']:.4f} |\n"
    return _emit(args, r, md)

"""``cityserve export depth``: a depth-aware SPADE stage's card -> its ONNX graph (and the chain)."""

from __future__ import annotations

import argparse

from ..cards import load_card
from .export_cmds import report_parity

DESCRIPTION = """\
Export a stage of the depth-aware SPADE pair (train/spade.py --stage depth | photo-from-depth) to ONNX:
  depth card            depth.onnx              labels uint8 [B,1,H,W] (+ instances) -> depth float32 [B,1,H,W] metres
  photo-from-depth card depth2photo.onnx        labels (+ instances) + depth float32 metres -> image uint8 [B,H,W,3]
  + --depth-model CARD  label2depth2photo.onnx  labels (+ instances) -> image, and the depth it used
Each graph converts between metres and the normalised log-depth its stage was trained with (the card's
depth section). DIR also gets <graph>.card.json. See docs/depth.md."""

EPILOG = """\
examples:
  cityserve export depth runs/depth/spade-tiny.card.json --out exported/depth --verify
  cityserve export depth runs/photo-dp/spade-tiny.card.json --depth-model runs/depth/spade-tiny.card.json \\
      --out exported/label2depth2photo --verify
"""


def register(sub, groups) -> None:
    p = groups["export"].add_parser(
        "depth",
        help="a depth-aware SPADE stage -> depth.onnx / depth2photo.onnx (+ label2depth2photo.onnx)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("card", metavar="CARD", help="a stage-1 (depth) or stage-2 (photo-from-depth) card")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument(
        "--depth-model", metavar="CARD", help="with a photo-from-depth CARD: the depth card to chain before it"
    )
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17; default 17)")
    p.add_argument(
        "--verify", action="store_true", help="compare onnxruntime with torch at batch 1 and 3; exit 1 if off"
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from ..data.depth import card_depth
    from ..errors import ConfigError
    from ..export.depth_export import (
        chain_graph,
        depth_graph_from_card,
        export_depth_onnx,
        photo_graph_from_card,
        verify_depth_onnx,
    )

    card = load_card(args.card)
    stage, _ = card_depth(card)
    todo = []
    if stage == "depth":
        if args.depth_model:
            raise ConfigError("--depth-model goes with a photo-from-depth card; CARD is the depth stage itself")
        todo.append(("depth", None, lambda: depth_graph_from_card(card)))
    else:
        todo.append(("depth2photo", None, lambda: photo_graph_from_card(card)))
        if args.depth_model:
            dcard = load_card(args.depth_model)
            todo.append(("label2depth2photo", dcard, lambda: chain_graph(dcard, card)))
    ok = True
    for name, dcard, graph in todo:
        path = export_depth_onnx(name, card, args.out, depth_card=dcard, opset=args.opset)
        print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB) and {path.stem}.card.json")
        if args.verify:
            rows = [_parity_row(s) for s in verify_depth_onnx(graph(), path, card.height, card.width)]
            ok &= report_parity(rows)
    return 0 if ok else 1


def _parity_row(s: dict) -> tuple[int, str, bool]:
    """A depth export's check: depth within 1e-4 relative, the image (where there is one) as the photo bar."""
    good = s.get("depth_max_rel", 0.0) < 1e-4 and ("identical" not in s or s["identical"] >= 0.999)
    good = good and s.get("max_diff", 0) <= 1
    parts = [f"depth max rel diff {s['depth_max_rel']:.2e}"] if "depth_max_rel" in s else []
    if "identical" in s:
        parts.append(f"image {s['identical'] * 100:.3f}% identical, max diff {s['max_diff']}")
    return s["batch"], ", ".join(parts), good

"""``cityserve eval``: a segmenter's mIoU; a generator's segmentation consistency, L1/SSIM and
segmenter-feature Fréchet distance; FID/KID between folders. On held-out synthetic seeds or on a
dataset folder (Cityscapes, ADE20K, COCO-Stuff, paired images/labels)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..cards import load_card
from ..cliutil import parse_seeds
from ..data.scenes import DATA_KINDS

EPILOG = """\
examples:
  cityserve eval segmenter models/demo/segmenter-demo.card.json --seeds 10000-10049
  cityserve eval generator models/demo/spade-demo.card.json --segmenter models/demo/segmenter-demo.card.json \\
      --seeds 10000-10049 --out results/demo_eval.json
  cityserve eval segmenter seg/fchardnet70_cityscapes.card.json --data cityscapes --root /data/cityscapes \\
      --split val --out results/fchardnet_val.json
  cityserve eval generator ckpt/spade_cityscapes.card.json --segmenter seg/fchardnet70_cityscapes.card.json \\
      --data cityscapes --root /data/cityscapes --split val --out results/spade_val.json
  cityserve eval fid generated/ real/ --inception pt_inception-2015-12-05-6726825d.pth
  cityserve eval depth runs/depth/spade-tiny.card.json --seeds 10000-10049 --out results/depth_eval.json
  cityserve eval generator models/demo/depth2photo-demo.card.json --segmenter models/demo/segmenter-demo.card.json \
      --depth-model models/demo/depth-demo.card.json --seeds 10000-10049     # two stages, predicted depth
  cityserve eval generator models/demo/depth2photo-demo.card.json --segmenter models/demo/segmenter-demo.card.json \
      --true-depth --seeds 10000-10049                                      # stage 2 on the scenes' true depth

Synthetic seeds are the held-out protocol: the demo models train on seeds 0-9999, and are evaluated on
seeds from 10000 on. With --data and --root, the split of a dataset folder is used instead (validated
first): a segmenter segments each photo at its card's size and is scored at the file's resolution; a
generator renders each label map resized to its size (nearest; photos area-averaged), as SPADE's test
does, and the segmenter scores the generated photo against the labels (SPADE's Cityscapes protocol).
Scores are cityscapesscripts' pixel-level mIoU / per-class IoU / F1 over the label set's train ids.

segfeat_frechet is the Fréchet distance (pytorch-fid's math) between the --segmenter's encoder
features of the generated and of the real photos of the same scenes (FCHarDNet: one 224-d vector per
position of its stride-32 stage; the choice is measured in benchmarks/studies/segfeat-frechet-choice.md):
an in-domain stand-in for FID that needs no downloaded weights. It is not FID
and its values are not comparable with published FIDs; compare generators with the same segmenter.
A depth-aware stage 2 (photo-from-depth card) is rendered from --depth-model's predicted depth (the
served label2depth2photo chain) or, with --true-depth, from the synthetic scenes' exact depth.
`eval depth` adds depth_patch_frechet: the Fréchet distance between the 8x8 patches of the predicted
and of the true normalised log-depth maps, a depth-map distance in place of the paper's depth-map FID.
FID/KID use pytorch-fid's Inception weights from a file you supply (nothing is downloaded); with that
file the numbers are comparable to published pytorch-fid figures.
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

    s = ev.add_parser("segmenter", help="mIoU / per-class IoU and F1 of a segmenter (seeds or a dataset folder)")
    s.add_argument("model", help="segmenter model card")
    _data(s)
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
    _data(g)
    g.add_argument("--engine", default="torch", help="render engine (torch, onnxruntime, aot)")
    g.add_argument("--inception", help="pytorch-fid Inception weights file; adds FID and KID")
    g.add_argument(
        "--depth-model",
        metavar="STAGE1_CARD",
        help="a photo-from-depth MODEL renders from this depth stage's predictions (the two-stage chain)",
    )
    g.add_argument(
        "--true-depth", action="store_true", help="a photo-from-depth MODEL renders from the scenes' own depth"
    )
    g.add_argument(
        "--zero-latent",
        action="store_true",
        help="render with the latent z = 0 (a generator with OASIS noise or a VAE) instead of one drawn from "
        "each scene's seed: the depth-aware stages render that way",
    )
    _common(g)
    g.set_defaults(func=run_generator)

    d = ev.add_parser("depth", help="abs-rel and RMSE of log-depth of a depth-aware stage 1 on synthetic seeds")
    d.add_argument("model", help="a depth (stage 1) model card (train/spade.py --stage depth)")
    d.add_argument("--seeds", type=parse_seeds, default=None, help="held-out synthetic seeds (default 10000-10049)")
    d.add_argument("--no-progress", action="store_true", help="no progress bar")
    _common(d)
    d.set_defaults(func=run_depth)

    f = ev.add_parser("fid", help="FID and KID between two image folders")
    f.add_argument("folder_a")
    f.add_argument("folder_b")
    f.add_argument(
        "--inception", required=True, help="pytorch-fid Inception weights file (pt_inception-2015-12-05-*.pth)"
    )
    _common(f)
    f.set_defaults(func=run_fid)


def _data(p) -> None:
    p.add_argument(
        "--seeds",
        type=parse_seeds,
        default=None,
        help="held-out synthetic seeds, e.g. 10000-10049 (the default when no --data is given)",
    )
    p.add_argument("--data", choices=DATA_KINDS, help="evaluate on a dataset folder of this layout instead of seeds")
    p.add_argument("--root", help="the dataset folder (with --data)")
    p.add_argument("--split", default="val", help="dataset split (default: val)")
    p.add_argument("--label-set", help="label set of the folder's label maps (default: the layout's own)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _source(args):
    """The scenes the command evaluates on, or a one-line error for flags that do not go together."""
    from ..data.scenes import FolderScenes, SyntheticScenes
    from ..errors import ConfigError

    if args.data is None:
        if args.root:
            raise ConfigError("--root needs --data (cityscapes, ade20k, coco-stuff or paired)")
        return SyntheticScenes(args.seeds or parse_seeds("10000-10049"))
    if args.seeds is not None:
        raise ConfigError("--seeds and --data exclude each other: evaluate on seeds or on a folder")
    if not args.root:
        raise ConfigError(f"--data {args.data} needs --root DIR, the dataset folder")
    return FolderScenes(args.data, args.root, args.split, args.label_set)


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
    from ..evaluation import evaluate_segmenter

    card = load_card(args.model)
    source = _source(args)
    scores = evaluate_segmenter(card, source, progress=not args.no_progress)
    d = source.describe()
    result = {"model": card.name, "size": f"{card.height}x{card.width}", **d, **scores.to_dict()}
    where = f"{d['n_images']} synthetic scenes" if d["data"] == "synthetic" else f"{d['data']} {d['split']}"
    return _emit(args, result, scores.markdown(f"{card.name} on {where}"))


def run_generator(args) -> int:
    from ..evaluation import evaluate_generator

    gen, seg = load_card(args.model), load_card(args.segmenter)
    report = evaluate_generator(
        gen,
        seg,
        _source(args),
        engine=args.engine,
        inception=args.inception,
        progress=not args.no_progress,
        depth_model=load_card(args.depth_model) if args.depth_model else None,
        true_depth=args.true_depth,
        zero_latent=args.zero_latent,
    )
    result = {
        "model": gen.name,
        "size": f"{gen.height}x{gen.width}",
        "segmenter": seg.name,
        "segmenter_size": f"{seg.height}x{seg.width}",
        "engine": args.engine,
        **report.to_dict(),
    }
    return _emit(args, result, report.markdown())


def run_depth(args) -> int:
    from ..data.scenes import SyntheticScenes
    from ..evaluation import DEPTH_FRECHET_NOTE, evaluate_depth_maps

    card = load_card(args.model)
    source = SyntheticScenes(args.seeds or parse_seeds("10000-10049"))
    report = evaluate_depth_maps(card, source, progress=not args.no_progress)
    scores = report.scores
    result = {"model": card.name, "size": f"{card.height}x{card.width}", **source.describe(), **report.to_dict()}
    md = (
        f"| {card.name} on {len(source)} synthetic scenes | abs-rel | RMSE of log-depth | depth-patch Fréchet |\n"
        "| --- | ---: | ---: | ---: |\n"
        f"| {card.height}x{card.width}, {scores.pixels} non-sky pixels | {scores.abs_rel:.4f} | {scores.rmse_log:.4f} "
        f"| {report.patch_frechet:.4f} |\n\n`depth_patch_frechet`: {DEPTH_FRECHET_NOTE}.\n"
    )
    return _emit(args, result, md)


def run_fid(args) -> int:
    from ..evaluation import folder_fid

    r = folder_fid(args.folder_a, args.folder_b, args.inception)
    md = f"| FID | KID |\n| ---: | ---: |\n| {r['fid']:.2f} | {r['kid']['mean']:.4f} ± {r['kid']['std']:.4f} |\n"
    return _emit(args, r, md)

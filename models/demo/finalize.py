"""Ship a trained demo checkpoint and write its measured numbers into its model card.

Two steps, both keep the card valid (``cityserve.cards.load_card`` reads it, its sha256 matches the
weights it names):

``ship``: copy a trainer's ``NAME.card.json`` + ``NAME.pt`` into a shipping folder. ``--half`` stores
the floating-point tensors as float16 (half the bytes; ``load_state_dict`` casts them back into the
float32 modules, so the models still run in float32) and records that in the card; the card's sha256 is
recomputed for the new file. The training wall time (from the log written by ``runs/demo/launch.sh``)
and the hardware (``nproc``, the CPU model from /proc/cpuinfo) go into the card's provenance.

``metrics``: put the held-out figures of a ``cityserve eval segmenter|generator|depth --out X.json`` result
(or of ``benchmarks/layout_metrics.py --out X.json`` for a layout card) into the card's ``metrics``
(under ``heldout/...``); the weights are untouched.

examples:
  python models/demo/finalize.py ship runs/demo/seg/segmenter-demo.card.json models/demo --half \\
      --train-log runs/demo/seg.log
  python models/demo/finalize.py metrics models/demo/segmenter-demo.card.json models/demo/segmenter_eval.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from pathlib import Path

from cityserve.cards import load_card, sha256_file
from cityserve.hardware import cpu_name


def parse_train_log(path: Path) -> dict:
    """command / start / end / wall_s lines written by runs/demo/launch.sh."""
    out: dict = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^(command|start|end|wall_s): (.*)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    if "wall_s" in out:
        out["wall_s"] = round(float(out["wall_s"]), 1)
    return out


def ship(args) -> int:

    from cityserve.checkpoints import load_weights, save_weights

    card = load_card(args.card)
    card.verify()
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    stem = args.name or card.name
    weights = dest / f"{stem}.pt"
    if args.half:
        sd = load_weights(card)
        sd = {k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()}
        card.sha256 = save_weights(sd, weights)
        card.notes["weights_dtype"] = "float16 (stored; loaded into float32 modules)"
    else:
        shutil.copyfile(card.weights_path, weights)
        card.sha256 = sha256_file(weights)
    card.weights = weights.name
    card.name = stem
    training = {"hardware": {"nproc": os.cpu_count(), "cpu_model": cpu_name()}, "trained_from": str(Path(args.card))}
    if args.train_log:
        training.update(parse_train_log(Path(args.train_log)))
    if args.note:
        training["note"] = args.note
    card.provenance["training_run"] = training
    path = card.save(dest / f"{stem}.card.json")
    load_card(path).verify()
    print(f"shipped {path} ({weights.stat().st_size / 1e6:.2f} MB weights)")
    return 0


def metrics(args) -> int:
    card = load_card(args.card)
    res = json.loads(Path(args.eval_json).read_text())
    m = card.metrics
    pre = args.prefix
    for k in [k for k in m if k.startswith(pre)]:
        del m[k]
    m[pre + "command"] = args.command or ""
    if "abs_rel" in res:  # depth stage 1 (cityserve eval depth)
        m.update(
            {
                pre + "seeds": res["seeds"],
                pre + "abs_rel": round(res["abs_rel"], 4),
                pre + "rmse_log": round(res["rmse_log"], 4),
                pre + "depth_patch_frechet": round(res["depth_patch_frechet"], 4),
                pre + "pixels": res["pixels"],
            }
        )
    elif "segmentation_consistency" in res:  # generator
        m.update(_generator_metrics(res, pre))
    elif pre != "heldout/":
        raise SystemExit(f"--prefix {pre}: only for generator and depth evaluations")
    elif "generated_vs_real" in res:  # layout (benchmarks/layout_metrics.py)
        for group, prefix in (("generated_vs_real", "heldout/"), ("floor_real_vs_real", "heldout/floor_")):
            for key in ("class_frequency_jsd", "adjacency_jsd", "components_distance", "layout_fd"):
                m[prefix + key] = round(float(res[group][key]), 4)
        m["heldout/real_maps"] = res["generated_vs_real"]["real_maps"]
        m["heldout/generated_maps"] = res["generated_vs_real"]["generated_maps"]
        m["heldout/layout_fd_encoder"] = res["generated_vs_real"]["layout_fd_encoder"]
        command = res["command"].split()
        m["heldout/seeds"] = command[command.index("--seeds") + 1] if "--seeds" in command else ""
    else:  # segmenter
        seeds = res["seeds"]
        m.update(
            {
                "heldout/seeds": f"{seeds[0]}-{seeds[1]}" if isinstance(seeds, list) and len(seeds) == 2 else seeds,
                "heldout/miou": round(res["miou"], 4),
                "heldout/mean_f1": round(res["mean_f1"], 4),
                "heldout/pixel_accuracy": round(res["pixel_accuracy"], 4),
                "heldout/per_class_iou": {
                    n: (None if v["iou"] is None else round(v["iou"], 4)) for n, v in res["per_class"].items()
                },
            }
        )
    m[pre + "eval_json"] = str(Path(args.eval_json))
    path = card.save(card.path)
    load_card(path).verify()
    print(f"wrote held-out metrics into {path}")
    return 0


def _generator_metrics(res: dict, pre: str) -> dict:
    """The figures of a ``cityserve eval generator`` JSON, keys under ``pre``."""
    sc = res["segmentation_consistency"]
    out = {
        pre + "seeds": res["seeds"],
        pre + "segmenter": res["segmenter"],
        pre + "consistency_miou_generated": round(sc["miou_generated"], 4),
        pre + "consistency_miou_real": round(sc["miou_real"], 4),
        pre + "l1": round(res["l1"], 4),
        pre + "ssim": round(res["ssim"], 4),
        pre + "consistency_per_class_iou_generated": {
            n: (None if v["iou"] is None else round(v["iou"], 4)) for n, v in sc["generated"]["per_class"].items()
        },
    }
    if res.get("segfeat_frechet") is not None:
        out[pre + "segfeat_frechet"] = round(res["segfeat_frechet"], 3)
    if "depth_input" in res:
        out[pre + "depth_input"] = res["depth_input"]
    if "latent" in res:
        out[pre + "latent"] = res["latent"]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("examples:")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("ship", help="copy a trained card + weights into a shipping folder")
    s.add_argument("card")
    s.add_argument("dest")
    s.add_argument("--name", help="shipped name (default: the card's)")
    s.add_argument("--half", action="store_true", help="store float tensors as float16")
    s.add_argument("--train-log", help="log of runs/demo/launch.sh: command, start, end, wall_s")
    s.add_argument("--note", help="free text for the card's provenance (e.g. how the run was stopped)")
    s.set_defaults(func=ship)
    m = sub.add_parser("metrics", help="write a `cityserve eval` JSON into the card's metrics")
    m.add_argument("card")
    m.add_argument("eval_json")
    m.add_argument("--command", help="the eval command line, recorded beside the numbers")
    m.add_argument(
        "--prefix",
        default="heldout/",
        help="metrics key prefix (default heldout/; another, e.g. heldout_true_depth/ or heldout_check/, "
        "keeps a second generator or depth evaluation beside the first)",
    )
    m.set_defaults(func=metrics)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

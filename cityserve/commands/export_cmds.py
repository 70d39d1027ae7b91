"""``cityserve export onnx`` and ``cityserve export tensorrt``: a model card -> ONNX -> TensorRT plan."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..cards import load_card
from ..errors import ConfigError
from ..export.forms import FORMS, resolve_form

ONNX_DESCRIPTION = """\
Export a model card's model as one ONNX graph with the docs/architecture.md contract:
  generator  labels uint8 [B,1,H,W] (+ instances int32 [B,1,H,W], + z float32 [B,z_dim]) -> image uint8 [B,H,W,3]
  segmenter  image uint8 [B,H,W,3] -> labels uint8 [B,1,H,W]
Batch is dynamic, H and W are the card's. Spectral norm is folded and batch norm exported in eval form.
The ONNX checker and the TensorRT 10 op check run on the result; an op TensorRT cannot parse fails the
export, naming the op and the node. DIR gets render.onnx (or segment.onnx) and render.card.json: the
card with an artifacts["onnx"] section (file, sha256, opset, inputs/outputs). The card is also inside the
ONNX file (metadata_props "cityserve.card")."""

ONNX_EPILOG = """\
examples:
  cityserve export onnx models/spade_cityscapes --out exported/spade_cityscapes
  cityserve export onnx models/demo/spade-demo.card.json --out exported/fused --form fused --verify
  cityserve export onnx models/spade_cityscapes --out exported/boundary --form boundary --verify
  cityserve export onnx models/fchardnet_half --out exported/seg
  cityserve export onnx models/demo/spade-demo.card.json --out exported/demo --precision-report bf16

--form fused (or --fused) merges, in each SPADE residual block, the 2-3 mlp_shared convs (they read the
same resized label map) into one conv, and each mlp_gamma/mlp_beta pair into one conv + split: the same
math, fewer and wider layers. --form boundary computes SPADE's gamma/beta convolutions only at pixels
near a label change or instance edge and takes them from a per-class table elsewhere: the same image,
less work on real label maps (not for OASIS 3D-noise generators such as the shipped demo). --form table,
for 1x1-kernel SPADE norms (the shipped demo's), looks every norm's gamma/beta up in a per-image table
of the (class, edge) codes, OASIS noise included: exact, about 2x faster in torch eager, slower in
onnxruntime and OpenVINO (benchmarks/table_form.py). The card records the form. --precision-report runs the model in float16 (or bfloat16) on the CPU against float32 and
writes render.precision.json: layers that overflow or lose precision, which `export tensorrt` keeps in FP32.
"""

TRT_DESCRIPTION = """\
Build a TensorRT 10 engine (FP16 by default) from an exported render.onnx / segment.onnx. The batch
profile (min/opt/max) comes from the flags, else the card, else 1/4/8; H and W are fixed. Layers named
by a precision report (--fp32-layers-from, default: <stem>.precision.json beside the ONNX file if it
exists) and every normalization layer are pinned to FP32. A timing cache is read and saved when given.
Writes the plan, <plan>.build.log and <plan stem>.card.json (TensorRT version, GPU, compute capability):
a plan only runs on the TensorRT version and GPU architecture it was built with. Needs TensorRT 10 and
an NVIDIA GPU (exit code 3 without them); --dry-run checks and prints the build plan without them."""

TRT_EPILOG = """\
examples:
  cityserve export tensorrt exported/demo/render.onnx --out exported/demo/render.plan
  cityserve export tensorrt exported/demo/render.onnx --out render.plan --min-batch 1 --opt-batch 4 \\
      --max-batch 16 --timing-cache ~/.cache/cityserve/trt.cache --fp32-layers-from exported/demo/render.precision.json
  cityserve export tensorrt exported/demo/render.onnx --out render.plan --dry-run   # no GPU needed

see docs/tensorrt.md for which TensorRT versions each GPU needs (V100 ends at TensorRT 10.4).
"""


def register(sub, groups) -> None:
    exp = groups["export"]
    p = exp.add_parser(
        "onnx",
        help="a model card -> render.onnx / segment.onnx (+ card beside it)",
        description=ONNX_DESCRIPTION,
        epilog=ONNX_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("card", metavar="CARD", help="model card, its weights file, or a directory with one card")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17; default 17)")
    p.add_argument(
        "--form",
        choices=FORMS,
        help="SPADE inference form: plain (default), fused, boundary (gamma/beta only at label boundaries) "
        "or table (1x1 SPADE norms: gamma/beta looked up per pixel code)",
    )
    p.add_argument("--fused", action="store_true", help="SPADE: the fused inference form (= --form fused)")
    p.add_argument(
        "--verify",
        action="store_true",
        help="compare onnxruntime (CPU) with torch at batch 1 and 4; exit 1 if they differ",
    )
    p.add_argument(
        "--precision-report",
        nargs="?",
        const="fp16",
        choices=["fp16", "bf16"],
        metavar="fp16|bf16",
        help="also write <stem>.precision.json (default fp16)",
    )
    p.add_argument(
        "--threshold", type=float, help="precision report: relative-error threshold (default 0.01 fp16, 0.05 bf16)"
    )
    p.add_argument("--skip-op-check", action="store_true", help="do not check ops against TensorRT's ONNX parser")
    p.set_defaults(func=run_onnx)

    t = exp.add_parser(
        "tensorrt",
        help="render.onnx -> render.plan (TensorRT 10, FP16)",
        description=TRT_DESCRIPTION,
        epilog=TRT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument("onnx", metavar="MODEL.onnx", help="an ONNX file exported by `cityserve export onnx`")
    t.add_argument("--out", required=True, metavar="PLAN", help="the engine file to write (e.g. render.plan)")
    t.add_argument("--min-batch", type=int, help="smallest batch of the optimization profile")
    t.add_argument("--opt-batch", type=int, help="batch TensorRT tunes for")
    t.add_argument("--max-batch", type=int, help="largest batch of the optimization profile")
    t.add_argument("--precision", choices=["fp16", "bf16", "fp32"], default="fp16", help="default fp16")
    t.add_argument("--timing-cache", metavar="FILE", help="timing cache to reuse and update (speeds up rebuilds)")
    t.add_argument("--fp32-layers-from", metavar="REPORT.json", help="precision report whose flagged layers stay FP32")
    t.add_argument("--workspace-gib", type=float, help="builder workspace limit in GiB")
    t.add_argument("--log", metavar="FILE", help="build log (default <plan>.build.log)")
    t.add_argument("--verbose", action="store_true", help="verbose TensorRT log")
    t.add_argument("--dry-run", action="store_true", help="check the ONNX file and print the build plan only")
    t.set_defaults(func=run_tensorrt)


def run_onnx(args) -> int:
    from ..export.onnx_export import export_onnx, parity_ok, verify_onnx

    card = load_card(args.card)
    form = resolve_form(args.form, args.fused)
    if form == "boundary" and args.precision_report:
        raise ConfigError("--precision-report covers the plain and fused forms, not --form boundary")
    print(f"exporting {card.name} ({card.arch}, {card.height}x{card.width}) ...", flush=True)
    path = export_onnx(card, args.out, opset=args.opset, form=form, check_ops=not args.skip_op_check)
    size = path.stat().st_size / 2**20
    print(f"wrote {path} ({size:.1f} MiB) and {path.with_name(path.stem + '.card.json').name}")
    if args.precision_report:
        from ..export.precision_report import report_for_card

        report = report_for_card(card, args.precision_report, args.threshold, fused=form == "fused")
        rp = report.save(path.with_name(path.stem + ".precision.json"))
        print(
            f"wrote {rp}: {len(report.flagged)} layer(s) flagged for {report.dtype}"
            + (f" ({', '.join(report.flagged[:5])}{' …' if len(report.flagged) > 5 else ''})" if report.flagged else "")
        )
    if args.verify:
        rows = (
            (s["batch"], f"{s['identical'] * 100:.3f}% identical, max diff {s['max_diff']}", parity_ok(s, card.kind))
            for s in verify_onnx(card, path, form=form)
        )
        return 0 if report_parity(rows) else 1
    return 0


def report_parity(rows) -> bool:
    """Print one line per ``(batch, what was compared, within the bar)`` row of an export's
    onnxruntime-vs-torch check, then the verdict; True when every row is within the bar."""
    ok = True
    for batch, what, good in rows:
        ok &= good
        print(f"  batch {batch}: {what} -> {'ok' if good else 'MISMATCH'}", flush=True)
    if not ok:
        print("onnxruntime and torch outputs differ beyond the parity bar", flush=True)
    return ok


def run_tensorrt(args) -> int:
    from ..export.tensorrt_build import build_engine, plan_build

    plan = plan_build(
        args.onnx,
        args.out,
        min_batch=args.min_batch,
        opt_batch=args.opt_batch,
        max_batch=args.max_batch,
        precision=args.precision,
        timing_cache=args.timing_cache,
        fp32_layers_from=args.fp32_layers_from,
    )
    print(plan.describe(), flush=True)
    if args.dry_run:
        return 0
    print("building (this takes minutes for full-size models) ...", flush=True)
    path = build_engine(
        args.onnx,
        args.out,
        min_batch=args.min_batch,
        opt_batch=args.opt_batch,
        max_batch=args.max_batch,
        precision=args.precision,
        timing_cache=args.timing_cache,
        fp32_layers_from=args.fp32_layers_from,
        workspace_gib=args.workspace_gib,
        log_path=args.log,
        verbose=args.verbose,
    )
    card = json.loads(Path(path).with_name(Path(path).stem + ".card.json").read_text())
    info = card["artifacts"]["tensorrt"]
    print(
        f"wrote {path} (TensorRT {info['tensorrt']}, {info['gpu']}, compute {info['compute_capability']}, "
        f"{info['fp32_layers_pinned']} layer(s) pinned to FP32)"
    )
    return 0

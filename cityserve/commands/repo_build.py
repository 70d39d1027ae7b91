"""``cityserve repo build``: model cards -> a Triton model repository for one target."""

from __future__ import annotations

import argparse

from ..errors import ConfigError

DESCRIPTION = """\
Write a Triton model repository for one target from the given model cards: a config.pbtxt per model
(built as Triton's ModelConfig message), the exported graphs, and the python-backend models of
cityserve/serving/triton_models/. triton_models/examples/ holds what it writes for the demo models.

Per generator: a render model (raw tensors: label ids uint8 [B,1,H,W] in, RGB uint8 [B,H,W,3] out),
and label2photo (label PNG bytes -> photo PNG bytes): on the cpu target by default ONE python model
that decodes, renders and encodes (--pipeline fused: no python round trips between steps), elsewhere
(and with --pipeline ensemble) an ensemble of decode_png -> [prepare_render] -> render -> encode_png.
Per segmenter: a segment
model and the photo2labels ensemble (photo PNG -> label PNG). With both: photo2photo (a street photo ->
its labels -> a re-rendered photo). The first generator/segmenter/layout card gets these plain names, later
ones get _<card name> appended. With --depth-aware STAGE1 STAGE2 (a depth-aware SPADE pair, docs/depth.md):
models depth (labels -> depth float32 metres) and render_from_depth (labels + depth -> photo), and the
ensembles label2depth (label PNG -> 16-bit depth PNG in millimetres), label2depth2photo (label PNG ->
photo PNG and the depth PNG it used) and depth2photo (label PNG + your own depth PNG/.npy -> photo).
Per layout card (kind layout, train/layouts.py): random_layout (SEED int64 -> layout ids, instance map,
id/color PNGs; the layout graph is its own model, layout_graph) and, with a generator, the random2photo
ensemble (SEED -> LABELS_PNG, COLOR_PNG, PHOTO_PNG).

Targets: cpu (onnxruntime inside Triton's python backend: the server bundled with nvidia-pytriton),
gpu-onnx (onnxruntime_onnx models, CUDA EP; --onnx-accelerator tensorrt adds the TensorRT EP in FP16),
gpu-trt (tensorrt_plan models: pass engines with --plan, or run the build_engines.sh written into the
repository on the serving GPU: it builds each engine with `cityserve export tensorrt`, which keeps
normalization and precision-report-flagged layers in FP32), openvino (Triton's own OpenVINO backend on
CPU-only nodes, as in the NGC tritonserver container; the bundled server has no OpenVINO backend, so
there use --target cpu --cpu-engine openvino).

CARD is a model card, its weights file, a directory with one card, or an exported render.onnx /
segment.onnx (with its card beside or inside). Cards that were not exported yet are exported to ONNX
on the way. Serving options come from the card's serving section (max_batch_size, instances, ...)
unless given here, each checked with its bounds. The configs of graph models are checked against the
graph's tensors and ensembles against the models they chain before anything is written. Values from
cards and label sets (names, label sets) only become protobuf fields, never config text; a card name
that must become part of a model name (a second generator or segmenter) is refused unless it is
A-Z a-z 0-9 _ . - only."""

EPILOG = """\
examples:
  cityserve repo build --target cpu --model models/demo/spade-demo.card.json \\
      --model models/demo/segmenter-demo.card.json --out repo/
  cityserve repo build --target gpu-onnx --model exported/demo/render.onnx --model exported/seg/segment.onnx \\
      --onnx-accelerator tensorrt --instances 2 --out repo-gpu/   # written here, served on a GPU
  cityserve repo build --target gpu-trt --model exported/demo/render.onnx \\
      --plan render=exported/demo/render.plan --max-batch-size 16 --preferred-batch-sizes 4,8,16 --out repo-trt/
  cityserve repo build --target gpu-trt --model models/demo/spade-demo.card.json --configs-only --out review/
  cityserve repo build --target cpu --cpu-engine openvino --model models/demo/spade-demo.card.json --out repo-ov/
  cityserve repo build --target openvino --model models/demo/spade-demo.card.json --configs-only --out review-ov/
  cityserve repo build --target cpu --depth-aware runs/depth/spade-tiny.card.json \\
      runs/photo-dp/spade-tiny.card.json --out repo-depth/
  cityserve repo build --target cpu --pipeline ensemble --model models/demo/spade-demo.card.json --configs-only \\
      --out review-ensemble/
"""


def _batch_sizes(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def register(sub, groups) -> None:
    p = groups["repo"].add_parser(
        "build",
        help="write a Triton model repository for a target",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--target",
        choices=("cpu", "gpu-trt", "gpu-onnx", "openvino"),
        default="cpu",
        help="serving target (default cpu)",
    )
    p.add_argument(
        "--model",
        dest="models",
        action="append",
        default=[],
        metavar="CARD",
        help="a generator or segmenter (repeat for several)",
    )
    p.add_argument(
        "--depth-aware",
        nargs=2,
        metavar=("STAGE1_CARD", "STAGE2_CARD"),
        help="a depth-aware SPADE pair: the depth card and the photo-from-depth card (docs/depth.md)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="the repository directory to write")
    p.add_argument("--force", action="store_true", help="replace DIR if it is an existing cityserve repository")
    p.add_argument(
        "--configs-only",
        action="store_true",
        help="write the configs, the manifest and build_engines.sh only (no graphs, weights or python models)",
    )
    g = p.add_argument_group("serving options (default: the card's, else the built-in defaults)")
    g.add_argument("--max-batch-size", type=int, help="largest batch the models accept (default 8)")
    g.add_argument(
        "--preferred-batch-sizes",
        type=_batch_sizes,
        metavar="N,N,..",
        help="dynamic batching preferred sizes (default powers of two up to max)",
    )
    g.add_argument(
        "--max-queue-delay-us",
        type=int,
        help="dynamic batching queue delay (default 2000; the cpu target's fused label2photo: no dynamic "
        "batching unless this is given)",
    )
    g.add_argument("--instances", type=int, help="model instances per model (default 1)")
    g.add_argument("--max-pixels", type=int, help="largest image accepted, in pixels (default 4096*4096)")
    g.add_argument("--max-bytes", type=int, help="largest PNG accepted, in bytes (default 64 MiB)")
    g.add_argument(
        "--threads",
        dest="intra_op_threads",
        type=int,
        help="cpu target: onnxruntime threads per instance (default: onnxruntime's)",
    )
    g.add_argument("--no-warmup", dest="warmup", action="store_const", const=False, help="skip warm-up requests")
    g.add_argument(
        "--nearest",
        dest="nearest_colors",
        action="store_const",
        const=True,
        help="decode_png snaps label colors to the nearest palette color instead of refusing them",
    )
    g.add_argument(
        "--cpu-engine",
        choices=("auto", "aot", "onnxruntime", "openvino"),
        help="cpu target render model: AOTInductor package (BF16), onnxruntime or OpenVINO (render and "
        "segment); auto (default): where the CPU has AVX-512 BF16 / AMX and a card (not an .onnx) is given, "
        "OpenVINO BF16 if installed, else aot; otherwise onnxruntime",
    )
    g.add_argument(
        "--cpu-precision",
        choices=("auto", "fp32", "bf16"),
        help="OpenVINO models (cpu target with --cpu-engine openvino, openvino target): auto (default) = "
        "BF16 where the CPU has it",
    )
    g.add_argument("--onnx-accelerator", choices=("none", "tensorrt"), help="gpu-onnx: TensorRT EP in FP16")
    g.add_argument(
        "--latent",
        choices=("random", "zero"),
        help="label2photo's latent for generators that take one: random (default: a new photo per request) "
        "or zero (the mean style: the same label map always gives the same photo)",
    )
    g.add_argument(
        "--pipeline",
        choices=("fused", "ensemble"),
        help="cpu target label2photo: fused (default: decode + render + encode in ONE python model, no "
        "python round trips between steps) or ensemble (decode_png -> [prepare_render] -> render -> "
        "encode_png); the other targets always chain an ensemble",
    )
    g.add_argument(
        "--trust-aot",
        action="store_const",
        const=True,
        help="cpu target: accept an AOT card whose package was not compiled on this machine (native code)",
    )
    p.add_argument(
        "--plan",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="gpu-trt: a TensorRT engine for the card (or model) NAME",
    )
    p.set_defaults(func=run)


OPTION_NAMES = (
    "max_batch_size",
    "preferred_batch_sizes",
    "max_queue_delay_us",
    "instances",
    "max_pixels",
    "max_bytes",
    "intra_op_threads",
    "warmup",
    "nearest_colors",
    "onnx_accelerator",
    "cpu_engine",
    "cpu_precision",
    "trust_aot",
    "latent",
    "pipeline",
)


def run(args) -> int:
    from ..serving.repo import build_repository

    plans = {}
    for item in args.plan:
        if "=" not in item:
            raise ConfigError(f"--plan {item!r}: expected NAME=PATH (NAME: the card's or the model's name)")
        name, path = item.split("=", 1)
        plans[name] = path
    if not args.models and not args.depth_aware:
        raise ConfigError("no model cards given: pass --model CARD (repeat for several) and/or --depth-aware S1 S2")
    overrides = {k: getattr(args, k, None) for k in OPTION_NAMES}
    built = build_repository(
        args.models,
        args.target,
        args.out,
        overrides=overrides,
        plans=plans,
        overwrite=args.force,
        configs_only=args.configs_only,
        depth_pair=tuple(args.depth_aware) if args.depth_aware else None,
    )
    print(f"wrote {args.target} repository {built.path}")
    for name, info in sorted(built.models.items()):
        print(f"  {name:<24} {info.get('role', ''):<14} {info.get('card', '')}")
    for note in built.notes:
        print(f"note: {note}")
    return 0

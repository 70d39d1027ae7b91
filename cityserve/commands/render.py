"""``cityserve render``: a label PNG -> a photo PNG, locally (torch / onnxruntime / aot / openvino / tensorrt) or
through a running server (``--server``)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Optional

import numpy as np

from .. import contract
from ..cards import load_card
from ..errors import ConfigError
from ..files import atomic_write_bytes
from ..labels import encode_png, fit_nearest, read_instance_png, read_label_png, read_photo

DESCRIPTION = """\
Render one label map into a photo with a generator model card.

LABELS.png is either a color PNG in the label set's palette (exact colors; --nearest snaps anti-aliased
or JPEG-damaged colors to the nearest palette color) or a single-channel id PNG in the dataset's own
convention: Cityscapes *_labelIds.png as they are, ADE20K annotations (0 = other, k = class k-1),
COCO-Stuff stuffthingmaps (255 = unknown). An id is valid when it is below the model's label-channel
count (official SPADE Cityscapes models have 35 channels, so id 34 is accepted). INSTANCES.png is a
16-bit instance-id PNG like Cityscapes' *_instanceIds.png; models with instance edges that get none
use the class boundaries.

VAE (multimodal) models take a style latent: --seed N draws it from N(0, 1) with seed N; --style IMAGE
encodes an image with the model's encoder and uses its mean (deterministic: the official code adds
noise, exp(logvar/2) * eps, at test time too); --z reads a saved latent (.npy, or a .pt tensor loaded
with weights_only=True). The output is the model's HxW RGB image, uint8 as
clamp(round((y + 1) * 127.5), 0, 255) of the generator's tanh output.

Depth-aware pairs (docs/depth.md): --model is the photo-from-depth stage; --depth-aware DEPTH_CARD
predicts the depth from the labels first, or --depth FILE gives your own depth map (16-bit PNG in
millimetres or .npy in metres, at the model's size); --depth-out writes the depth used as a 16-bit
millimetre PNG. Locally in torch (the exported graphs: `cityserve export depth`); with --server, through
the server's label2depth2photo ensemble (--depth-aware without a card: the server has the pair) or,
with --depth, its depth2photo ensemble (a bad depth map exits 2 with the server's one-line reason)."""

EPILOG = """\
examples:
  cityserve render street_gtFine_labelIds.png --model models/spade_cityscapes --out photo.png \\
      --instances street_gtFine_instanceIds.png
  cityserve render painted.png --model models/ade_vae --seed 3 --out photo.png
  cityserve render painted.png --model models/ade_vae --style beach.jpg --out photo.png
  cityserve render painted.png --model models/ade_vae --z saved_latent.npy --out photo.png
  cityserve render examples/street_01.png --model models/demo/spade-demo.card.json --engine onnxruntime \\
      --out photo.png
  cityserve render examples/street_01.png --model models/demo/spade-demo.card.json --engine openvino \\
      --precision bf16 --out photo.png   # pip install 'cityserve[openvino]'
  cityserve render street.png --model runs/photo-dp/spade-tiny.card.json \
      --depth-aware runs/depth/spade-tiny.card.json --out photo.png --depth-out depth.png
  cityserve render street.png --model runs/photo-dp/spade-tiny.card.json --depth my_depth.npy --out photo.png
  cityserve render examples/street_01.png --server 127.0.0.1:8001 --out photo.png   # a running `cityserve serve`
  cityserve render street.png --server 127.0.0.1:8001 --depth-aware --out photo.png --depth-out depth.png
  cityserve render street.png --server 127.0.0.1:8001 --depth my_depth.png --out photo.png
  cityserve render examples/street_01.png --server 10.0.0.1:8001,10.0.0.2:8001 --out photo.png   # replicas
"""

ENGINE_NAMES = ("torch", "onnxruntime", "aot", "openvino", "tensorrt")
PRECISIONS = ("auto", "fp32", "bf16")


def register(sub, groups) -> None:
    p = sub.add_parser(
        "render",
        help="render a label PNG into a photo PNG",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("labels", metavar="LABELS.png", help="color label PNG or 1-channel id PNG")
    p.add_argument(
        "--model",
        metavar="CARD",
        help="model card, its weights file, or a directory with one card (with --server: the served model's name)",
    )
    p.add_argument("--out", required=True, metavar="PHOTO.png", help="where to write the photo (PNG)")
    p.add_argument("--instances", metavar="INSTANCES.png", help="16-bit instance-id PNG (Cityscapes instanceIds)")
    style = p.add_mutually_exclusive_group()
    style.add_argument("--seed", type=int, help="VAE models: seed of the random style latent")
    style.add_argument("--style", metavar="IMAGE", help="VAE models: take the style of this image (its encoder mean)")
    style.add_argument(
        "--z", metavar="Z.npy|Z.pt", help="VAE models: a saved style latent, float [z_dim] or [1, z_dim]"
    )
    p.add_argument("--nearest", action="store_true", help="snap label colors to the nearest palette color")
    p.add_argument("--engine", choices=ENGINE_NAMES, default="torch", help="render engine (default torch)")
    p.add_argument("--device", help="cpu or cuda (default cpu; for onnxruntime: its execution provider)")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="--engine openvino / aot: auto (default) = BF16 where the CPU has it (AVX-512 BF16 / AMX), else FP32",
    )
    p.add_argument(
        "--trust",
        action="store_true",
        help="--engine aot: load a package not compiled on this machine (it is native code: know its origin)",
    )
    depth = p.add_mutually_exclusive_group()
    depth.add_argument(
        "--depth-aware",
        nargs="?",
        const="",
        metavar="DEPTH_CARD",
        help="--model is a photo-from-depth stage: predict depth with this card (with --server: no card, "
        "the server's label2depth2photo)",
    )
    depth.add_argument(
        "--depth", metavar="DEPTH.png|.npy", help="--model is a photo-from-depth stage: render with this depth map"
    )
    p.add_argument("--depth-out", metavar="DEPTH.png", help="depth-aware: also write the depth used (16-bit mm PNG)")
    p.add_argument(
        "--server",
        metavar="HOST:PORT[,...]",
        help="render on running cityserve/Triton servers instead (several: balanced, with failover)",
    )
    p.set_defaults(func=run)


def write_photo(path, image: np.ndarray) -> None:
    """uint8 RGB [H,W,3] -> PNG (atomic write)."""
    atomic_write_bytes(path, encode_png(image))


def engine_options(engine: str, device: Optional[str], precision: str = "auto") -> dict:
    options: dict = {}
    if precision != "auto":
        if engine == "openvino":
            options["precision"] = precision
        elif engine == "aot":
            options["dtype"] = precision
        else:
            raise ConfigError(f"--precision {precision} applies to --engine openvino or aot, not {engine}")
    if device is None:
        return options
    if engine == "onnxruntime":
        return {**options, "providers": device}
    return {**options, "device": device}


def fit_to_model(labels: np.ndarray, instances: Optional[np.ndarray], card):
    """A label map of another size but the same aspect ratio is resized to the model's HxW with nearest
    neighbour (``labelmap.fit_nearest``: SPADE's first layer is sized from H and W, so the model cannot
    render another size), with a note; another aspect ratio is refused rather than distorted."""
    fitted, instances, resized = fit_nearest(labels, card.height, card.width, instances)
    if resized:
        print(
            f"note: label map is {labels.shape[0]}x{labels.shape[1]}, model {card.name!r} renders "
            f"{card.height}x{card.width}: resized with nearest neighbour",
            file=sys.stderr,
        )
    return fitted, instances


def run_remote(args) -> int:
    """``--server HOST:PORT[,HOST:PORT...]``: the label PNG goes to the server's ``label2photo`` ensemble
    (or the one --model names); the photo PNG comes back. Several servers: the request goes to one
    that is up and fails over to the others within the deadline. ``--nearest`` decodes the colors
    here (snapping to the palette) and sends the ids to the raw render model instead."""
    from ..client import CityserveClient  # tritonclient and grpc: only when a server is asked for

    out = str(args.out)
    if not out.lower().endswith(".png"):
        raise ConfigError(f"--out {out}: the photo is written as PNG; name it *.png")
    for flag in ("instances", "style", "z"):
        if getattr(args, flag, None):
            raise ConfigError(
                f"--{flag} is not available with --server: the served pipeline takes label maps "
                f"only; render locally with --model CARD"
            )
    model = args.model or "label2photo"
    started = time.perf_counter()
    with CityserveClient(args.server, timeout=float(getattr(args, "timeout", None) or 60.0)) as client:
        inputs = [t["name"] for t in client.model_config(model).get("input", [])]
        if args.nearest or contract.LABELS in inputs:
            client.render_model = model if contract.LABELS in inputs else "render"
            label_set = client.parameters(client.render_model).get("label_set", "cityscapes")
            ids = read_label_png(args.labels, label_set, nearest=args.nearest)
            png = client.render(ids, output="png", seed=args.seed)
            via = client.render_model
        elif contract.LABELS_PNG in inputs:
            png = client.label2photo(args.labels, model=model)
            via = model
        else:
            raise ConfigError(
                f"served model {model!r} takes {inputs}, neither a label PNG ({contract.LABELS_PNG}) nor "
                f"label ids ({contract.LABELS}); use label2photo or a render model"
            )
    atomic_write_bytes(out, png)
    ms = (time.perf_counter() - started) * 1000
    print(f"wrote {out} (via {client.last_url or args.server} model {via!r}, {ms:.0f} ms)")
    return 0


def run_depth_aware(args) -> int:
    """Stage 1 (or the user's depth map) then stage 2, in torch; bad depth files fail naming the file."""
    import torch

    from ..data.depth import read_depth, write_depth_png
    from ..export.depth_export import depth_graph_from_card, photo_graph_from_card

    if args.server:
        return run_remote_depth(args)
    if not args.depth and not args.depth_aware:
        raise ConfigError("--depth-aware DEPTH_CARD: name the stage-1 card (only with --server is none needed)")
    if args.engine != "torch":
        raise ConfigError("--depth-aware / --depth render with --engine torch (ONNX graphs: `cityserve export depth`)")
    for flag in ("style", "z", "seed"):
        if getattr(args, flag) is not None:
            raise ConfigError(f"--{flag}: a depth-aware stage takes no style latent")
    if not args.model:
        raise ConfigError("--model CARD (the photo-from-depth stage) is required")
    for flag in ("out", "depth_out"):
        path = getattr(args, flag)
        if path and not str(path).lower().endswith(".png"):
            raise ConfigError(f"--{flag.replace('_', '-')} {path}: written as PNG; name it *.png")
    card = load_card(args.model)
    photo = photo_graph_from_card(card)
    labels = read_label_png(args.labels, card.label_set, nearest=args.nearest, num_channels=photo.num_classes)
    instances = read_instance_png(args.instances) if args.instances else None
    labels, instances = fit_to_model(labels, instances, card)
    if instances is None:
        instances = labels.astype(np.int32)  # no instance map: the class boundaries
    lab = torch.from_numpy(labels.astype(np.int64))[None, None]
    inst = torch.from_numpy(instances.astype(np.int32))[None, None]
    h, w = card.height, card.width
    with torch.no_grad():
        if args.depth:
            d = read_depth(args.depth)
            if d.shape != (h, w):
                raise ConfigError(
                    f"--depth {args.depth}: depth map is {d.shape[0]}x{d.shape[1]}, the model renders {h}x{w}"
                )
            depth = torch.from_numpy(d)[None, None]
            via = f"depth {args.depth}"
        else:
            dcard = load_card(args.depth_aware)
            if (dcard.height, dcard.width) != (h, w):
                raise ConfigError(f"--depth-aware {args.depth_aware}: {dcard.height}x{dcard.width}, not {h}x{w}")
            depth = depth_graph_from_card(dcard)(lab, inst)
            via = f"depth from {dcard.name}"
        image = photo(lab, inst, depth)[0].numpy()
    write_photo(args.out, image)
    if args.depth_out:
        write_depth_png(args.depth_out, depth[0, 0].numpy())
    print(f"wrote {args.out} ({h}x{w}, {card.name}, {via})" + (f" and {args.depth_out}" if args.depth_out else ""))
    return 0


def run_remote_depth(args) -> int:
    """``--server`` with ``--depth-aware`` (label2depth2photo) or ``--depth FILE`` (depth2photo): the label
    PNG (and the depth file, checked here first for dtype and values, on the server for its size) go to
    the server; the photo PNG, and with ``--depth-out`` the depth PNG, come back."""
    from ..client import CityserveClient
    from ..data.depth import read_depth, write_depth_png

    if args.depth_aware:
        raise ConfigError(
            f"--depth-aware {args.depth_aware} with --server: the served pair predicts the depth; pass "
            f"--depth-aware without a card (--model may name the ensemble)"
        )
    for flag in ("instances", "style", "z", "seed", "nearest"):
        if getattr(args, flag, None):
            raise ConfigError(f"--{flag} is not available with --server --depth-aware / --depth")
    for flag in ("out", "depth_out"):
        path = getattr(args, flag)
        if path and not str(path).lower().endswith(".png"):
            raise ConfigError(f"--{flag.replace('_', '-')} {path}: written as PNG; name it *.png")
    model = args.model or ("depth2photo" if args.depth else "label2depth2photo")
    started = time.perf_counter()
    depth_png = None
    with CityserveClient(args.server, timeout=float(getattr(args, "timeout", None) or 60.0)) as client:
        if args.depth:
            depth = read_depth(args.depth)  # one line naming the file: dtype, NaN/inf, <= 0
            png = client.depth2photo(args.labels, args.depth, model=model)
        else:
            png, depth_png = client.label2depth2photo(args.labels, model=model)
    atomic_write_bytes(args.out, png)
    if args.depth_out:
        if depth_png is not None:
            atomic_write_bytes(args.depth_out, depth_png)
        else:
            write_depth_png(args.depth_out, depth)
    ms = (time.perf_counter() - started) * 1000
    more = f" and {args.depth_out}" if args.depth_out else ""
    print(f"wrote {args.out}{more} (via {client.last_url or args.server} model {model!r}, {ms:.0f} ms)")
    return 0


def run(args) -> int:
    if args.depth_aware is not None or args.depth:
        return run_depth_aware(args)
    if args.server:
        return run_remote(args)

    # the torch-backed library, imported when a render runs (torch alone takes seconds to import)
    from ..engines.base import Renderer
    from ..models.spade_style import read_latent, style_latent

    if not args.model:
        raise ConfigError("--model CARD is required (or --server HOST:PORT to render remotely)")
    if not str(args.out).lower().endswith(".png"):
        raise ConfigError(f"--out {args.out}: the photo is written as PNG; name it *.png")
    card = load_card(args.model)
    options = engine_options(args.engine, args.device, getattr(args, "precision", "auto"))
    if args.engine == "aot" and args.trust:
        options["trust"] = True
    renderer = Renderer(card, engine=args.engine, **options)
    labels = renderer.read_labels(args.labels, nearest=args.nearest)
    instances = None
    if args.instances:
        if renderer.io.use_instance:
            instances = read_instance_png(args.instances)
        else:
            print(f"note: model {card.name!r} takes no instance map; --instances ignored", file=sys.stderr)
    z = None
    if args.style:
        if not renderer.io.z_dim:
            raise ConfigError(f"--style: model {card.name!r} is not a VAE model, it takes no style")
        z = style_latent(
            card, read_photo(args.style, "style image"), device=args.device if args.engine == "torch" else None
        )
    elif args.z:
        if not renderer.io.z_dim:
            raise ConfigError(f"--z: model {card.name!r} is not a VAE model, it takes no latent")
        z = read_latent(args.z, renderer.io.z_dim)
    elif renderer.io.z_dim and args.seed is None:
        print("note: VAE model: the style latent is random; pass --seed N to repeat it", file=sys.stderr)
    labels, instances = fit_to_model(labels, instances, card)
    image = renderer.render(labels, instances=instances, z=z, seed=args.seed)[0]
    write_photo(args.out, image)
    print(f"wrote {args.out} ({image.shape[0]}x{image.shape[1]}, {card.name}, {args.engine})")
    return 0

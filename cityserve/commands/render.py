"""``cityserve render``: a label PNG -> a photo PNG, locally (torch / onnxruntime / aot / tensorrt) or
through a running server (``--server``)."""

from __future__ import annotations

import argparse
import sys
from typing import Optional

import numpy as np

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
clamp(round((y + 1) * 127.5), 0, 255) of the generator's tanh output."""

EPILOG = """\
examples:
  cityserve render street_gtFine_labelIds.png --model models/spade_cityscapes --out photo.png \\
      --instances street_gtFine_instanceIds.png
  cityserve render painted.png --model models/ade_vae --seed 3 --out photo.png
  cityserve render painted.png --model models/ade_vae --style beach.jpg --out photo.png
  cityserve render painted.png --model models/ade_vae --z saved_latent.npy --out photo.png
  cityserve render labels.png --model models/demo --engine onnxruntime --out photo.png
  cityserve render labels.png --model spade --server localhost:8001 --out photo.png
  cityserve render labels.png --server 10.0.0.1:8001,10.0.0.2:8001,10.0.0.3:8001 --out photo.png
"""

ENGINE_NAMES = ("torch", "onnxruntime", "aot", "tensorrt")


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
        "--trust",
        action="store_true",
        help="--engine aot: load a package not compiled on this machine (it is native code: know its origin)",
    )
    p.add_argument(
        "--server",
        metavar="HOST:PORT[,...]",
        help="render on running cityserve/Triton servers instead (several: balanced, with failover)",
    )
    p.set_defaults(func=run)


def read_labels_for_model(src, card, nearest: bool = False) -> np.ndarray:
    """Label ids [H,W] for ``card``'s generator from a color or id PNG (path or bytes).

    Id PNGs follow the label set's file convention; for sets whose files hold the ids as they are
    (Cityscapes), ids the set lacks but the model has channels for are accepted (official Cityscapes
    models: 35 channels for ids 0..33), as SPADE's loader does.
    """
    from ..errors import LabelError
    from ..labels import decode_image, get_label_set, read_label_png
    from ..models.registry import render_io

    ls = get_label_set(card.label_set)
    num_classes = render_io(card).num_classes
    img, name = decode_image(src)
    if img.ndim == 2 and ls.file_convention == "identity" and num_classes > ls.num_ids:
        if img.dtype not in (np.uint8, np.uint16):
            raise LabelError(f"{name}: an id PNG is 8- or 16-bit, not {img.dtype}")
        bad = img >= num_classes
        if bad.any():
            values, counts = np.unique(img[bad], return_counts=True)
            listed = ", ".join(f"{int(v)} ({int(c)} px)" for v, c in zip(values[:3], counts[:3]))
            raise LabelError(
                f"{name}: id(s) {listed} out of range for model {card.name!r} with {num_classes} "
                f"label channels (ids 0..{num_classes - 1})"
            )
        return img.astype(np.uint8 if num_classes <= 256 else np.int32)
    return read_label_png(src, ls, nearest=nearest)


def read_style_image(path) -> np.ndarray:
    """RGB uint8 [H,W,3] of any image OpenCV reads (alpha dropped, gray expanded)."""
    from ..labels import decode_image, to_rgb8

    img, name = decode_image(path, "style image")
    return to_rgb8(img, name)


def style_latent(card, image: np.ndarray, device: Optional[str] = None) -> np.ndarray:
    """z [1, z_dim] of an RGB image through the card's encoder: its mean, deterministic."""
    from ..models.spade import encode_style, load_encoder

    encoder = load_encoder(card)
    return encode_style(encoder, image, card.height, card.width, device=device or "cpu")


def read_latent(path, z_dim: int) -> np.ndarray:
    """A saved latent (.npy without pickles, or a .pt tensor) -> float32 [1, z_dim]."""
    from ..errors import ConfigError

    p = str(path)
    if p.endswith(".npy"):
        try:
            z = np.load(p, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ConfigError(f"--z {p}: not a readable .npy array ({str(e).splitlines()[0][:120]})") from None
    else:
        import torch

        from ..checkpoints import safe_load

        z = safe_load(p)
        if not isinstance(z, torch.Tensor):
            raise ConfigError(f"--z {p}: holds a {type(z).__name__}, not a tensor")
        z = z.detach().float().numpy()
    z = np.asarray(z, dtype=np.float32)
    if z.size != z_dim:
        raise ConfigError(f"--z {p}: has {z.size} values of shape {tuple(z.shape)}; the model takes z_dim {z_dim}")
    return z.reshape(1, z_dim)


def write_photo(path, image: np.ndarray) -> None:
    """uint8 RGB [H,W,3] -> PNG (atomic write)."""
    import cv2

    from ..cards import atomic_write_bytes
    from ..errors import ConfigError

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image[..., ::-1]))
    if not ok:
        raise ConfigError(f"cannot encode the rendered image as PNG for {path}")
    atomic_write_bytes(path, buf.tobytes())


def engine_options(engine: str, device: Optional[str]) -> dict:
    if device is None:
        return {}
    if engine == "onnxruntime":
        return {"providers": device}
    return {"device": device}


def fit_to_model(labels: np.ndarray, instances: Optional[np.ndarray], card):
    """A label map of another size but the same aspect ratio is resized to the model's HxW with nearest
    neighbour (ids stay ids; SPADE's first layer is sized from H and W, so the model cannot render another
    size), with a note; another aspect ratio is refused rather than distorted."""
    import cv2

    from ..errors import LabelError

    h, w = card.height, card.width
    lh, lw = labels.shape[:2]
    if (lh, lw) == (h, w):
        return labels, instances
    if lh * w != lw * h:
        raise LabelError(
            f"label map is {lh}x{lw} but the model renders {h}x{w} (HxW), another aspect ratio: "
            f"crop it to {h}:{w} first (same-aspect maps are resized with nearest neighbour)"
        )
    print(
        f"note: label map is {labels.shape[0]}x{labels.shape[1]}, model {card.name!r} renders {h}x{w}: "
        f"resized with nearest neighbour",
        file=sys.stderr,
    )
    resize = lambda a: cv2.resize(a, (w, h), interpolation=cv2.INTER_NEAREST)
    labels = resize(labels.astype(np.int32) if labels.dtype not in (np.uint8, np.uint16, np.int32) else labels)
    if instances is not None:
        instances = resize(instances.astype(np.int32))
    return labels, instances


def run(args) -> int:
    if args.server:
        from ._render_remote import render_cli

        return render_cli(args)

    from ..cards import load_card
    from ..engines.base import Renderer
    from ..errors import ConfigError
    from ..labels import read_instance_png

    if not args.model:
        raise ConfigError("--model CARD is required (or --server HOST:PORT to render remotely)")
    if not str(args.out).lower().endswith(".png"):
        raise ConfigError(f"--out {args.out}: the photo is written as PNG; name it *.png")
    card = load_card(args.model)
    options = engine_options(args.engine, args.device)
    if args.engine == "aot" and args.trust:
        options["trust"] = True
    renderer = Renderer(card, engine=args.engine, **options)
    labels = read_labels_for_model(args.labels, card, nearest=args.nearest)
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
        z = style_latent(card, read_style_image(args.style), device=args.device if args.engine == "torch" else None)
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

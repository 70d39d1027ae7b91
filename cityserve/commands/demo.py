"""``cityserve demo`` (what ``make demo`` runs): the example label maps -> photos through a real local
Triton server and gRPC, end to end."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..cards import atomic_write_bytes, load_card
from ..data.synthetic import generate_scene
from ..errors import ConfigError
from ..labels import get_label_set, read_label_png, resize_nearest, write_id_png
from ..serving.codec import decode_rgb_png, encode_rgb_png

DESCRIPTION = """\
Build a cpu model repository with the shipped demo models (models/demo/: a SPADE generator and an
FCHarDNet segmenter trained on synthetic street scenes; only if they are missing, a loudly announced
random-weight placeholder), start the bundled tritonserver on 127.0.0.1 with free ports, render every label map in examples/ through gRPC (the label2photo ensemble: label PNG in, photo
PNG out), write the photos and a side-by-side montage (label colors | photo), stop the server, and
print where the results are and how long each render took.

Label maps of another size than the model's are resized with nearest-neighbour first (ids are never
interpolated). Without an examples/ directory, a few synthetic street scenes are generated instead."""

EPILOG = """\
examples:
  cityserve demo
  cityserve demo --examples my_streets/ --out demo_output/
"""


def register(sub, groups) -> None:
    p = sub.add_parser(
        "demo",
        help="render the example label maps through a local Triton server",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--examples", metavar="DIR", help="directory of label PNGs (default: examples/)")
    p.add_argument(
        "--out", default="demo_output", metavar="DIR", help="where to write photos + montage (default demo_output/)"
    )
    p.add_argument(
        "--model",
        dest="models",
        action="append",
        metavar="CARD",
        help="serve these cards (or exported .onnx graphs) instead of the demo model",
    )
    p.add_argument("--startup-timeout", type=float, default=300.0, help="seconds to wait for the server (default 300)")
    p.set_defaults(func=run)


def example_label_maps(directory, height: int, width: int) -> list[tuple[str, bytes]]:
    """(name, label PNG bytes) of each example, or synthetic scenes where no examples exist."""
    from ..serving.defaults import EXAMPLES_DIR

    d = Path(directory) if directory else EXAMPLES_DIR
    files = sorted(p for p in d.glob("*.png")) if d.is_dir() else []
    files = [p for p in files if "instance" not in p.name.lower() and "leftimg8bit" not in p.name.lower()]
    if files:
        return [(p.stem, p.read_bytes()) for p in files]
    if directory:
        raise ConfigError(f"--examples {directory}: no label PNGs there")
    print(f"note: no example label maps in {d}; generating synthetic street scenes instead", file=sys.stderr)

    return [
        (f"synthetic_{seed}", write_id_png(None, generate_scene(seed, height, width).labels, "cityscapes"))
        for seed in range(3)
    ]


def fit_to_model(data: bytes, label_set, height: int, width: int) -> tuple[bytes, object, bool]:
    """Label PNG bytes -> (id PNG bytes at the model's size, ids, resized?)."""
    ids = read_label_png(data, label_set)
    resized = ids.shape != (height, width)
    if resized:
        ids = resize_nearest(ids, height, width)
    return write_id_png(None, np.asarray(ids), label_set), ids, resized


def montage(rows: list[tuple[object, object]]):
    """[(label colors RGB, photo RGB)] -> one RGB image: a row per example, columns side by side."""
    gap = 4
    tiles = []
    for colors, photo in rows:
        h = photo.shape[0]
        tiles.append(np.concatenate([colors, np.full((h, gap, 3), 255, np.uint8), photo], axis=1))
    width = max(t.shape[1] for t in tiles)
    out = []
    for t in tiles:
        pad = np.full((t.shape[0], width - t.shape[1], 3), 255, np.uint8)
        out += [np.concatenate([t, pad], axis=1), np.full((gap, width, 3), 255, np.uint8)]
    return np.concatenate(out[:-1], axis=0)


def run(args) -> int:
    from ..client import CityserveClient
    from ..serving.defaults import demo_models
    from ..serving.repo import build_repository
    from ..serving.server import TritonServer

    t_all = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.models:
        from ..export.onnx_export import card_from_onnx

        cards, warning, depth_pair = list(args.models), "", None
        known = [card_from_onnx(m) if str(m).endswith(".onnx") else load_card(m) for m in args.models]
    else:
        demo = demo_models()
        cards, warning, depth_pair = demo.cards, demo.warning, demo.depth_pair
        known = cards
    if warning:
        print(warning, file=sys.stderr)
    generator = next((c for c in known if c.kind == "generator"), None)
    if generator is None:
        raise ConfigError("the demo needs a generator card")
    label_set = get_label_set(generator.label_set)
    examples = example_label_maps(args.examples, generator.height, generator.width)

    with tempfile.TemporaryDirectory(prefix="cityserve-demo-") as tmp:
        t0 = time.perf_counter()
        built = build_repository(cards, "cpu", Path(tmp) / "repo", depth_pair=depth_pair)
        print(f"built the cpu model repository ({len(built.models)} models) in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        with TritonServer(built.path, startup_timeout=args.startup_timeout) as server:
            print(f"tritonserver ready on {server.grpc_url} (gRPC) in {time.perf_counter() - t0:.1f} s")
            rows, timings = [], []
            with CityserveClient(server.grpc_url, timeout=120) as client:
                for name, data in examples:
                    png, ids, resized = fit_to_model(data, label_set, generator.height, generator.width)
                    t = time.perf_counter()
                    photo_png = client.label2photo(png)
                    ms = (time.perf_counter() - t) * 1000
                    timings.append(ms)
                    atomic_write_bytes(out / f"{name}_photo.png", photo_png)
                    rows.append((label_set.ids_to_colors(ids), decode_rgb_png(photo_png)))
                    note = f" (resized to {generator.height}x{generator.width}, nearest)" if resized else ""
                    print(f"  {name}: {ms:.0f} ms -> {out / (name + '_photo.png')}{note}")
        print("server stopped")
    atomic_write_bytes(out / "montage.png", encode_rgb_png(montage(rows), 6))
    print(f"\nresults in {out.resolve()}/: {len(rows)} photos and montage.png (label colors | photo)")
    if timings:
        print(
            f"render times through gRPC: first {timings[0]:.0f} ms, median "
            f"{sorted(timings)[len(timings) // 2]:.0f} ms ({generator.name}, {generator.height}x{generator.width})"
        )
    if warning:
        print("(placeholder model with random weights: the photos are noise; the trained demo models were not found)")
    print(f"demo took {time.perf_counter() - t_all:.1f} s")
    return 0

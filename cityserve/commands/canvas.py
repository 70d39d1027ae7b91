"""``cityserve canvas``: the designer's canvas (a local web page) in front of a Triton server."""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

from ..errors import ConfigError
from ..extras import require

DESCRIPTION = """\
Start a local web app: paint a street's label map in the browser (palette of the served model's
classes, brush sizes, fill, eraser, undo/redo, starting layouts, upload and download) and see the
photo the server renders from it, re-rendered while you paint.

Without --server the canvas starts its own tritonserver on 127.0.0.1 with free ports, serving the
shipped demo models on the cpu target (as `cityserve serve` does); with --server HOST:PORT it uses
that server's gRPC endpoint (a `cityserve serve` repository: the label2photo ensemble and its
decode_png / render models). The app listens on 127.0.0.1 unless --host says otherwise and prints
its URL; Ctrl-C stops it (and the server it started).

Beside the page, an HTTP API: POST /render (label PNG in, photo PNG out; ?model=, ?seed=),
GET /labels (the palette as JSON), POST /upload (a label PNG of any size -> palette colors at the
model's size), GET /health. Errors are one-line JSON: 400 bad label map, 413 too large, 503 while
Triton cannot be reached."""

EPILOG = """\
examples:
  cityserve canvas                                  # the demo model; open the printed URL
  cityserve canvas --port 8080 --server 127.0.0.1:8001
  curl -s http://127.0.0.1:8765/labels
  curl -s --data-binary @examples/street_01.png 'http://127.0.0.1:8765/render?seed=3' -o photo.png
"""


def register(sub, groups) -> None:
    p = sub.add_parser(
        "canvas",
        help="paint a label map in the browser, see the photo (a local web app)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--port", type=int, default=8765, help="port of the web app (default 8765; 0: any free port)")
    p.add_argument("--host", default="127.0.0.1", help="address of the web app (default 127.0.0.1)")
    p.add_argument("--server", metavar="HOST:PORT", help="a running Triton server's gRPC endpoint (default: start one)")
    p.add_argument(
        "--model",
        dest="models",
        action="append",
        metavar="CARD",
        help="without --server: serve these cards instead of the demo models (repeatable)",
    )
    p.add_argument("--label-set", metavar="FILE", help="the served label set's JSON where it is not built in")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per render request to Triton (default 30)")
    p.add_argument("--startup-timeout", type=float, default=300.0, help="seconds to wait for the server (default 300)")
    p.set_defaults(func=run)


@contextlib.contextmanager
def triton_for(args):
    """The gRPC URL to use: ``--server``, or a tritonserver started here for the demo models."""
    if args.server:
        yield args.server
        return
    from ..serving.leftovers import clean_leftovers, write_owner
    from ..serving.server import TritonServer
    from .serve import build_default_repository

    cleaned = clean_leftovers()
    if cleaned:
        print(f"note: {cleaned.describe()}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="cityserve-canvas-") as tmp:
        write_owner(Path(tmp))
        repo = build_default_repository(args.models, "cpu", Path(tmp) / "repo")
        print("starting tritonserver on 127.0.0.1 ...", flush=True)
        with TritonServer(repo, startup_timeout=args.startup_timeout) as server:
            print(f"tritonserver ready: gRPC {server.grpc_url}, HTTP http://{server.http_url}", flush=True)
            yield server.grpc_url


def run(args) -> int:
    require("canvas", "starlette", "cityserve canvas")
    uvicorn = require("canvas", "uvicorn", "cityserve canvas")
    from ..canvas.app import create_app
    from ..canvas.bridge import TritonBridge
    from ..serving.defaults import EXAMPLES_DIR
    from ..serving.server import free_port
    from .serve import check_port

    if args.server and args.models:
        raise ConfigError("--model serves cards on a server the canvas starts; with --server it has no effect")
    check_port(args.host, args.port)
    port = args.port or free_port(args.host)
    with triton_for(args) as url:
        bridge = TritonBridge(url, timeout=args.timeout, label_set=args.label_set)
        try:
            info = bridge.info()
            print(
                f"serving {info.ensemble} ({info.height}x{info.width}, label set {info.label_set.name!r}, "
                f"{len(info.palette())} paintable classes) from {url}",
                flush=True,
            )
            print(f"canvas: http://{args.host}:{port}/  (Ctrl-C stops it)", flush=True)
            app = create_app(bridge, EXAMPLES_DIR)
            uvicorn.run(app, host=args.host, port=port, log_level="warning", access_log=False)
        finally:
            bridge.close()
    return 0

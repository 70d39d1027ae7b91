"""``cityserve serve``: a model repository behind a local Triton server, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

from ..errors import EXIT_FAILED, EXIT_INTERRUPTED, UnavailableError
from ..serving.leftovers import clean_leftovers, write_owner

DESCRIPTION = """\
Serve a Triton model repository with tritonserver: the one in the nvidia-pytriton wheel (cpu target)
or a `tritonserver` on PATH (NGC containers; gpu targets). Without --repo, a repository is built first
from --model cards, else from the shipped demo models (models/demo/: a SPADE generator and an
FCHarDNet segmenter trained on synthetic street scenes; only if they are missing is a loudly announced
random-weight placeholder served instead).

The server listens on 127.0.0.1 unless --host says otherwise, with model control off: clients can
infer but cannot load or unload models, and the admin APIs (shared memory, model repository, trace,
logging) are restricted behind a key nobody is given; --allow-admin-api opens them (only for
clients you trust: a client that registers the server's own shared memory can crash it). GPU
metrics are on for gpu targets (--gpu-metrics). The command prints the gRPC, HTTP and metrics
endpoints once every model is ready.

On Ctrl-C or SIGTERM it drains first: new ensemble requests get UNAVAILABLE (clients retry on another
replica, or here after a restart), requests in flight finish (up to --drain-timeout s), then
tritonserver stops and every process of it ends. At start and at stop it removes the /dev/shm
regions and temporary folders that cityserve servers killed outright (kill -9, OOM) left behind;
only those of servers whose processes are all gone, never anything of another program."""

EPILOG = """\
examples:
  cityserve serve                                   # the demo models, gRPC on 127.0.0.1:8001
  cityserve serve --repo repo/ --grpc-port 0        # any free ports
  cityserve serve --model models/spade_cityscapes --model models/fchardnet_half
  cityserve serve --repo repo-gpu/ --host 0.0.0.0   # in an NGC container, reachable from outside
  cityserve serve --repo repo/ --drain-timeout 60   # let long requests finish on SIGTERM

then, from another terminal:
  cityserve render examples/street_01.png --server 127.0.0.1:8001 --out photo.png
"""


def register(sub, groups) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a model repository with a local Triton server",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--repo", metavar="DIR", help="model repository (default: build one from --model / the demo model)")
    p.add_argument(
        "--model",
        dest="models",
        action="append",
        metavar="CARD",
        help="build the repository from these cards (repeatable; ignored with --repo)",
    )
    p.add_argument(
        "--target",
        choices=("cpu", "gpu-trt", "gpu-onnx"),
        default="cpu",
        help="target of the repository built without --repo (default cpu)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (default 8001; 0: any free port)")
    p.add_argument("--http-port", type=int, default=8000, help="HTTP port (default 8000; 0: any free port)")
    p.add_argument("--metrics-port", type=int, default=8002, help="metrics port (default 8002; 0: any free port)")
    p.add_argument("--startup-timeout", type=float, default=300.0, help="seconds to wait for readiness (default 300)")
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="on SIGTERM/Ctrl-C, wait up to S s for requests in flight (default 30; 0: stop at once)",
    )
    p.add_argument(
        "--allow-admin-api",
        action="store_true",
        help="open the shared-memory, model-repository, trace and logging APIs (default: restricted)",
    )
    p.add_argument(
        "--gpu-metrics",
        choices=("auto", "on", "off"),
        default="auto",
        help="Triton's GPU metrics: on for gpu targets, off for cpu (auto, default)",
    )
    p.add_argument(
        "--server-binary",
        choices=("auto", "bundled", "path"),
        default="auto",
        help="which tritonserver: the nvidia-pytriton wheel's, the one on PATH, or auto (default)",
    )
    p.set_defaults(func=run)


def check_port(host: str, port: int) -> None:
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host if host not in ("", "0.0.0.0") else "0.0.0.0", port))
        except OSError:
            raise UnavailableError(f"port {port} on {host} is in use; pick another or pass 0 for a free one") from None


def gpu_metrics_for(choice: str, target: str) -> bool:
    """``--gpu-metrics``: auto means on for the gpu targets (GPU utilisation is what to watch there)."""
    return choice == "on" or (choice == "auto" and target.startswith("gpu"))


def build_default_repository(models, target: str, out_dir: Path) -> Path:
    from ..serving.defaults import demo_models
    from ..serving.repo import build_repository

    depth_pair = None
    if models:
        cards = models
    else:
        demo = demo_models()
        if demo.warning:
            print(demo.warning, file=sys.stderr)
        cards, depth_pair = demo.cards, demo.depth_pair
    print(f"building a {target} model repository in {out_dir} ...", flush=True)
    built = build_repository(cards, target, out_dir, depth_pair=depth_pair)
    for note in built.notes:
        print(f"note: {note}", file=sys.stderr)
    return built.path


def make_server(args, repo: Path, target: str):
    """The (not yet started) server ``cityserve serve`` runs for these options and target."""
    from ..serving.server import TritonServer, find_tritonserver

    prefer = args.server_binary
    if prefer == "auto" and target in ("gpu-trt", "gpu-onnx"):
        prefer = "path"  # the bundled server has only the python backend
    return TritonServer(
        repo,
        host=args.host,
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        metrics_port=args.metrics_port,
        install=find_tritonserver(prefer),
        startup_timeout=args.startup_timeout,
        admin_api=args.allow_admin_api,
        gpu_metrics=gpu_metrics_for(args.gpu_metrics, target),
        drain_timeout=args.drain_timeout,
    )


class _Stop(Exception):
    pass


def run(args) -> int:
    from ..serving.repo import load_manifest

    for port in (args.grpc_port, args.http_port, args.metrics_port):
        check_port(args.host, port)
    cleaned = clean_leftovers()
    if cleaned:
        print(f"note: {cleaned.describe()}", file=sys.stderr)

    def on_signal(signum, frame):
        raise _Stop()

    # From here on Ctrl-C / SIGTERM end the command through the cleanup below, at any stage.
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    server = None
    code, rc = 0, None
    try:
        with tempfile.TemporaryDirectory(prefix="cityserve-serve-") as tmp:
            write_owner(Path(tmp))  # removed by a later `cityserve serve` if this one is killed
            try:
                if args.repo:
                    repo = Path(args.repo)
                    target = (
                        load_manifest(repo).get("target", "cpu") if (repo / "cityserve_repo.json").is_file() else "?"
                    )
                else:
                    repo = build_default_repository(args.models, args.target, Path(tmp) / "repo")
                    target = args.target
                server = make_server(args, repo, target)
                print(f"starting tritonserver ({server.install.binary}) on {args.host} ...", flush=True)
                started = time.perf_counter()
                server.start()
                print(
                    f"ready in {time.perf_counter() - started:.1f} s: repository {repo} (target {target})\n"
                    f"  gRPC     {server.grpc_url}\n"
                    f"  HTTP     http://{server.http_url}\n"
                    f"  metrics  {server.metrics_url}\n"
                    f"  log      {server.log_path}\n"
                    f"model control is off (clients cannot load models); admin APIs "
                    f"{'OPEN (--allow-admin-api)' if args.allow_admin_api else 'restricted'}. "
                    f"Ctrl-C or SIGTERM stops the server.",
                    flush=True,
                )
                while server.alive():
                    time.sleep(0.5)
                print(f"error: tritonserver exited on its own; log tail:\n{server.log_tail()}", file=sys.stderr)
                code = EXIT_FAILED
            except (_Stop, KeyboardInterrupt):
                print(f"stopping: draining requests in flight (up to {args.drain_timeout:g} s) ...", flush=True)
                if server is None or server.process is None:
                    code = EXIT_INTERRUPTED
            finally:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                if server is not None:
                    rc = server.stop()
                    server.cleanup()
                    if server.last_drain is not None:
                        drained, seconds = server.last_drain
                        print(
                            f"drained in {seconds:.1f} s"
                            if drained
                            else f"warning: requests still in flight after the {seconds:.0f} s drain timeout",
                            flush=True,
                        )
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if code == 0:
        print(f"stopped (tritonserver exit code {rc})", flush=True)
    return code

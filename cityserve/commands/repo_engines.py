"""``cityserve repo engines``: build (or reuse) a repository's TensorRT engines for this GPU, write the
repository to serve."""

from __future__ import annotations

import argparse
import json

from ..errors import ConfigError

DESCRIPTION = """\
Make a model repository servable on this GPU: every tensorrt_plan model's engine is built from its
<version>/model.onnx for the GPU and TensorRT version of this machine (engines run only where they were
built) and kept in --cache under a key of the ONNX graph's sha256, the GPU name and compute capability,
the TensorRT version, the precision and the batch profile (min 1, opt the largest preferred batch,
max the config's max_batch_size). A cached engine whose record (engine.json beside it) matches is
reused, so a restarted container starts in seconds; anything else is built again.

--out receives the repository to serve: symlinks into REPO (which is never written to, so it may be
read-only) with each model.plan pointing into the cache. A repository without TensorRT models (cpu,
gpu-onnx) is mirrored as it is. The GPU container's entrypoint runs this before tritonserver
(deploy/docker/entrypoint-gpu.sh); docs/deployment.md explains the whole path.

Without TensorRT or a GPU the command exits with code 3 (--list works anywhere)."""

EPILOG = """\
examples:
  cityserve repo build --target gpu-trt --model models/demo --out repo-trt/
  cityserve repo engines repo-trt/ --list                  # the engines it would build, no GPU needed
  cityserve repo engines repo-trt/ --cache /engines --out /tmp/served
  tritonserver --model-repository /tmp/served --model-control-mode none
"""


def register(sub, groups) -> None:
    p = groups["repo"].add_parser(
        "engines",
        help="build or reuse a repository's TensorRT engines for this GPU",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("repo", metavar="REPO", help="a Triton model repository (e.g. from `repo build --target gpu-trt`)")
    p.add_argument("--cache", metavar="DIR", help="where engines are kept between runs (a volume in a container)")
    p.add_argument("--out", metavar="DIR", help="the repository to serve (written; outside REPO)")
    p.add_argument(
        "--precision", choices=("fp16", "bf16", "fp32"), default="fp16", help="engine precision (default fp16)"
    )
    p.add_argument("--device", type=int, default=0, help="CUDA device to build on (default 0)")
    p.add_argument("--list", action="store_true", help="print the TensorRT models and their profiles, build nothing")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..serving.engine_cache import prepare_engines, tensorrt_models

    if args.list:
        specs = tensorrt_models(args.repo, args.precision)
        rows = [
            {
                "model": s.model,
                "version": s.version,
                "onnx": str(s.onnx),
                "onnx_sha256": s.onnx_sha256,
                "precision": s.precision,
                "profile": {"min_batch": s.profile.min, "opt_batch": s.profile.opt, "max_batch": s.profile.max},
            }
            for s in specs
        ]
        print(json.dumps(rows, indent=2))
        return 0
    if not args.cache or not args.out:
        raise ConfigError("--cache and --out are required unless --list is given")
    results = prepare_engines(args.repo, args.cache, args.out, precision=args.precision, device=args.device)
    built = sum(not r.reused for r in results)
    print(f"{len(results)} engine(s): {built} built, {len(results) - built} reused; serve {args.out}")
    return 0

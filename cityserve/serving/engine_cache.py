"""TensorRT engines of a model repository, built for the GPU they run on and kept in a cache volume.

Why this module exists: a plan runs only on the GPU architecture and the TensorRT version that built
it (docs/tensorrt.md), so an image cannot ship one; each node builds its own when its container
starts. A SPADE engine takes minutes to build, so engines live in a cache directory (a volume) under a
key of everything that makes a plan valid: the ONNX graph's sha256, the GPU name and compute
capability, the TensorRT version, the precision and the batch profile. A cached plan whose record
(``engine.json`` beside it) matches the key and whose sha256 still matches is reused; anything else is
built again.

The served repository is a tree of symlinks into the source repository (which may be read-only, e.g. a
Kubernetes volume), with each TensorRT model's ``<version>/model.plan`` pointing into the cache; neither
the source nor the cached plans are ever modified in place. TensorRT models are found by their
``config.pbtxt`` (``platform: "tensorrt_plan"``), parsed as Triton's own ``ModelConfig``, so any
repository works, not only one written by ``cityserve repo build``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Optional

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from ..cards import now_iso, sha256_file
from ..errors import ConfigError, UnavailableError
from ..export.tensorrt_build import PRECISIONS, BatchProfile, build_engine
from ..gpu import cuda_backend, import_tensorrt

RECORD = "engine.json"
PLAN = "model.plan"
KEY_FORMAT = "cityserve-engine/1"


@dataclasses.dataclass(frozen=True)
class GpuTarget:
    """What a plan is tied to: the GPU (name and compute capability) and the TensorRT version."""

    gpu: str
    compute_capability: str
    tensorrt: str

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9.]+", "-", f"{self.gpu}-sm{self.compute_capability}-trt{self.tensorrt}").strip("-")


@dataclasses.dataclass(frozen=True)
class EngineSpec:
    """One TensorRT model of a repository: the graph to build and the profile its config asks for."""

    model: str
    version: str
    onnx: Path
    onnx_sha256: str
    profile: BatchProfile
    precision: str = "fp16"

    def record(self, target: GpuTarget) -> dict:
        """Everything a plan is valid for; its digest is the cache key."""
        return {
            "format": KEY_FORMAT,
            "onnx_sha256": self.onnx_sha256,
            "gpu": target.gpu,
            "compute_capability": target.compute_capability,
            "tensorrt": target.tensorrt,
            "precision": self.precision,
            "profile": {"min_batch": self.profile.min, "opt_batch": self.profile.opt, "max_batch": self.profile.max},
        }

    def key(self, target: GpuTarget) -> str:
        return hashlib.sha256(json.dumps(self.record(target), sort_keys=True).encode()).hexdigest()[:20]


@dataclasses.dataclass(frozen=True)
class EngineResult:
    spec: EngineSpec
    plan: Path  # the cached plan
    reused: bool
    seconds: float  # build time (0 when reused)


# ---- the repository's TensorRT models ---------------------------------------------------------------


def read_config(path: Path) -> model_config_pb2.ModelConfig:
    try:
        return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    except (text_format.ParseError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} is not a Triton model configuration: {str(e).splitlines()[0]}") from None


def batch_profile_of(config: model_config_pb2.ModelConfig) -> BatchProfile:
    """min 1, opt the largest preferred batch size (else min(4, max)), max the config's max_batch_size:
    the same profile ``cityserve repo build`` writes into build_engines.sh."""
    top = max(1, int(config.max_batch_size))
    preferred = [int(s) for s in config.dynamic_batching.preferred_batch_size if 1 <= int(s) <= top]
    return BatchProfile(1, max(preferred) if preferred else min(4, top), top)


def tensorrt_models(repo: Path, precision: str = "fp16") -> list[EngineSpec]:
    """Every ``tensorrt_plan`` model of ``repo`` with an ``<version>/model.onnx`` to build from."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    repo = Path(repo)
    if not repo.is_dir():
        raise ConfigError(f"model repository {repo} does not exist")
    specs = []
    for cfg_path in sorted(repo.glob("*/config.pbtxt")):
        config = read_config(cfg_path)
        if config.platform != "tensorrt_plan" and config.backend != "tensorrt":
            continue
        model_dir = cfg_path.parent
        versions = sorted(
            (d for d in model_dir.iterdir() if d.is_dir() and d.name.isdigit()), key=lambda d: int(d.name)
        )
        if not versions:
            raise ConfigError(f"TensorRT model {model_dir.name} in {repo} has no version directory (e.g. 1/)")
        for vdir in versions:
            onnx_path = vdir / "model.onnx"
            if not onnx_path.is_file():
                raise ConfigError(
                    f"TensorRT model {model_dir.name} version {vdir.name} has no model.onnx to build its engine "
                    f"from ({onnx_path}); build the repository with `cityserve repo build --target gpu-trt`"
                )
            specs.append(
                EngineSpec(
                    model_dir.name, vdir.name, onnx_path, sha256_file(onnx_path), batch_profile_of(config), precision
                )
            )
    return specs


# ---- the GPU and TensorRT of this machine -----------------------------------------------------------


def server_tensorrt_version() -> Optional[str]:
    """The version of the ``libnvinfer.so.10`` the dynamic loader finds (the one Triton's TensorRT
    backend loads in an NGC container), as MAJOR.MINOR.PATCH; None where there is none. Asked in a
    child process so that this process's own TensorRT (perhaps a pip wheel) is not the one answering."""
    probe = "import ctypes; print(ctypes.CDLL('libnvinfer.so.10').getInferLibVersion())"
    try:
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = out.stdout.strip()
    if out.returncode != 0 or not text.isdigit():
        return None
    v = int(text)  # TensorRT 10: MAJOR * 10000 + MINOR * 100 + PATCH
    return f"{v // 10000}.{(v // 100) % 100}.{v % 100}" if v >= 100000 else None


def same_release(a: str, b: str) -> bool:
    """'10.4.0' and '10.4.0.26' are the same release; '10.4.0' and '10.5.0' are not."""
    pa, pb = a.split("."), b.split(".")
    n = min(len(pa), len(pb), 3)
    return pa[:n] == pb[:n]


def detect_target(device: int = 0) -> GpuTarget:
    """This machine's GPU and TensorRT; UnavailableError (exit 3) naming what is missing. Refuses a
    Python TensorRT whose release differs from the server's libnvinfer: its plans would not load."""
    server = server_tensorrt_version()
    trt = import_tensorrt()
    if server is not None and not same_release(server, trt.__version__):
        raise UnavailableError(
            f"the Python TensorRT is {trt.__version__} but the server's libnvinfer is {server}: Triton would "
            f"refuse its plans; install tensorrt-cu12=={server} (in the image: the TENSORRT_VERSION build arg)"
        )
    info = cuda_backend(device).device_info()
    return GpuTarget(info["gpu"], info["compute_capability"], trt.__version__)


# ---- building and reusing -------------------------------------------------------------------------

Builder = Callable[[EngineSpec, Path, Path], None]  # (spec, plan path to write, timing cache path)


def tensorrt_builder(device: int = 0) -> Builder:
    """cityserve's TensorRT 10 builder (FP16 with normalization layers pinned to FP32)."""

    def build(spec: EngineSpec, plan: Path, timing_cache: Path) -> None:
        build_engine(
            spec.onnx,
            plan,
            min_batch=spec.profile.min,
            opt_batch=spec.profile.opt,
            max_batch=spec.profile.max,
            precision=spec.precision,
            timing_cache=timing_cache,
            device=device,
        )

    return build


def cached_plan(entry: Path, expected: dict) -> Optional[Path]:
    """The plan in ``entry`` if its record matches ``expected`` and the plan's sha256 its record."""
    plan, record_path = entry / PLAN, entry / RECORD
    if not (plan.is_file() and record_path.is_file()):
        return None
    try:
        record = json.loads(record_path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if any(record.get(k) != v for k, v in expected.items()):
        return None
    return plan if record.get("plan_sha256") == sha256_file(plan) else None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock, so replicas sharing a cache volume build one engine once (where the
    filesystem supports flock; elsewhere the atomic rename below still keeps the cache whole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        with contextlib.suppress(OSError):
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def ensure_engine(
    spec: EngineSpec, cache: Path, target: GpuTarget, build: Builder, log: Callable[[str], None] = print
) -> EngineResult:
    """The cached plan for ``spec`` on ``target``, built first when there is no valid one."""
    expected = spec.record(target)
    key = spec.key(target)
    entry = cache / spec.model / key
    with _locked(cache / spec.model / f".{key}.lock"):
        plan = cached_plan(entry, expected)
        if plan is not None:
            log(
                f"engine {spec.model}: reusing {plan} ({target.gpu}, compute {target.compute_capability}, TensorRT {target.tensorrt})"
            )
            return EngineResult(spec, plan, True, 0.0)
        if entry.exists():
            log(f"engine {spec.model}: {entry} is incomplete or does not match its record; building it again")
            shutil.rmtree(entry)
        tmp = entry.with_name(f".{key}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        log(
            f"engine {spec.model}: building for {target.gpu} (compute {target.compute_capability}, TensorRT {target.tensorrt}) ..."
        )
        started = time.perf_counter()
        try:
            build(spec, tmp / PLAN, cache / f"timing-{target.slug}.cache")
            if not (tmp / PLAN).is_file():
                raise ConfigError(f"the TensorRT build of {spec.onnx} wrote no plan")
            seconds = time.perf_counter() - started
            record = {
                **expected,
                "model": spec.model,
                "onnx": str(spec.onnx),
                "plan_sha256": sha256_file(tmp / PLAN),
                "built": now_iso(),
                "build_seconds": round(seconds, 1),
            }
            (tmp / RECORD).write_text(json.dumps(record, indent=2) + "\n")
            try:
                os.replace(tmp, entry)
            except OSError:  # another replica, on a filesystem without flock, got there first
                if cached_plan(entry, expected) is None:
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log(f"engine {spec.model}: built in {seconds:.1f} s -> {entry / PLAN}")
        return EngineResult(spec, entry / PLAN, False, seconds)


# ---- the served repository ------------------------------------------------------------------------


def link_tree(src: Path, dest: Path, replace: dict[Path, Path]) -> None:
    """``dest`` mirrors ``src`` with directories made and files symlinked to their resolved sources;
    ``replace`` maps paths under ``dest`` to what they should link to instead (or add)."""
    for root, dirs, files in os.walk(src):
        rel = Path(root).relative_to(src)
        (dest / rel).mkdir(parents=True, exist_ok=True)
        dirs.sort()
        for name in sorted(files):
            target = dest / rel / name
            if target not in replace:
                os.symlink((Path(root) / name).resolve(), target)
    for target, source in replace.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(Path(source).resolve(), target)


def prepare_engines(
    repo: Path,
    cache: Path,
    out: Path,
    *,
    target: Optional[GpuTarget] = None,
    build: Optional[Builder] = None,
    precision: str = "fp16",
    device: int = 0,
    log: Callable[[str], None] = print,
) -> list[EngineResult]:
    """Build or reuse the engine of every TensorRT model of ``repo`` in ``cache`` and write ``out``: the
    repository to serve. Without TensorRT models ``out`` simply mirrors ``repo`` (nothing needs a GPU)."""
    repo, cache, out = Path(repo).resolve(), Path(cache).resolve(), Path(out).resolve()
    if out == repo or repo in out.parents or out in repo.parents:
        raise ConfigError(f"--out {out} must be outside the repository {repo} (and not contain it)")
    specs = tensorrt_models(repo, precision)
    results = []
    if specs:
        target = target or detect_target(device)
        build = build or tensorrt_builder(device)
        results = [ensure_engine(spec, cache, target, build, log) for spec in specs]
    else:
        log(f"no TensorRT models in {repo}: nothing to build")
    if out.exists():
        if not out.is_dir() or (any(out.iterdir()) and not (out / ".cityserve-served").is_file()):
            raise ConfigError(f"--out {out} exists and is not a served repository written by this command")
        shutil.rmtree(out)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        link_tree(repo, tmp, {tmp / r.spec.model / r.spec.version / PLAN: r.plan for r in results})
        (tmp / ".cityserve-served").write_text(f"served copy of {repo}; engines from {cache}\n")
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return results


__all__ = [
    "EngineResult",
    "EngineSpec",
    "GpuTarget",
    "batch_profile_of",
    "detect_target",
    "ensure_engine",
    "prepare_engines",
    "same_release",
    "server_tensorrt_version",
    "tensorrt_models",
]

"""``render.onnx`` -> ``render.plan``: a TensorRT 10 FP16 engine, with the risky layers kept in FP32.

Everything that can be decided without TensorRT is decided here in plain Python and tested on CPU
machines: the optimization profile (batch min/opt/max from flags, else the card), the input shapes
of that profile, which ONNX nodes are pinned to FP32 (the precision report's flagged layers plus
every normalization node), and how TensorRT layers map back to ONNX nodes. ``build_engine`` then
drives TensorRT (imported lazily): ONNX parser, ``BuilderFlag.FP16``, the profile, a timing cache
that is reused and saved, ``layer.precision`` + ``set_output_type`` + ``OBEY_PRECISION_CONSTRAINTS``,
``build_serialized_network``; it writes a build log and a card beside the plan recording the
TensorRT version, GPU and compute capability (a plan runs only where it was built).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Optional, Union

import onnx

from .. import gpu
from ..cards import CARD_SUFFIX, ModelCard, atomic_write_bytes, command_line, now_iso, sha256_file
from ..errors import ConfigError
from .onnx_export import card_from_onnx, describe_io, relative_weights
from .opcheck import check_tensorrt_ops
from .precision_report import PrecisionReport, fp32_node_selection

DEFAULT_BATCH = (1, 4, 8)  # min, opt, max
PRECISIONS = ("fp16", "fp32", "bf16")


@dataclasses.dataclass(frozen=True)
class BatchProfile:
    min: int
    opt: int
    max: int

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.opt <= self.max:
            raise ConfigError(
                f"batch profile must satisfy 1 <= min <= opt <= max; got min {self.min}, opt {self.opt}, max {self.max}"
            )


def batch_profile(
    card: Optional[ModelCard] = None,
    min_batch: Optional[int] = None,
    opt_batch: Optional[int] = None,
    max_batch: Optional[int] = None,
) -> BatchProfile:
    """Flags win; else the card's ``extra["tensorrt"]["profile"]`` ({min_batch, opt_batch, max_batch}),
    else its ``extra["serving"]["max_batch_size"]``; else 1 / 4 / 8. Unset opt = min(4, max) kept
    within [min, max]; unset min = 1; unset max = max(8, opt, min)."""
    src: dict[str, Any] = {}
    if card is not None:
        prof = (card.extra.get("tensorrt") or {}).get("profile") or {}
        src = {k: prof.get(k) for k in ("min_batch", "opt_batch", "max_batch")}
        serving_max = (card.extra.get("serving") or {}).get("max_batch_size")
        if src.get("max_batch") is None and serving_max:
            src["max_batch"] = serving_max
    lo = min_batch if min_batch is not None else src.get("min_batch")
    opt = opt_batch if opt_batch is not None else src.get("opt_batch")
    hi = max_batch if max_batch is not None else src.get("max_batch")
    lo = int(lo) if lo is not None else 1
    if hi is None:
        hi = max(DEFAULT_BATCH[2], int(opt) if opt is not None else 0, lo)
    hi = int(hi)
    if opt is None:
        opt = min(max(DEFAULT_BATCH[1], lo), hi)
    return BatchProfile(lo, int(opt), hi)


def profile_shapes(
    io: Union[onnx.ModelProto, dict[str, Any]], profile: BatchProfile
) -> dict[str, tuple[tuple, tuple, tuple]]:
    """{input: (min_shape, opt_shape, max_shape)}: the batch axis from the profile, the rest fixed.

    ``io`` is the ONNX model or the ``extra["onnx"]`` section of an exported card."""
    desc = describe_io(io) if isinstance(io, onnx.ModelProto) else io
    shapes = {}
    for inp in desc["inputs"]:
        dims = list(inp["shape"])
        if not dims or not isinstance(dims[0], str):
            raise ConfigError(
                f"input {inp['name']!r} has no dynamic batch axis (shape {dims}); export with `cityserve export onnx`"
            )
        fixed = dims[1:]
        if any(not isinstance(d, int) or d <= 0 for d in fixed):
            raise ConfigError(f"input {inp['name']!r} has dynamic non-batch dims {dims}: H and W must be fixed")
        shapes[inp["name"]] = tuple((b, *fixed) for b in (profile.min, profile.opt, profile.max))
    return shapes


def onnx_node_of_layer(layer_name: str, layer_metadata: str, node_names: set[str]) -> Optional[str]:
    """The ONNX node a TensorRT layer came from. TensorRT 10's ONNX parser records it in the layer's
    metadata (``[ONNX Layer: <node>]``) and names layers after their node (extra layers of one node
    get suffixes such as ``<node>_1`` or ``<node>/...``)."""
    meta = layer_metadata or ""
    tag = "[ONNX Layer: "
    if tag in meta:
        node = meta.split(tag, 1)[1].split("]", 1)[0].strip()
        if node in node_names:
            return node
    if layer_name in node_names:
        return layer_name
    best = None
    for n in node_names:
        if (
            layer_name.startswith(n)
            and len(layer_name) > len(n)
            and layer_name[len(n)] in "_/.:[ "
            and (best is None or len(n) > len(best))
        ):
            best = n
    return best


def fp32_pins(onnx_model: onnx.ModelProto, report: Optional[PrecisionReport]) -> dict[str, list[str]]:
    """ONNX nodes to keep in FP32: {"flagged": ..., "normalization": ...} (see precision_report)."""
    return fp32_node_selection(onnx_model, report)


def find_report(onnx_path: Path, explicit: Optional[Union[str, os.PathLike]]) -> Optional[Path]:
    """``--fp32-layers-from`` if given, else ``<stem>.precision.json`` beside the ONNX file if present."""
    if explicit:
        p = Path(explicit)
        if not p.is_file():
            raise ConfigError(f"precision report {p} does not exist")
        return p
    beside = onnx_path.with_name(onnx_path.stem + ".precision.json")
    return beside if beside.is_file() else None


@dataclasses.dataclass
class BuildPlan:
    """What a build will do, decided without TensorRT (``--dry-run`` prints it)."""

    onnx_path: Path
    plan_path: Path
    card: ModelCard
    profile: BatchProfile
    shapes: dict[str, tuple[tuple, tuple, tuple]]
    precision: str
    fp32_flagged: list[str]
    fp32_normalization: list[str]
    report_path: Optional[Path]
    timing_cache: Optional[Path]

    @property
    def fp32_nodes(self) -> list[str]:
        return sorted(set(self.fp32_flagged) | set(self.fp32_normalization))

    def describe(self) -> str:
        lines = [
            f"onnx      {self.onnx_path}",
            f"plan      {self.plan_path}",
            f"precision {self.precision}",
            f"batch     min {self.profile.min}, opt {self.profile.opt}, max {self.profile.max}",
        ]
        for name, (a, b, c) in self.shapes.items():
            lines.append(f"  {name}: min {list(a)} opt {list(b)} max {list(c)}")
        lines.append(
            f"fp32      {len(self.fp32_flagged)} node(s) from "
            f"{self.report_path or 'no precision report'} + {len(self.fp32_normalization)} normalization node(s)"
        )
        for n in self.fp32_flagged[:20]:
            lines.append(f"  {n}")
        if self.timing_cache:
            lines.append(f"timing    {self.timing_cache}")
        return "\n".join(lines)


def plan_build(
    onnx_path: Union[str, os.PathLike],
    plan_path: Union[str, os.PathLike],
    *,
    min_batch: Optional[int] = None,
    opt_batch: Optional[int] = None,
    max_batch: Optional[int] = None,
    precision: str = "fp16",
    timing_cache: Optional[Union[str, os.PathLike]] = None,
    fp32_layers_from: Optional[Union[str, os.PathLike]] = None,
    check_ops: bool = True,
) -> BuildPlan:
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ConfigError(f"ONNX file {onnx_path} does not exist")
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    card = card_from_onnx(onnx_path)
    model = onnx.load(str(onnx_path), load_external_data=False)
    if check_ops:
        check_tensorrt_ops(model)
    profile = batch_profile(card, min_batch, opt_batch, max_batch)
    shapes = profile_shapes(model, profile)
    report_path = find_report(onnx_path, fp32_layers_from)
    report = PrecisionReport.load(report_path) if report_path else None
    sel = fp32_pins(model, report) if precision != "fp32" else {"flagged": [], "normalization": []}
    return BuildPlan(
        onnx_path,
        Path(plan_path),
        card,
        profile,
        shapes,
        precision,
        sel["flagged"],
        sel["normalization"],
        report_path,
        Path(timing_cache) if timing_cache else None,
    )


# ---- TensorRT ------------------------------------------------------------------------------------


def _file_logger(trt, path: Path, verbose: bool):
    class FileLogger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.f = open(path, "a", encoding="utf-8")
            self.errors: list[str] = []

        def log(self, severity, msg):
            level = int(severity)  # INTERNAL_ERROR 0, ERROR 1, WARNING 2, INFO 3, VERBOSE 4
            if level <= int(trt.ILogger.Severity.ERROR):
                self.errors.append(msg)
            if level <= int(trt.ILogger.Severity.INFO) or verbose:
                self.f.write(f"[{_dt.datetime.now().strftime('%H:%M:%S')}] {str(severity).split('.')[-1]}: {msg}\n")
                self.f.flush()

    return FileLogger()


def _layer_float_outputs(trt, layer) -> bool:
    floats = {trt.float32, trt.float16, getattr(trt, "bfloat16", trt.float16)}
    return layer.num_outputs > 0 and all(layer.get_output(i).dtype in floats for i in range(layer.num_outputs))


def pin_layers(trt, network, nodes: Iterable[str]) -> list[str]:
    """Set ``precision`` and output types to FP32 on every layer made from one of ``nodes``."""
    wanted = set(nodes)
    pinned = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        node = onnx_node_of_layer(layer.name, getattr(layer, "metadata", "") or "", wanted)
        if node is None or not _layer_float_outputs(trt, layer):
            continue
        layer.precision = trt.float32
        for j in range(layer.num_outputs):
            layer.set_output_type(j, trt.float32)
        pinned.append(layer.name)
    return pinned


def build_engine(
    onnx_path: Union[str, os.PathLike],
    plan_path: Union[str, os.PathLike],
    *,
    min_batch: Optional[int] = None,
    opt_batch: Optional[int] = None,
    max_batch: Optional[int] = None,
    precision: str = "fp16",
    timing_cache: Optional[Union[str, os.PathLike]] = None,
    fp32_layers_from: Optional[Union[str, os.PathLike]] = None,
    workspace_gib: Optional[float] = None,
    log_path: Optional[Union[str, os.PathLike]] = None,
    verbose: bool = False,
    device: int = 0,
) -> Path:
    """Build and write the plan; returns its path. Card beside it: ``<plan stem>.card.json``."""
    plan = plan_build(
        onnx_path,
        plan_path,
        min_batch=min_batch,
        opt_batch=opt_batch,
        max_batch=max_batch,
        precision=precision,
        timing_cache=timing_cache,
        fp32_layers_from=fp32_layers_from,
    )
    trt = gpu.import_tensorrt()
    device_info = gpu.cuda_backend(device).device_info()
    plan_path = plan.plan_path
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    log_path = Path(log_path) if log_path else plan_path.with_name(plan_path.name + ".build.log")
    log_path.write_text(
        f"cityserve TensorRT build {now_iso()}\n{command_line()}\nTensorRT {trt.__version__}, "
        f"{device_info['gpu']} (compute {device_info['compute_capability']})\n{plan.describe()}\n"
    )
    logger = _file_logger(trt, log_path, verbose)

    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(plan.onnx_path)):
        errs = []
        for i in range(parser.num_errors):
            e = parser.get_error(i)
            node = e.node_name() if hasattr(e, "node_name") else e.node()
            errs.append(f"node {node}: {e.desc()}")
        raise ConfigError(f"TensorRT's ONNX parser rejected {plan.onnx_path}: {'; '.join(errs[:3])} (log: {log_path})")

    config = builder.create_builder_config()
    if workspace_gib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "bf16":
        config.set_flag(trt.BuilderFlag.BF16)
    pinned: list[str] = []
    if precision != "fp32" and plan.fp32_nodes:
        pinned = pin_layers(trt, network, plan.fp32_nodes)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in plan.shapes.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)

    cache_bytes = plan.timing_cache.read_bytes() if plan.timing_cache and plan.timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ConfigError(
            f"TensorRT failed to build {plan.onnx_path}: {'; '.join(logger.errors[-3:])} (log: {log_path})"
        )
    atomic_write_bytes(plan_path, bytes(serialized))
    if plan.timing_cache:
        atomic_write_bytes(plan.timing_cache, bytes(config.get_timing_cache().serialize()))

    info = {
        "file": plan_path.name,
        "sha256": sha256_file(plan_path),
        "tensorrt": trt.__version__,
        "gpu": device_info["gpu"],
        "compute_capability": device_info["compute_capability"],
        "precision": precision,
        "profile": {"min_batch": plan.profile.min, "opt_batch": plan.profile.opt, "max_batch": plan.profile.max},
        "shapes": {k: [list(s) for s in v] for k, v in plan.shapes.items()},
        "fp32_nodes": plan.fp32_nodes,
        "fp32_layers_pinned": len(pinned),
        "precision_report": str(plan.report_path) if plan.report_path else None,
        "timing_cache": str(plan.timing_cache) if plan.timing_cache else None,
        "build_log": log_path.name,
        "onnx_file": os.path.relpath(plan.onnx_path.resolve(), plan_path.parent.resolve()),
        "onnx_sha256": sha256_file(plan.onnx_path),
        "built": now_iso(),
        "command": command_line(),
    }
    write_plan_card(plan.card, plan_path, info)
    return plan_path


def write_plan_card(card: ModelCard, plan_path: Path, info: dict[str, Any]) -> Path:
    """The card beside the plan: the ONNX card plus ``extra["tensorrt"]``."""
    out = ModelCard.from_dict(card.to_dict())
    out.weights = relative_weights(card, plan_path.parent) if card.path is not None else card.weights
    out.extra = dict(card.extra)
    out.extra["tensorrt"] = info
    return out.save(plan_path.with_name(plan_path.stem + CARD_SUFFIX))

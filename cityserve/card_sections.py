"""Typed sections of a model card: how the model is served (``ServingOptions``) and the files made
from its weights (``Artifact``: the exported ONNX graph, the AOT package, the TensorRT engine).

A card is a user's file, so every value is checked here with its bounds before anything uses it: a
``max_batch_size`` of 1e9 or an ``instances`` of -1 is a one-line ``ConfigError`` (exit 2), never a
value written into a Triton config. The same class holds the defaults and the command line's
overrides (``cityserve repo build --max-batch-size ...``), so every source of an option is checked
the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Optional

from .errors import ConfigError

DEFAULT_MAX_BATCH_SIZE = 8
DEFAULT_MAX_PIXELS = 4096 * 4096  # 16.7 Mpx: a 2048x1024 Cityscapes frame is 2.1 Mpx
DEFAULT_MAX_BYTES = 64 << 20
DEFAULT_QUEUE_DELAY_US = 2000
# The fused label2photo gets no dynamic batching unless a queue delay is asked for: on 2 cores its
# engine is no faster per image at batch 2-8 than at batch 1, and with Triton's dynamic batcher in
# front of it single requests at times waited ~500 ms in the queue (perf_analyzer at concurrency 1, p99
# against median: 578 / 76 ms with it, 91 / 76 ms without; benchmarks/results/cpu-amd-epyc-2c/
# 2026-12-04-triton-overhead-batched.md and 2026-12-04-triton-overhead.md).
FUSED_QUEUE_DELAY_US = None

# Bounds of the integer options: (smallest, largest). Beyond them a value is a mistake or an attack.
SERVING_BOUNDS: dict[str, tuple[int, int]] = {
    "max_batch_size": (1, 1024),
    "max_queue_delay_us": (0, 60_000_000),  # one minute
    "instances": (1, 64),
    "max_pixels": (1, 1 << 28),  # 268 Mpx
    "max_bytes": (1, 1 << 30),  # 1 GiB
    "png_compression": (0, 9),
    "intra_op_threads": (0, 1024),
}
SERVING_CHOICES: dict[str, tuple[str, ...]] = {
    "onnx_accelerator": ("none", "tensorrt"),
    "cpu_engine": ("auto", "aot", "onnxruntime", "openvino"),
    "cpu_precision": ("auto", "fp32", "bf16"),
    "latent": ("random", "zero"),
    "pipeline": ("fused", "ensemble"),
}


def check_int(value: Any, what: str, lo: int, hi: int) -> int:
    """``value`` as an int within [lo, hi], or a ConfigError naming ``what`` (no floats, no bools)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{what} must be an integer {lo}..{hi}, not {value!r:.40}")
    if not lo <= value <= hi:
        raise ConfigError(f"{what} must be {lo}..{hi}, not {value}")
    return value


@dataclasses.dataclass
class ServingOptions:
    """How a model is served. Defaults come from here, then the card's ``serving`` section, then
    explicit overrides (the command line); ``from_sources`` merges them."""

    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    preferred_batch_sizes: Optional[list[int]] = None  # None: powers of two from 2 up to max_batch_size
    # None: the model's own default, DEFAULT_QUEUE_DELAY_US for the ensembles' models, no dynamic
    # batching for the cpu target's fused label2photo (FUSED_QUEUE_DELAY_US)
    max_queue_delay_us: Optional[int] = None
    instances: int = 1
    max_pixels: int = DEFAULT_MAX_PIXELS  # PNGs with more pixels are refused from their header
    max_bytes: int = DEFAULT_MAX_BYTES
    png_compression: int = 1
    intra_op_threads: int = 0  # cpu target: threads per instance (0: onnxruntime's default; all cores for AOT)
    warmup: bool = True
    onnx_accelerator: str = "none"  # gpu-onnx: "tensorrt" puts onnxruntime's TensorRT EP (FP16) first
    nearest_colors: bool = False  # decode_png snaps unknown colors to the nearest palette color
    cpu_engine: str = (
        "auto"  # cpu target render model: "aot" (AOTInductor package), "onnxruntime", "openvino", or "auto"
    )
    cpu_precision: str = (
        "auto"  # cpu / openvino targets, OpenVINO models: "bf16" where the CPU has it ("auto"), or "fp32"
    )
    trust_aot: bool = False  # load an AOT package not compiled on this machine (native code): command line only
    # the latent label2photo gives a generator that takes one (VAE style, OASIS noise): "random" (a new
    # photo per request) or "zero" (the mean style: the same label map always gives the same photo)
    latent: str = "random"
    # cpu target label2photo: "fused" (decode + prepare + render + encode in ONE python model: no hops
    # between python stubs) or "ensemble" (decode_png -> [prepare_render] -> render -> encode_png); the
    # gpu and openvino targets always chain an ensemble (their render models run on Triton's own backends)
    pipeline: str = "fused"

    def __post_init__(self) -> None:
        for name, (lo, hi) in SERVING_BOUNDS.items():
            if name == "max_queue_delay_us" and self.max_queue_delay_us is None:
                continue  # the model's own default
            check_int(getattr(self, name), name, lo, hi)
        for name, choices in SERVING_CHOICES.items():
            value = getattr(self, name)
            if value not in choices:
                raise ConfigError(f"{name} must be {' or '.join(map(repr, choices))}, not {value!r:.40}")
        for name in ("warmup", "nearest_colors", "trust_aot"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, not {getattr(self, name)!r:.40}")
        if self.preferred_batch_sizes is not None:
            sizes = self.preferred_batch_sizes
            if not isinstance(sizes, (list, tuple)) or len(sizes) > 64:
                raise ConfigError(f"preferred_batch_sizes must be a list of at most 64 sizes, not {sizes!r:.40}")
            self.preferred_batch_sizes = [
                check_int(s, "a preferred batch size", 1, self.max_batch_size) for s in sizes
            ] or None

    def queue_delay_us(self, default: Optional[int] = DEFAULT_QUEUE_DELAY_US) -> Optional[int]:
        """The dynamic batcher's queue delay: the one asked for, else the model's ``default`` (None: no
        dynamic batching)."""
        return default if self.max_queue_delay_us is None else self.max_queue_delay_us

    @property
    def preferred(self) -> list[int]:
        """The dynamic batcher's preferred sizes: the given ones, else powers of two up to the max."""
        if self.preferred_batch_sizes:
            return sorted(set(self.preferred_batch_sizes))
        sizes, s = [], 2
        while s <= self.max_batch_size:
            sizes.append(s)
            s *= 2
        if self.max_batch_size > 1 and self.max_batch_size not in sizes:
            sizes.append(self.max_batch_size)
        return sizes

    @classmethod
    def fields(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    @classmethod
    def from_sources(cls, *sources: Optional[Mapping[str, Any]], where: str = "serving options") -> ServingOptions:
        """Defaults, then each mapping in turn (``None`` values are unset); unknown names are errors."""
        values: dict[str, Any] = {}
        for source in sources:
            if source is None:
                continue
            if not isinstance(source, Mapping):
                raise ConfigError(f"{where}: serving options are a mapping of names to values, not {source!r:.40}")
            unknown = set(source) - cls.fields()
            if unknown:
                raise ConfigError(
                    f"{where}: unknown serving option(s) {', '.join(sorted(map(str, unknown)))}; "
                    f"known: {', '.join(sorted(cls.fields()))}"
                )
            values.update({k: v for k, v in source.items() if v is not None})
        try:
            return cls(**values)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None


# ---- artifacts: files made from the card's weights ------------------------------------------------


def check_relative_file(value: Any, what: str) -> str:
    """``value`` as a file name inside the card's folder: relative, no ``..``, no drive or backslash."""
    if not isinstance(value, str) or len(value) > 255:
        raise ConfigError(f"{what} must be a file name inside the card's folder, not {value!r:.60}")
    if value.startswith(("/", "\\", "~")) or "\\" in value or ":" in value or "\0" in value:
        raise ConfigError(f"{what} {value!r:.60} must be a relative path inside the card's folder (not absolute)")
    if any(part == ".." for part in value.split("/")):
        raise ConfigError(f"{what} {value!r:.60} must stay inside the card's folder (no '..')")
    return value


def check_sha256(value: Any, what: str, required: bool) -> str:
    """A sha256 hex digest (64 lowercase hex characters); "" only where none is ``required``."""
    if value == "" and not required:
        return ""
    if not isinstance(value, str) or len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        shown = "empty" if value in ("", None) else f"{value!r:.20}"
        raise ConfigError(f"{what} must be the file's sha256 (64 hex characters), not {shown}")
    return value


@dataclasses.dataclass
class Artifact:
    """A file made from the card's weights and kept in the card's folder (an exported graph, a compiled
    package, an engine): its name, its sha256 (checked before it is used) and, for kinds this version
    does not know, what the tool that made it recorded (``details``)."""

    file: str = ""
    sha256: str = ""
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.file:
            check_relative_file(self.file, f"{type(self).__name__} file")
            check_sha256(self.sha256, f"{type(self).__name__} sha256 of {self.file}", required=True)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        details = d.pop("details", {})
        return {**d, **details}


# The SPADE inference forms an exported graph can take (``cityserve.export.forms`` applies them); named
# here, torch-free, because every card that records an export is checked against them.
SPADE_FORMS = ("plain", "fused", "boundary", "table")


@dataclasses.dataclass
class OnnxArtifact(Artifact):
    """``cityserve export onnx``: the render / segment graph and its tensors."""

    opset: int = 17
    fused: bool = False
    form: str = "plain"  # plain | fused | boundary (cityserve.export.forms)
    inputs: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # {name, dtype, shape}
    outputs: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    source_card: Optional[str] = None
    exported: str = ""
    command: str = ""
    torch: str = ""
    onnx: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.fused and self.form == "plain":  # a card written before forms had names
            self.form = "fused"
        if self.form not in SPADE_FORMS:
            raise ConfigError(f"OnnxArtifact form must be one of {', '.join(SPADE_FORMS)}, not {self.form!r:.40}")


@dataclasses.dataclass
class AotArtifact(Artifact):
    """``cityserve export aot``: an AOTInductor package (native code: see docs) and what it needs to run."""

    dtype: str = "fp32"
    torch: str = ""
    vec_isa: str = ""
    cpu_flags_required: list[str] = dataclasses.field(default_factory=list)
    built_on: str = ""
    built: str = ""
    compile_seconds: float = 0.0
    fused: bool = False
    inductor_configs: dict[str, Any] = dataclasses.field(default_factory=dict)
    precision: str = ""
    layers_fp32: list[str] = dataclasses.field(default_factory=list)
    inputs: list[str] = dataclasses.field(default_factory=list)  # positional order of the compiled graph
    accuracy: Optional[dict[str, Any]] = None


@dataclasses.dataclass
class TensorrtArtifact(Artifact):
    """``cityserve export tensorrt``: an engine (valid for one GPU architecture and TensorRT version), or
    before one is built only the batch ``profile`` to build it with."""

    tensorrt: str = ""
    gpu: str = ""
    compute_capability: str = ""
    precision: str = ""
    profile: dict[str, int] = dataclasses.field(default_factory=dict)  # {min_batch, opt_batch, max_batch}
    shapes: dict[str, Any] = dataclasses.field(default_factory=dict)
    fp32_nodes: list[str] = dataclasses.field(default_factory=list)
    fp32_layers_pinned: int = 0
    precision_report: Optional[str] = None
    timing_cache: Optional[str] = None
    build_log: str = ""
    onnx_file: str = ""
    onnx_sha256: str = ""
    built: str = ""
    command: str = ""


ARTIFACT_KINDS: dict[str, type[Artifact]] = {"onnx": OnnxArtifact, "aot": AotArtifact, "tensorrt": TensorrtArtifact}


def artifact_from_dict(kind: str, d: Any, where: str) -> Artifact:
    """The typed artifact of ``kind`` (a plain ``Artifact`` with ``details`` for kinds not known here)."""
    if not isinstance(d, Mapping):
        raise ConfigError(f"{where}: artifact {kind!r} must be a mapping, not {type(d).__name__}")
    cls = ARTIFACT_KINDS.get(kind, Artifact)
    known = {f.name for f in dataclasses.fields(cls)} - {"details"}
    values = {k: v for k, v in d.items() if k in known}
    rest = {k: v for k, v in d.items() if k not in known}
    if rest and cls is not Artifact:
        raise ConfigError(f"{where}: artifact {kind!r} has unknown field(s) {', '.join(sorted(map(str, rest)))}")
    try:
        return cls(**values, details=dict(rest)) if cls is Artifact else cls(**values)
    except ConfigError as e:
        raise ConfigError(f"{where}: artifact {kind!r}: {e}") from None
    except TypeError as e:
        raise ConfigError(f"{where}: artifact {kind!r}: {e}") from None


def serving_to_dict(options: ServingOptions) -> dict[str, Any]:
    """The options that differ from the defaults: what a card records."""
    default = ServingOptions()
    return {
        f.name: getattr(options, f.name)
        for f in dataclasses.fields(options)
        if getattr(options, f.name) != getattr(default, f.name)
    }


LAYOUT_NOISE_MODES = ("const", "random", "none")


@dataclasses.dataclass
class LayoutSection:
    """How a layout generator (kind "layout") turns a seed into a label map: z ~ N(0, 1) of ``z_dim``
    drawn from the seed, ``truncation_psi`` toward the mean w (1: none), the synthesis noise (``const``:
    the same layout for the same seed), argmax, specks under ``min_area`` pixels merged into their
    neighbours, instance maps from ``instance_connectivity``-connected components of the thing classes."""

    z_dim: int
    truncation_psi: float = 1.0
    noise_mode: str = "const"
    min_area: int = 0
    instance_connectivity: int = 8

    def __post_init__(self) -> None:
        check_int(self.z_dim, "layout.z_dim", 1, 4096)
        check_int(self.min_area, "layout.min_area", 0, 1 << 20)
        if self.instance_connectivity not in (4, 8) or isinstance(self.instance_connectivity, bool):
            raise ConfigError(f"layout.instance_connectivity must be 4 or 8, not {self.instance_connectivity!r:.20}")
        psi = self.truncation_psi
        if isinstance(psi, bool) or not isinstance(psi, (int, float)) or not 0.0 <= float(psi) <= 2.0:
            raise ConfigError(f"layout.truncation_psi must be a number 0..2, not {psi!r:.20}")
        self.truncation_psi = float(psi)
        if self.noise_mode not in LAYOUT_NOISE_MODES:
            raise ConfigError(
                f"layout.noise_mode must be one of {', '.join(LAYOUT_NOISE_MODES)}, not {self.noise_mode!r:.20}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Any, where: str = "layout") -> LayoutSection:
        if not isinstance(d, Mapping):
            raise ConfigError(f"{where} must be a mapping")
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"{where} has unknown field(s) {', '.join(sorted(map(str, unknown)))[:200]}")
        try:
            return cls(**d)
        except TypeError as e:
            raise ConfigError(f"{where}: {e}") from None

"""Typed sections of a model card: how the model is served (``ServingOptions``).

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
    "cpu_engine": ("auto", "aot", "onnxruntime"),
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
    max_queue_delay_us: int = 2000
    instances: int = 1
    max_pixels: int = DEFAULT_MAX_PIXELS  # PNGs with more pixels are refused from their header
    max_bytes: int = DEFAULT_MAX_BYTES
    png_compression: int = 1
    intra_op_threads: int = 0  # cpu target: threads per instance (0: onnxruntime's default; all cores for AOT)
    warmup: bool = True
    onnx_accelerator: str = "none"  # gpu-onnx: "tensorrt" puts onnxruntime's TensorRT EP (FP16) first
    nearest_colors: bool = False  # decode_png snaps unknown colors to the nearest palette color
    cpu_engine: str = "auto"  # cpu target render model: "aot" (AOTInductor package), "onnxruntime", or "auto"

    def __post_init__(self) -> None:
        for name, (lo, hi) in SERVING_BOUNDS.items():
            check_int(getattr(self, name), name, lo, hi)
        for name, choices in SERVING_CHOICES.items():
            value = getattr(self, name)
            if value not in choices:
                raise ConfigError(f"{name} must be {' or '.join(map(repr, choices))}, not {value!r:.40}")
        for name in ("warmup", "nearest_colors"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, not {getattr(self, name)!r:.40}")
        if self.preferred_batch_sizes is not None:
            sizes = self.preferred_batch_sizes
            if not isinstance(sizes, (list, tuple)) or len(sizes) > 64:
                raise ConfigError(f"preferred_batch_sizes must be a list of at most 64 sizes, not {sizes!r:.40}")
            self.preferred_batch_sizes = [
                check_int(s, "a preferred batch size", 1, self.max_batch_size) for s in sizes
            ] or None

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

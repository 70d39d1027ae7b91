"""The OpenVINO engine: the card's exported ``render.onnx`` / ``segment.onnx`` compiled by OpenVINO for the CPU.

OpenVINO runs the same graph file the onnxruntime engine runs (found or exported the same way,
``onnxruntime_engine.find_or_export``), compiled with ``core.compile_model``. Precision: ``bf16`` sets
``INFERENCE_PRECISION_HINT=bf16`` (OpenVINO's CPU plugin then runs convolutions and matmuls in BF16),
``fp32`` sets ``f32`` (OpenVINO defaults to BF16 on CPUs that have it, so FP32 must be asked for), and
``auto`` picks BF16 where the device lists it in ``OPTIMIZATION_CAPABILITIES`` (AVX-512 BF16 / AMX)
and FP32 elsewhere.

Accuracy (tests/test_openvino.py): on the shipped demo generator BF16 stays within the budget (max <= 8,
mean <= 1 uint8 level vs the FP32 model) with every layer in BF16, so no layer is kept in FP32. Per-node
FP32 islands are not offered: OpenVINO 2026.4.1's CPU plugin ignored the ``disable_fp16_compression``
and ``precise`` runtime markings under the bf16 hint (the output did not change by one level with every
op marked), so the hint is all or nothing here; a model that breaks the budget runs ``fp32``.

This module needs only openvino and numpy at import time (the Triton python model uses it); openvino
comes with ``pip install 'cityserve[openvino]'`` and a missing one is the one-line error that says so.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ..errors import ConfigError, UnavailableError
from ..extras import require

PRECISIONS = ("auto", "fp32", "bf16")
HINTS = {"fp32": "f32", "bf16": "bf16"}
DEVICES = ("CPU",)


def openvino(what: str = "--engine openvino") -> Any:
    """The ``openvino`` module, or the one-line error naming ``pip install 'cityserve[openvino]'``."""
    return require("openvino", "openvino", what)


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r:.40}")
    return precision


def supports_bf16(core: Any, device: str = "CPU") -> bool:
    """Whether OpenVINO itself runs BF16 natively on ``device`` (its ``OPTIMIZATION_CAPABILITIES``)."""
    return "BF16" in core.get_property(device, "OPTIMIZATION_CAPABILITIES")


def resolve_precision(precision: str, core: Any, device: str = "CPU") -> str:
    """``auto`` -> ``bf16`` where the device supports it, else ``fp32``; an explicit ``bf16`` on a
    device without it is an ``UnavailableError`` (it would be emulated, slower than FP32)."""
    check_precision(precision)
    native = supports_bf16(core, device)
    if precision == "auto":
        return "bf16" if native else "fp32"
    if precision == "bf16" and not native:
        raise UnavailableError(
            f"OpenVINO's {device} plugin has no native BF16 on this machine (no AVX-512 BF16 / AMX); use --precision fp32"
        )
    return precision


def compile_onnx(
    onnx_path: Union[str, os.PathLike],
    precision: str = "auto",
    threads: Optional[int] = None,
    device: str = "CPU",
    what: str = "--engine openvino",
) -> tuple[Any, str]:
    """(compiled model, the precision it runs in) for an ONNX graph file; ``threads`` 0 / None:
    OpenVINO's choice."""
    ov = openvino(what)
    device = str(device).upper()
    if device not in DEVICES:
        raise ConfigError(f"the OpenVINO engine runs on {', '.join(DEVICES)} here, not {device!r:.20}")
    if threads is not None and int(threads) < 0:
        raise ConfigError(f"threads must be >= 0 (0 = OpenVINO's default), not {threads}")
    core = ov.Core()
    chosen = resolve_precision(precision, core, device)
    model = core.read_model(str(onnx_path))
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": HINTS[chosen], "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return core.compile_model(model, device, config), chosen


def port_name(port: Any) -> str:
    """The graph's own name of an input / output (OpenVINO also attaches the names of the tensors it
    folded into it, such as ``/Cast_2_output_0``)."""
    return min(port.get_names(), key=lambda n: ("/" in n, len(n), n))


class OpenVINOEngine:
    """Runs the card's render (or segment) graph with OpenVINO. Options: ``precision`` (auto | fp32 |
    bf16), ``threads`` (0 / None: OpenVINO's choice), ``onnx_path`` (a graph file instead of the
    card's), ``device`` (cpu)."""

    def __init__(
        self,
        card: Any,
        precision: str = "auto",
        threads: Optional[int] = None,
        onnx_path: Optional[Union[str, os.PathLike]] = None,
        device: str = "cpu",
    ):
        openvino()  # the missing-extra error before any export work
        from .onnxruntime_engine import find_or_export  # the same graph file (exports need torch)

        self.card = card
        self.onnx_path = Path(onnx_path) if onnx_path else find_or_export(card)
        if not self.onnx_path.is_file():
            raise ConfigError(f"ONNX file {self.onnx_path} does not exist")
        self.compiled, self.precision = compile_onnx(self.onnx_path, check_precision(precision), threads, device)
        self.request = self.compiled.create_infer_request()
        self.input_names = [port_name(p) for p in self.compiled.inputs]
        self.output_names = [port_name(p) for p in self.compiled.outputs]

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise ConfigError(
                f"engine inputs missing: {', '.join(missing)} (the graph takes {', '.join(self.input_names)})"
            )
        result = self.request.infer({n: feeds[n] for n in self.input_names})
        # the request's output buffer is reused by the next call: hand out a copy
        return np.array(result[self.compiled.outputs[0]])

"""The onnxruntime engine: the exported ``render.onnx`` on CPU (default) or the CUDA / TensorRT EPs.

The graph is found, in order: ``onnx_path``; the file an exported card names (``artifacts["onnx"]``); an
export cached per weights sha256 (``<card dir>/.cityserve-onnx/`` if writable, else
``$CITYSERVE_CACHE`` or ``~/.cache/cityserve/onnx``), exported on first use. A cached file whose card
does not match the weights' sha256 or whose own sha256 changed is exported again.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import onnxruntime as ort

from ..cards import CARD_SUFFIX, ModelCard, file_stem, load_card, sha256_file
from ..errors import ConfigError, UnavailableError
from ..export.forms import resolve_form
from ..export.onnx_export import export_onnx, graph_stem

OPT_LEVELS = ("disable", "basic", "extended", "all")
PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}


def resolve_providers(providers: Optional[Union[str, Sequence[Any]]]) -> list[Any]:
    """Provider names (aliases cpu/cuda/tensorrt allowed, or (name, options) pairs) -> what ORT takes.

    CPU is always appended as the fallback; asking for a provider this onnxruntime build lacks is an
    ``UnavailableError`` (not a silent CPU run)."""
    if providers is None:
        return ["CPUExecutionProvider"]
    if isinstance(providers, str):
        providers = [p.strip() for p in providers.split(",") if p.strip()]
    available = set(ort.get_available_providers())
    out: list[Any] = []
    for p in providers:
        name, opts = p if isinstance(p, (tuple, list)) else (p, None)
        name = PROVIDER_ALIASES.get(str(name).lower(), name)
        if name not in available:
            raise UnavailableError(
                f"onnxruntime execution provider {name} is not available here (available: "
                f"{', '.join(sorted(available))}); install onnxruntime-gpu on a CUDA machine"
            )
        out.append((name, opts) if opts else name)
    if "CPUExecutionProvider" not in [o if isinstance(o, str) else o[0] for o in out]:
        out.append("CPUExecutionProvider")
    return out


def cache_root(card: ModelCard) -> Path:
    env = os.environ.get("CITYSERVE_CACHE")
    if env:
        return Path(env) / "onnx"
    d = card.directory / ".cityserve-onnx"
    try:
        d.mkdir(parents=True, exist_ok=True)
        probe = d / f".probe{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        return d
    except OSError:
        return Path.home() / ".cache" / "cityserve" / "onnx"


def _exported_ok(onnx_path: Path, card: ModelCard) -> bool:
    beside = onnx_path.with_name(onnx_path.stem + CARD_SUFFIX)
    if not (onnx_path.is_file() and beside.is_file()):
        return False
    try:
        c = load_card(beside)
    except Exception:
        return False
    info = c.artifacts.get("onnx")
    return info is not None and c.sha256 == card.sha256 and info.sha256 == sha256_file(onnx_path)


def find_or_export(card: ModelCard, fused: bool = False, opset: int = 17, form: Optional[str] = None) -> Path:
    """The card's render.onnx: the one an exported card names (when no other form is asked for), else a
    cached export of the form asked for (made if needed)."""
    asked = form is not None or fused
    form = resolve_form(form, fused)
    info = card.artifacts.get("onnx")
    if info and info.file and card.path is not None and (not asked or getattr(info, "form", "plain") == form):
        p = card.directory / info.file
        if p.is_file():
            return p

    tag = f"{file_stem(card.name)}-{(card.sha256 or 'nosha')[:16]}-opset{opset}{'' if form == 'plain' else '-' + form}"
    out = cache_root(card) / tag
    path = out / f"{graph_stem(card)}.onnx"
    if not _exported_ok(path, card):
        path = export_onnx(card, out, opset=opset, form=form)
    return path


class OnnxRuntimeEngine:
    """Runs the render graph with onnxruntime. Options: ``providers`` (default CPU; "cuda",
    "tensorrt" or full names), ``threads`` (intra-op threads; default: onnxruntime's choice),
    ``graph_optimization_level`` (disable | basic | extended | all), ``onnx_path``."""

    def __init__(
        self,
        card: ModelCard,
        providers: Optional[Union[str, Sequence[Any]]] = None,
        threads: Optional[int] = None,
        graph_optimization_level: str = "all",
        onnx_path: Optional[Union[str, os.PathLike]] = None,
        fused: bool = False,
        inter_threads: Optional[int] = None,
        form: Optional[str] = None,
    ):
        self.card = card
        if graph_optimization_level not in OPT_LEVELS:
            raise ConfigError(
                f"graph_optimization_level must be one of {', '.join(OPT_LEVELS)}, not {graph_optimization_level!r}"
            )
        if threads is not None and int(threads) < 0:
            raise ConfigError(f"threads must be >= 0 (0 = onnxruntime's default), not {threads}")
        self.onnx_path = Path(onnx_path) if onnx_path else find_or_export(card, fused=fused, form=form)
        if not self.onnx_path.is_file():
            raise ConfigError(f"ONNX file {self.onnx_path} does not exist")
        so = ort.SessionOptions()
        so.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[graph_optimization_level]
        if threads:
            so.intra_op_num_threads = int(threads)
        if inter_threads:
            so.inter_op_num_threads = int(inter_threads)
        so.log_severity_level = 3
        self.session_options = so
        self.providers = resolve_providers(providers)
        self.session = ort.InferenceSession(str(self.onnx_path), sess_options=so, providers=self.providers)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise ConfigError(
                f"engine inputs missing: {', '.join(missing)} (the graph takes {', '.join(self.input_names)})"
            )
        return self.session.run(self.output_names[:1], {n: feeds[n] for n in self.input_names})[0]

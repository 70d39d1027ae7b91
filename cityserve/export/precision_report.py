"""Which layers can't run in FP16 (or BF16)? Measured on the CPU, before any GPU is involved.

The model runs twice on the same input: in float32, and in the low precision (weights and every
layer's floating inputs cast down). Forward hooks record, per module:

- ``max_abs``: the largest float32 activation. Above 65504 it overflows FP16 (inf, then NaN).
- ``local_rel_error``: the layer alone in low precision, fed the float32 run's inputs cast down,
  vs its float32 output (``||a - b|| / ||a||``). This names the layer that loses precision itself,
  not every layer downstream of it.
- ``rel_error``: the whole low-precision run at this layer's output (accumulated error).

A module is *flagged* when its activation overflows the low-precision range or its local error
exceeds the threshold. The TensorRT build (``tensorrt_build.py``) pins the ONNX nodes of flagged
modules, plus every normalization node, to FP32. Module names are relative to the exported graph's
root, which is also how ``torch.onnx.export`` scopes node names (``generator.up_0.conv_1`` ->
``/generator/up_0/conv_1/Conv``), so ``onnx_nodes_of`` maps one to the other.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import nn

from ..cards import atomic_write_bytes, now_iso
from ..errors import ConfigError
from .onnx_export import build_graph, example_inputs, positional_args

DTYPES = {"float16": torch.float16, "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
DEFAULT_THRESHOLD = {torch.float16: 1e-2, torch.bfloat16: 5e-2}
NORMALIZATION_OPS = (
    "BatchNormalization",
    "InstanceNormalization",
    "LayerNormalization",
    "GroupNormalization",
    "MeanVarianceNormalization",
    "LpNormalization",
    "RMSNormalization",
)
NORMALIZATION_MODULES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
_BIG = 1e30  # JSON has no inf


def resolve_dtype(dtype: Union[str, torch.dtype]) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float16, torch.bfloat16):
            raise ConfigError(f"precision report dtype must be float16 or bfloat16, not {dtype}")
        return dtype
    if dtype not in DTYPES:
        raise ConfigError(f"precision {dtype!r} unknown; choose from {', '.join(DTYPES)}")
    return DTYPES[dtype]


@dataclasses.dataclass
class LayerStat:
    name: str
    type: str
    leaf: bool
    max_abs: float  # output, float32 run
    input_max_abs: Optional[float]
    local_rel_error: Optional[float]  # leaves only
    rel_error: Optional[float]
    overflow: bool
    flagged: bool
    reason: str = ""
    scope: str = ""  # the ONNX node-name prefix of this module's nodes (see module_scope)


@dataclasses.dataclass
class PrecisionReport:
    dtype: str
    threshold: float
    range_max: float  # largest finite value of dtype
    layers: list[LayerStat]
    output_rel_error: float
    output_max_diff: float  # in output units (uint8 levels for images)
    model: str = ""
    created: str = ""

    @property
    def flagged(self) -> list[str]:
        return [l.name for l in self.layers if l.flagged]

    @property
    def normalization_layers(self) -> list[str]:
        return [l.name for l in self.layers if l.reason == "normalization"]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["flagged"] = self.flagged
        return d

    def save(self, path: Union[str, os.PathLike]) -> Path:
        path = Path(path)
        atomic_write_bytes(path, (json.dumps(self.to_dict(), indent=1) + "\n").encode())
        return path

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> PrecisionReport:
        p = Path(path)
        try:
            d = json.loads(p.read_text())
            layers = [LayerStat(**l) for l in d.pop("layers")]
            d.pop("flagged", None)
            return cls(layers=layers, **d)
        except FileNotFoundError:
            raise ConfigError(f"precision report {p} does not exist") from None
        except (json.JSONDecodeError, TypeError, KeyError) as e:
            raise ConfigError(f"{p} is not a cityserve precision report: {e}") from None


def _first_float(out: Any) -> Optional[torch.Tensor]:
    if torch.is_tensor(out):
        return out if out.is_floating_point() else None
    if isinstance(out, (tuple, list)):
        for o in out:
            t = _first_float(o)
            if t is not None:
                return t
    return None


def _cast_floats(args: Iterable[Any], dtype: torch.dtype) -> tuple:
    return tuple(a.to(dtype) if torch.is_tensor(a) and a.is_floating_point() else a for a in args)


def _rel(ref: torch.Tensor, got: torch.Tensor) -> float:
    ref, got = ref.double(), got.double()
    if not torch.isfinite(got).all():
        return _BIG
    den = ref.norm().item()
    num = (ref - got).norm().item()
    return num / den if den > 0 else (0.0 if num == 0 else _BIG)


def precision_report(
    module: nn.Module,
    inputs: Union[tuple, dict[str, torch.Tensor]],
    dtype: Union[str, torch.dtype] = "float16",
    threshold: Optional[float] = None,
    model_name: str = "",
) -> PrecisionReport:
    """Run ``module`` in float32 and in ``dtype`` on ``inputs`` and report every named submodule."""
    dt = resolve_dtype(dtype)
    threshold = DEFAULT_THRESHOLD[dt] if threshold is None else float(threshold)
    rmax = float(torch.finfo(dt).max)
    args = tuple(inputs.values()) if isinstance(inputs, dict) else tuple(inputs)
    ref_model = module.eval()
    named = {n: m for n, m in ref_model.named_modules() if n}
    leaves = {n for n, m in named.items() if not any(True for _ in m.children())}

    ref_out: dict[str, list[torch.Tensor]] = {n: [] for n in named}
    max_abs: dict[str, float] = {n: 0.0 for n in named}
    in_max: dict[str, float] = {}
    local: dict[str, float] = {}
    low_copies: dict[str, nn.Module] = {}

    called: set[str] = set()

    def ref_hook(name):
        def hook(m, inp, out):
            called.add(name)
            t = _first_float(out)
            if t is None:
                return
            ref_out[name].append(t.detach())
            if t.numel():
                max_abs[name] = max(max_abs[name], float(t.detach().abs().max()))
            for a in inp:
                if torch.is_tensor(a) and a.is_floating_point() and a.numel():
                    in_max[name] = max(in_max.get(name, 0.0), float(a.detach().abs().max()))
            if name in leaves:
                if name not in low_copies:
                    low = copy.deepcopy(m).to(dt)
                    low._forward_hooks.clear()  # the copy would otherwise call this hook again
                    low_copies[name] = low
                with torch.no_grad():
                    lo = _first_float(low_copies[name](*_cast_floats(inp, dt)))
                if lo is not None:
                    local[name] = max(local.get(name, 0.0), _rel(t, lo.float()))

        return hook

    handles = [m.register_forward_hook(ref_hook(n)) for n, m in named.items()]
    try:
        with torch.no_grad():
            ref_final = ref_model(*args)
    finally:
        for h in handles:
            h.remove()

    low_model = copy.deepcopy(ref_model).to(dt)
    low_named = dict(low_model.named_modules())
    low_out: dict[str, list[torch.Tensor]] = {n: [] for n in named}

    def pre_hook(m, inp):
        return _cast_floats(inp, dt)

    def low_hook(name):
        def hook(m, inp, out):
            t = _first_float(out)
            if t is not None:
                low_out[name].append(t.detach().float())

        return hook

    handles = []
    for n in named:
        if n in leaves:
            handles.append(low_named[n].register_forward_pre_hook(pre_hook))
        handles.append(low_named[n].register_forward_hook(low_hook(n)))
    try:
        with torch.no_grad():
            low_final = low_model(*_cast_floats(args, dt))
    finally:
        for h in handles:
            h.remove()

    layers = []
    for n, m in named.items():
        if not ref_out[n]:
            continue
        refs, lows = ref_out[n], low_out[n]
        rel = max((_rel(r, l) for r, l in zip(refs, lows)), default=None)
        loc = local.get(n)
        out_over = max_abs[n] > rmax
        in_over = in_max.get(n, 0.0) > rmax
        reason = ""
        if out_over:
            reason = f"output |x| up to {max_abs[n]:.4g} > {dtype_name(dt)} max {rmax:.6g}"
        elif in_over:
            reason = f"input |x| up to {in_max[n]:.4g} > {dtype_name(dt)} max {rmax:.6g}"
        elif loc is not None and loc > threshold:
            reason = f"local relative error {loc:.3g} > {threshold:g}"
        elif isinstance(m, NORMALIZATION_MODULES):
            reason = "normalization"
        overflow = out_over or in_over
        flagged = bool(overflow or (loc is not None and loc > threshold))
        layers.append(
            LayerStat(
                n,
                type(m).__name__,
                n in leaves,
                max_abs[n],
                in_max.get(n),
                loc,
                rel,
                overflow,
                flagged,
                reason,
                module_scope(n, called),
            )
        )

    rf, lf = _first_tensor(ref_final), _first_tensor(low_final)
    if rf.is_floating_point() or lf.is_floating_point():
        out_rel = _rel(rf.float(), lf.float())
    else:
        out_rel = _rel(rf.double(), lf.double())
    out_diff = float((rf.double() - lf.double()).abs().max()) if rf.numel() else 0.0
    return PrecisionReport(dtype_name(dt), threshold, rmax, layers, out_rel, out_diff, model_name, now_iso())


def _first_tensor(out: Any) -> torch.Tensor:
    if torch.is_tensor(out):
        return out
    return next(o for o in out if torch.is_tensor(o))


def dtype_name(dt: torch.dtype) -> str:
    return {torch.float16: "float16", torch.bfloat16: "bfloat16"}[dt]


def report_for_card(
    card,
    dtype: Union[str, torch.dtype] = "float16",
    threshold: Optional[float] = None,
    fused: bool = False,
    batch: int = 1,
) -> PrecisionReport:
    """The report of the card's exported graph (same module tree as ``export_onnx``, random inputs)."""
    module, input_names, _ = build_graph(card, fused=fused)
    feeds = example_inputs(card, batch=batch, seed=1)

    return precision_report(
        module, positional_args(module, {n: feeds[n] for n in input_names}), dtype, threshold, card.name
    )


# ---- report -> ONNX nodes -------------------------------------------------------------------------


def _unqualified(qualified: str) -> str:
    """torch.onnx's scope component of a module: its name from the last non-numeric atom
    (``a.mlp_shared.0`` -> ``mlp_shared.0``), as ``torch.onnx.utils._unqualified_variable_name``."""
    atoms = qualified.split(".")
    for i in range(len(atoms) - 1, -1, -1):
        if not atoms[i].isnumeric():
            return ".".join(atoms[i:])
    return qualified


def module_scope(name: str, called: Optional[set[str]] = None) -> str:
    """The node-name prefix torch.onnx.export (TorchScript) gives a module's nodes: one component per
    ancestor whose forward ran (containers such as ModuleList are never called and leave none):
    ``generator.head_0.norm_0.mlp_shared.0`` -> ``/generator/head_0/norm_0/mlp_shared/mlp_shared.0/``."""
    atoms = name.split(".")
    prefixes = [".".join(atoms[: i + 1]) for i in range(len(atoms))]
    comps = [_unqualified(p) for p in prefixes if called is None or p in called or p == name]
    return "/" + "/".join(comps) + "/"


def onnx_nodes_of(onnx_model, scopes: dict[str, str]) -> dict[str, list[str]]:
    """ONNX node names produced by each module ({module: scope}): nodes whose name lies in its scope."""
    names = [n.name for n in onnx_model.graph.node]
    return {m: [n for n in names if n.startswith(scope)] for m, scope in scopes.items()}


def fp32_node_selection(onnx_model, report: Optional[PrecisionReport] = None) -> dict[str, list[str]]:
    """What the TensorRT build pins to FP32: {"flagged": nodes of the report's flagged modules,
    "normalization": every normalization node}. Their union is ``sorted(set(a) | set(b))``."""
    flagged: list[str] = []
    if report is not None:
        scopes = {l.name: l.scope or module_scope(l.name) for l in report.layers if l.flagged}
        by_module = onnx_nodes_of(onnx_model, scopes)
        if scopes and not any(by_module.values()):
            raise ConfigError(
                f"none of the report's flagged layers ({', '.join(list(scopes)[:3])}) has a node in "
                f"this ONNX graph: was the report made for another model (or the --fused form)?"
            )
        for nodes in by_module.values():
            flagged.extend(nodes)
    norms = [n.name for n in onnx_model.graph.node if n.op_type in NORMALIZATION_OPS]
    return {"flagged": sorted(set(flagged)), "normalization": sorted(set(norms))}


def fp32_nodes(onnx_model, report: Optional[PrecisionReport] = None) -> list[str]:
    sel = fp32_node_selection(onnx_model, report)
    return sorted(set(sel["flagged"]) | set(sel["normalization"]))

"""Will TensorRT 10's ONNX parser take this graph? Checked here, on a machine without TensorRT.

An export that only fails on the GPU box, minutes into ``trtexec``, is an export that failed late. The
list of supported op types is ``tensorrt_onnx_ops.txt`` (copied from onnx-tensorrt's
``docs/operators.md``, source and version in its header). Besides op types this checks the restrictions
that bite cityserve's graphs: uint8 only at the network's edges (through a Cast), and Resize modes.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable
from pathlib import Path
from typing import Union

import onnx

from ..errors import ConfigError

OPS_FILE = Path(__file__).with_name("tensorrt_onnx_ops.txt")


class UnsupportedOpError(ConfigError):
    """The graph holds something TensorRT's ONNX parser would reject."""


@dataclasses.dataclass(frozen=True)
class OpList:
    ops: frozenset[str]
    source: str  # the header lines: where the list came from and for which TensorRT version

    def __contains__(self, op_type: str) -> bool:
        return op_type in self.ops


@functools.lru_cache(maxsize=4)
def load_op_list(path: Union[str, Path] = OPS_FILE) -> OpList:
    ops, header = set(), []
    for line in Path(path).read_text().splitlines():
        s = line.strip()
        if not s:
            continue
        if s.startswith("#"):
            header.append(s.lstrip("# "))
            continue
        ops.add(s.split("#", 1)[0].strip())
    if not ops:
        raise ConfigError(f"op list {path} names no operators")
    return OpList(frozenset(ops), " ".join(h for h in header[:6] if h))


@dataclasses.dataclass(frozen=True)
class Problem:
    node: str  # ONNX node name (or tensor name for type problems)
    op_type: str
    why: str

    def __str__(self) -> str:
        return f"node {self.node!r} ({self.op_type}): {self.why}"


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _all_nodes(graph: onnx.GraphProto) -> Iterable[onnx.NodeProto]:
    for node in graph.node:
        yield node
        for a in node.attribute:  # If / Loop / Scan bodies
            if a.type == onnx.AttributeProto.GRAPH:
                yield from _all_nodes(a.g)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for g in a.graphs:
                    yield from _all_nodes(g)


def _uint8_problems(model: onnx.ModelProto) -> list[Problem]:
    """TensorRT takes UINT8 only as a network input/output type: inside the graph a uint8 tensor may
    only be produced by a Cast (feeding an output) or consumed by a Cast (coming from an input)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # shape inference is best effort; op types are still checked
        inferred = model
    g = inferred.graph
    u8 = onnx.TensorProto.UINT8
    uint8 = {
        vi.name for vi in list(g.value_info) + list(g.input) + list(g.output) if vi.type.tensor_type.elem_type == u8
    }
    for node in g.node:  # outputs of Cast(to=uint8) even when shape inference skipped them
        if node.op_type == "Cast" and _attr(node, "to", None) == u8:
            uint8.update(node.output)
    graph_inputs = {i.name for i in g.input}
    problems = []
    for node in g.node:
        if node.op_type == "Cast":
            continue
        for t in node.input:
            if t in uint8:
                problems.append(
                    Problem(
                        node.name,
                        node.op_type,
                        f"reads uint8 tensor {t!r}; TensorRT "
                        "supports uint8 only as a network input/output (Cast it first)",
                    )
                )
        for t in node.output:
            if t in uint8 and t not in graph_inputs:
                problems.append(
                    Problem(
                        node.name,
                        node.op_type,
                        f"produces uint8 tensor {t!r} inside the "
                        "network; only a Cast may produce uint8 (for an output)",
                    )
                )
    return problems


def find_problems(model: onnx.ModelProto, op_list: OpList | None = None) -> list[Problem]:
    """Every node TensorRT 10's ONNX parser would reject, with the reason."""
    op_list = op_list or load_op_list()
    problems = []
    for node in _all_nodes(model.graph):
        if node.domain not in ("", "ai.onnx"):
            problems.append(
                Problem(node.name, f"{node.domain}::{node.op_type}", "custom-domain op (needs a TensorRT plugin)")
            )
            continue
        if node.op_type not in op_list:
            problems.append(Problem(node.name, node.op_type, "op not supported by TensorRT's ONNX parser"))
            continue
        if node.op_type == "Resize":
            mode = _attr(node, "mode", b"nearest")
            mode = mode.decode() if isinstance(mode, bytes) else mode
            if mode not in ("nearest", "linear"):
                problems.append(Problem(node.name, "Resize", f"mode {mode!r} (TensorRT: nearest or linear)"))
            if _attr(node, "antialias", 0):
                problems.append(Problem(node.name, "Resize", "antialias is not supported"))
    problems.extend(_uint8_problems(model))
    return problems


def check_tensorrt_ops(model: Union[onnx.ModelProto, str, Path], op_list: OpList | None = None) -> None:
    """Raise ``UnsupportedOpError`` naming the op and node of the first few problems."""
    where = ""
    if not isinstance(model, onnx.ModelProto):
        where = f"{model}: "
        model = onnx.load(str(model), load_external_data=False)
    op_list = op_list or load_op_list()
    problems = find_problems(model, op_list)
    if problems:
        listed = "; ".join(str(p) for p in problems[:3])
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise UnsupportedOpError(
            f"{where}TensorRT 10 cannot parse this graph: {listed}{more} [op list: {OPS_FILE.name}]"
        )


def op_types(model: onnx.ModelProto) -> set[str]:
    return {n.op_type for n in _all_nodes(model.graph)}

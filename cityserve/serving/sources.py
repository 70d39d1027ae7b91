"""What the repository builder serves: a model card with its exported ONNX graph and the graph's tensors.

``resolve_source`` turns what a user passed (a card, its weights, a directory with one card, or an
exported ``render.onnx`` / ``segment.onnx``) into a ``GraphSource``, exporting the card first if it
has no graph yet. The tensors are read from the graph and held to the tensor contract
(``cityserve.contract``: ``labels`` / ``instances`` [B,1,H,W], ``z`` [B,z_dim], ``image`` [B,H,W,3])
at the card's H and W.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import onnx

from ..cards import CARD_SUFFIX, ModelCard, file_stem, load_card, sha256_file
from ..errors import CheckpointError, ConfigError
from ..export.onnx_export import card_from_onnx, export_onnx
from ..models.registry import graph_tensors

CardSpec = Union[ModelCard, str, os.PathLike]


@dataclasses.dataclass
class GraphSource:
    """A model card with its exported ONNX graph and the graph's tensors."""

    card: ModelCard
    onnx: Path
    inputs: list[dict[str, Any]]  # {name, dtype, shape}: shape[0] is the dynamic batch
    outputs: list[dict[str, Any]]
    plan: Optional[Path] = None  # a TensorRT engine of this graph recorded in the card, if any
    from_onnx: bool = False  # given as an exported .onnx graph (not a card): served as that graph

    @property
    def kind(self) -> str:
        return self.card.kind

    def tensor(self, name: str) -> dict[str, Any]:
        for t in self.inputs + self.outputs:
            if t["name"] == name:
                return t
        raise ConfigError(f"{self.onnx} has no tensor {name!r}")

    @property
    def precision_report(self) -> Optional[Path]:
        """``<stem>.precision.json`` beside the graph (its FP16-flagged layers), if the export wrote one."""
        path = self.onnx.with_name(self.onnx.stem + ".precision.json")
        return path if path.is_file() else None


def graph_io(onnx_path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The graph's inputs (initializers excluded) and outputs as {name, dtype, shape}."""
    model = onnx.load(str(onnx_path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}

    def one(vi) -> dict[str, Any]:
        tt = vi.type.tensor_type
        shape = [
            d.dim_param if d.dim_param else (int(d.dim_value) if d.HasField("dim_value") else "?") for d in tt.shape.dim
        ]
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)).name
        return {"name": vi.name, "dtype": dtype, "shape": shape}

    return ([one(v) for v in model.graph.input if v.name not in inits], [one(v) for v in model.graph.output])


def _is_onnx(spec: CardSpec) -> bool:
    return isinstance(spec, (str, os.PathLike)) and str(spec).endswith(".onnx")


def resolve_source(spec: CardSpec, work_dir: Path) -> GraphSource:
    """A card (exported or not) or an exported ``.onnx`` -> its graph (exported into ``work_dir`` if the
    card has none yet)."""
    if _is_onnx(spec):
        onnx_path = Path(spec).resolve()
        if not onnx_path.is_file():
            raise CheckpointError(f"ONNX graph {onnx_path} does not exist")
        card = card_from_onnx(onnx_path)
    else:
        if isinstance(spec, (str, os.PathLike)) and str(spec).endswith(".plan"):
            spec = Path(spec).with_name(Path(spec).stem + CARD_SUFFIX)
        card = spec if isinstance(spec, ModelCard) else load_card(spec)
        onnx_path = _exported_graph(card)
        if onnx_path is None:
            onnx_path = export_onnx(card, work_dir / file_stem(card.name))
    if card.kind not in ("generator", "segmenter"):
        raise ConfigError(f"card {card.name!r}: kind {card.kind!r} is neither 'generator' nor 'segmenter'")
    inputs, outputs = graph_io(onnx_path)
    plan = None
    trt = card.artifacts.get("tensorrt")
    if trt is not None and trt.file and card.path is not None and (card.directory / trt.file).is_file():
        plan = card.directory / trt.file
    src = GraphSource(card, onnx_path, inputs, outputs, plan, from_onnx=_is_onnx(spec))
    expected_out = "image" if card.kind == "generator" else "labels"
    if [o["name"] for o in outputs] != [expected_out]:
        raise ConfigError(
            f"{onnx_path}: a {card.kind} graph has the single output {expected_out!r}, "
            f"not {[o['name'] for o in outputs]}"
        )
    for t in inputs + outputs:
        t["shape"] = _contract_shape(src, t)
    return src


def _exported_graph(card: ModelCard) -> Optional[Path]:
    """The ONNX graph an exported card names, checked against the sha256 it records; None if none."""
    onnx_info = card.artifacts.get("onnx")
    if onnx_info is None or not onnx_info.file or card.path is None:
        return None
    candidate = card.directory / onnx_info.file
    if not candidate.is_file():
        return None
    if sha256_file(candidate) != onnx_info.sha256:
        raise CheckpointError(f"{candidate} does not match the sha256 its card {card.path.name} records")
    return candidate


def _contract_shape(src: GraphSource, t: dict[str, Any]) -> list:
    """The tensor's shape with the batch axis first and every other axis fixed: the graph's own dims
    where the graph fixes them (they must agree with the card), the tensor contract's
    (``registry.graph_tensors``, from the card's H, W) where the exporter left them symbolic."""
    card = src.card
    inputs, outputs = graph_tensors(card)
    expected = {spec.name: list(spec.dims) for spec in (*inputs, *outputs)}.get(t["name"])
    graph = t["shape"]
    if expected is None or len(graph) != len(expected) + 1:
        raise ConfigError(
            f"{src.onnx}: tensor {t['name']!r} of shape {graph} is not part of the {card.kind} contract "
            f"({', '.join(str(s) for s in (*inputs, *outputs))})"
        )
    out = [graph[0]]
    for g, e in zip(graph[1:], expected):
        if isinstance(g, int) and g > 0 and g != e:
            raise ConfigError(
                f"{src.onnx}: tensor {t['name']!r} has shape {graph} but card {card.name!r} "
                f"says {card.height}x{card.width} (expected [B, {', '.join(map(str, expected))}])"
            )
        out.append(e)
    return out

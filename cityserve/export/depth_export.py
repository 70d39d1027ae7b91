"""Depth-aware SPADE stages -> ONNX: ``depth.onnx`` (stage 1), ``depth2photo.onnx`` (stage 2) and the
chained ``label2depth2photo.onnx``, in ``cityserve.contract``'s terms (``cityserve.models.depth_render``).

Each graph is written as ``render.onnx`` is (``onnx_export``: TorchScript export with a dynamic batch,
contract output shapes, the checker, the TensorRT op check, the card inside and beside the file); the
card beside it keeps the stage's ``depth`` section (stage, normalisation), and the chain's card adds the
stage-1 card it was built with. ``verify_depth_onnx`` is the parity check in onnxruntime.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from .. import contract
from ..card_sections import OnnxArtifact
from ..cards import CARD_SUFFIX, ModelCard, atomic_write_bytes, command_line, load_card, now_iso, sha256_file
from ..data.depth import LogDepth, card_depth
from ..errors import ConfigError
from ..models.depth_render import DepthGraph, LabelToDepthToPhoto, PhotoFromDepthGraph
from ..models.registry import build_from_card, config_from_card
from .onnx_export import (
    DEFAULT_OPSET,
    METADATA_CARD_KEY,
    compare_images,
    describe_io,
    label_dtype,
    set_output_shapes,
    torch_to_onnx_bytes,
)
from .opcheck import check_tensorrt_ops

GRAPHS = ("depth", "depth2photo", "label2depth2photo")


def _as_card(card: Union[ModelCard, str, os.PathLike]) -> ModelCard:
    return card if isinstance(card, ModelCard) else load_card(card)


def _stage_graph(card: ModelCard, want: str) -> nn.Module:
    stage, norm = card_depth(card)
    if stage != want:
        raise ConfigError(f"model card {card.path or card.name}: a {stage} stage, not {want}")
    cfg = config_from_card(card)
    G = build_from_card(card, inference=True)
    cls = DepthGraph if stage == "depth" else PhotoFromDepthGraph
    return cls(G, cfg.num_classes, not cfg.no_instance, norm).eval()


def depth_graph_from_card(card: Union[ModelCard, str, os.PathLike]) -> DepthGraph:
    """Stage 1's card as ``labels [+ instances] -> depth`` (metres), weights loaded, eval mode."""
    return _stage_graph(_as_card(card), "depth")


def photo_graph_from_card(card: Union[ModelCard, str, os.PathLike]) -> PhotoFromDepthGraph:
    """Stage 2's card as ``labels [+ instances] + depth -> image``, weights loaded, eval mode."""
    return _stage_graph(_as_card(card), "photo-from-depth")


def chain_graph(depth_card, photo_card) -> LabelToDepthToPhoto:
    """Both stages as one graph; their label sets and sizes must agree."""
    d, p = _as_card(depth_card), _as_card(photo_card)
    if (d.height, d.width) != (p.height, p.width):
        raise ConfigError(f"the stages differ in size: depth {d.height}x{d.width}, photo {p.height}x{p.width}")
    if d.label_set != p.label_set:
        raise ConfigError("the stages were trained on different label sets")
    return LabelToDepthToPhoto(depth_graph_from_card(d), photo_graph_from_card(p)).eval()


def graph_names(graph: nn.Module) -> tuple[list[str], list[str]]:
    """(inputs, outputs) of a depth-aware graph, in its forward order."""
    inputs = [contract.LABELS] + ([contract.INSTANCES] if graph.use_instance else [])
    if isinstance(graph, DepthGraph):
        return inputs, [contract.DEPTH]
    if isinstance(graph, PhotoFromDepthGraph):
        return inputs + [contract.DEPTH], [contract.IMAGE]
    return inputs, [contract.IMAGE, contract.DEPTH]


def example_depth_inputs(
    graph: nn.Module, height: int, width: int, batch: int = 2, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Valid inputs: random ids, blocky instance ids, depths spread over 1.5-300 m (log-uniform)."""
    g = torch.Generator().manual_seed(seed)
    nc = graph.depth.num_classes if isinstance(graph, LabelToDepthToPhoto) else graph.num_classes
    feeds = {
        contract.LABELS: torch.randint(0, nc, (batch, 1, height, width), generator=g).to(label_dtype(nc)),
    }
    names, _ = graph_names(graph)
    if contract.INSTANCES in names:
        coarse = torch.randint(0, 40, (batch, 1, -(-height // 8), -(-width // 8)), generator=g, dtype=torch.int32)
        feeds[contract.INSTANCES] = coarse.repeat_interleave(8, 2).repeat_interleave(8, 3)[:, :, :height, :width]
    if contract.DEPTH in names and not isinstance(graph, LabelToDepthToPhoto):
        u = torch.rand(batch, 1, height, width, generator=g)
        feeds[contract.DEPTH] = torch.exp(np.log(1.5) + u * (np.log(300.0) - np.log(1.5))).float()
    return {k: v.contiguous() for k, v in feeds.items()}


def export_depth_onnx(
    graph_name: str,
    card: Union[ModelCard, str, os.PathLike],
    out_dir: Union[str, os.PathLike],
    depth_card: Optional[Union[ModelCard, str, os.PathLike]] = None,
    opset: int = DEFAULT_OPSET,
    check_ops: bool = True,
) -> Path:
    """Write ``{graph_name}.onnx`` and its card in ``out_dir``; returns the .onnx path.

    ``graph_name``: ``depth`` (``card`` is stage 1), ``depth2photo`` (``card`` is stage 2) or
    ``label2depth2photo`` (``card`` is stage 2, ``depth_card`` stage 1).
    """
    if graph_name not in GRAPHS:
        raise ConfigError(f"depth-aware graph must be one of {', '.join(GRAPHS)}, not {graph_name!r}")
    card = _as_card(card)
    if graph_name == "depth":
        graph: nn.Module = depth_graph_from_card(card)
    elif graph_name == "depth2photo":
        graph = photo_graph_from_card(card)
    else:
        if depth_card is None:
            raise ConfigError("label2depth2photo needs the stage-1 depth card too")
        depth_card = _as_card(depth_card)
        graph = chain_graph(depth_card, card)
    inputs, outputs = graph_names(graph)
    h, w = card.height, card.width
    feeds = example_depth_inputs(graph, h, w)
    model = onnx.load_from_string(torch_to_onnx_bytes(graph, feeds, inputs, outputs, opset))
    shapes = {contract.DEPTH: list(contract.depth_spec(h, w).shape)}
    shapes[contract.IMAGE] = list(contract.render_output(h, w).shape)
    set_output_shapes(model, shapes)
    model.producer_name = "cityserve"
    model.doc_string = f"cityserve depth-aware {graph_name} {card.name}, {h}x{w}"
    exported = card.derived(Path(out_dir)) if card.path is not None else ModelCard.from_dict(card.to_dict())
    exported.depth = dict(exported.depth or {}, graph=graph_name)
    if depth_card is not None:
        _, norm1 = card_depth(depth_card)
        exported.depth["depth_model"] = {
            "card": str(depth_card.path) if depth_card.path else None,
            "name": depth_card.name,
            "sha256": depth_card.sha256,
            "normalisation": norm1.to_dict(),
        }
    del model.metadata_props[:]
    for k, v in {METADATA_CARD_KEY: exported.to_json(), "cityserve.graph": graph_name}.items():
        model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model, full_check=True)
    if check_ops:
        check_tensorrt_ops(model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{graph_name}.onnx"
    atomic_write_bytes(path, model.SerializeToString())
    exported.artifacts["onnx"] = OnnxArtifact(
        file=path.name,
        sha256=sha256_file(path),
        opset=opset,
        fused=False,
        **describe_io(model),
        source_card=str(card.path) if card.path else None,
        exported=now_iso(),
        command=command_line(),
        torch=torch.__version__,
        onnx=onnx.__version__,
    )
    exported.save(out / f"{graph_name}{CARD_SUFFIX}")
    return path


def verify_depth_onnx(
    graph: nn.Module, onnx_path: Union[str, os.PathLike], height: int, width: int, batches: tuple[int, ...] = (1, 3)
) -> list[dict[str, float]]:
    """onnxruntime (CPU) vs torch per batch: images as ``compare_images`` counts them, depth as the
    largest relative difference (``depth_max_rel``)."""
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    _, outputs = graph_names(graph)
    results = []
    for b in batches:
        feeds = example_depth_inputs(graph, height, width, batch=b, seed=b)
        with torch.no_grad():
            ref = graph(**feeds)
        ref = ref if isinstance(ref, tuple) else (ref,)
        got = sess.run(outputs, {k: v.numpy() for k, v in feeds.items()})
        stats: dict[str, float] = {"batch": b}
        for name, r, g in zip(outputs, ref, got):
            r = r.numpy()
            if name == contract.DEPTH:
                stats["depth_max_rel"] = float((np.abs(r - g) / r).max())
            else:
                stats.update(compare_images(r, g))
        results.append(stats)
    return results


__all__ = [
    "GRAPHS",
    "LogDepth",
    "chain_graph",
    "depth_graph_from_card",
    "example_depth_inputs",
    "export_depth_onnx",
    "photo_graph_from_card",
    "verify_depth_onnx",
]

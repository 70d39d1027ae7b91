"""Model card -> ``render.onnx`` (generators) or ``segment.onnx`` (segmenters), in ``cityserve.contract``'s terms.

The graph is the whole computation a server needs: for a generator ``labels`` uint8 [B,1,H,W]
(+ ``instances`` int32, + ``z`` float32 [B,z_dim]) -> ``image`` uint8 [B,H,W,3]; for a segmenter
``image`` uint8 [B,H,W,3] -> ``labels`` uint8 [B,1,H,W]. Batch is dynamic, H and W fixed. The model
is built in its inference form (``build_from_card``: spectral norm folded, eval-mode batch norm, which
exports as plain BatchNormalization), the ONNX checker and the TensorRT op check run on the result,
the card travels inside the file (``metadata_props``) and beside it (``render.card.json`` with an
``artifacts["onnx"]`` section), so whoever gets the .onnx knows what it renders.
"""

from __future__ import annotations

import inspect
import io
import json
import os
import warnings
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from .. import contract
from ..card_sections import OnnxArtifact
from ..cards import CARD_SUFFIX, ModelCard, atomic_write_bytes, command_line, load_card, now_iso, sha256_file
from ..errors import ConfigError
from ..models.registry import render_io
from ..models.render import render_graph_from_card
from ..models.segment import segment_graph_from_card
from .forms import apply_form, resolve_form
from .opcheck import check_tensorrt_ops

DEFAULT_OPSET = 17
METADATA_CARD_KEY = "cityserve.card"
DYNAMIC_BATCH = contract.BATCH


def graph_stem(card: ModelCard) -> str:
    return "render" if card.kind == "generator" else "segment"


def label_dtype(num_classes: int) -> torch.dtype:
    """The contract's label dtype as a torch dtype: uint8 ids where they fit, int32 past 256 classes."""
    return getattr(torch, contract.label_dtype(num_classes).name)


def build_graph(
    card: ModelCard, fused: bool = False, form: Optional[str] = None
) -> tuple[nn.Module, list[str], list[str]]:
    """The card's contract module (weights loaded, inference form), its input and output names.

    ``form``: plain | fused | boundary (``cityserve.export.forms``); ``fused=True`` is ``form="fused"``."""
    form = resolve_form(form, fused)
    if card.kind == "generator":
        graph = render_graph_from_card(card, inference=True)
        graph.generator = apply_form(graph.generator, form, card.name, card.arch)
        return graph.eval(), list(graph.input_names), [contract.IMAGE]
    if card.kind == "segmenter":
        if form != "plain":
            raise ConfigError(f"--form {form} applies to SPADE generators; {card.name} is a segmenter")

        return segment_graph_from_card(card).eval(), [contract.IMAGE], [contract.LABELS]
    raise ConfigError(f"model card {card.path}: kind {card.kind!r} is neither 'generator' nor 'segmenter'")


def example_inputs(card: ModelCard, batch: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """Valid inputs of the card's graph (random ids / instances / latent / photo) at ``batch``."""
    g = torch.Generator().manual_seed(seed)
    h, w = card.height, card.width
    if card.kind == "segmenter":
        return {"image": torch.randint(0, 256, (batch, h, w, 3), generator=g, dtype=torch.uint8)}

    io_ = render_io(card)
    feeds = {
        "labels": torch.randint(0, io_.num_classes, (batch, 1, h, w), generator=g, dtype=torch.int64).to(
            label_dtype(io_.num_classes)
        )
    }
    if io_.use_instance:
        # blocky instance ids, so the edge channel has real boundaries
        coarse = torch.randint(0, 40, (batch, 1, max(1, h // 8), max(1, w // 8)), generator=g, dtype=torch.int32)
        feeds["instances"] = coarse.repeat_interleave(8, 2).repeat_interleave(8, 3)[:, :, :h, :w].contiguous()
        if feeds["instances"].shape[2:] != (h, w):
            feeds["instances"] = torch.randint(0, 40, (batch, 1, h, w), generator=g, dtype=torch.int32)
    if io_.z_dim:
        feeds["z"] = torch.randn(batch, io_.z_dim, generator=g)
    return feeds


def _np_dtype_name(elem_type: int) -> str:
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).name


def contract_output_shapes(card: ModelCard) -> dict[str, list]:
    """The graph's outputs as the contract shapes them (batch axis symbolic)."""
    h, w = card.height, card.width
    spec = contract.render_output(h, w) if card.kind == "generator" else contract.segment_output(h, w)
    return {spec.name: list(spec.shape)}


def set_output_shapes(model: onnx.ModelProto, shapes: dict[str, list]) -> None:
    """Write the contract's output shapes into the graph (the exporter's shape inference cannot follow
    H and W through the Resize chain and leaves them symbolic)."""
    for out in model.graph.output:
        if out.name not in shapes:
            continue
        dims = out.type.tensor_type.shape.dim
        del dims[:]
        for d in shapes[out.name]:
            dim = dims.add()
            if isinstance(d, str):
                dim.dim_param = d
            else:
                dim.dim_value = int(d)


def describe_io(model: onnx.ModelProto) -> dict[str, list[dict[str, Any]]]:
    """Inputs/outputs as {name, dtype, shape} with the dynamic batch written as "batch"."""

    def one(vi: onnx.ValueInfoProto) -> dict[str, Any]:
        tt = vi.type.tensor_type
        shape = [d.dim_param if d.dim_param else int(d.dim_value) for d in tt.shape.dim]
        return {"name": vi.name, "dtype": _np_dtype_name(tt.elem_type), "shape": shape}

    inits = {i.name for i in model.graph.initializer}
    return {
        "inputs": [one(v) for v in model.graph.input if v.name not in inits],
        "outputs": [one(v) for v in model.graph.output],
    }


def positional_args(module: nn.Module, inputs: dict[str, Any]) -> tuple:
    """``inputs`` in the order of ``module.forward``'s parameters, None where one is not given
    (RenderGraph takes ``labels, instances=None, z=None``: a VAE model without instances gets
    ``(labels, None, z)``; torch.onnx drops the None)."""
    params = list(inspect.signature(module.forward).parameters)
    unknown = set(inputs) - set(params)
    if unknown:
        raise ConfigError(f"{type(module).__name__}.forward takes no input(s) {', '.join(sorted(unknown))}")
    args = [inputs.get(p) for p in params]
    while args and args[-1] is None:
        args.pop()
    return tuple(args)


def torch_to_onnx_bytes(
    module: nn.Module,
    inputs: dict[str, torch.Tensor],
    input_names: list[str],
    output_names: list[str],
    opset: int = DEFAULT_OPSET,
) -> bytes:
    """TorchScript-based export (``dynamo=False``, see docs/architecture.md) with the batch axis dynamic."""
    if opset < 17:
        raise ConfigError(f"opset {opset} is too old: cityserve exports opset 17 or newer")
    args = positional_args(module, inputs)
    dynamic_axes = {n: {0: DYNAMIC_BATCH} for n in input_names + output_names}
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            buf,
            dynamo=False,
            opset_version=opset,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
        )
    return buf.getvalue()


def export_onnx(
    card: Union[ModelCard, str, os.PathLike],
    out_dir: Union[str, os.PathLike],
    opset: int = DEFAULT_OPSET,
    fused: bool = False,
    check_ops: bool = True,
    example_batch: int = 2,
    form: Optional[str] = None,
) -> Path:
    """Export the card's model; returns the path of ``render.onnx`` / ``segment.onnx`` in ``out_dir``.

    Also writes ``render.card.json`` (or ``segment.card.json``) beside it: the card with
    ``artifacts["onnx"]`` = file, sha256, opset, form (plain | fused | boundary), inputs/outputs (dtype, shape), source card; the
    card names no weights but its source card (``source_card``), which holds them.
    Raises ``UnsupportedOpError`` (naming op and node) if TensorRT 10 could not parse the graph.
    """
    if not isinstance(card, ModelCard):
        card = load_card(card)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = graph_stem(card)
    form = resolve_form(form, fused)
    module, input_names, output_names = build_graph(card, form=form)
    inputs = example_inputs(card, batch=example_batch)
    model = onnx.load_from_string(torch_to_onnx_bytes(module, inputs, input_names, output_names, opset))

    set_output_shapes(model, contract_output_shapes(card))
    model.producer_name = "cityserve"
    model.doc_string = f"cityserve {card.kind} {card.name} ({card.arch}), {card.height}x{card.width}"
    meta = {
        METADATA_CARD_KEY: card.to_json(),
        "cityserve.name": card.name,
        "cityserve.kind": card.kind,
        "cityserve.arch": card.arch,
        "cityserve.height": str(card.height),
        "cityserve.width": str(card.width),
        "cityserve.label_set": card.label_set
        if isinstance(card.label_set, str)
        else card.label_set.get("name", "custom"),
        "cityserve.weights_sha256": card.sha256,
        "cityserve.fused": str(form == "fused").lower(),
        "cityserve.form": form,
    }
    del model.metadata_props[:]
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model, full_check=True)
    if check_ops:
        check_tensorrt_ops(model)

    path = out / f"{stem}.onnx"
    atomic_write_bytes(path, model.SerializeToString())

    exported = card.derived(out) if card.path is not None else ModelCard.from_dict(card.to_dict())
    exported.artifacts["onnx"] = OnnxArtifact(
        file=path.name,
        sha256=sha256_file(path),
        opset=opset,
        fused=form == "fused",
        form=form,
        **describe_io(model),
        source_card=str(card.path) if card.path else None,
        exported=now_iso(),
        command=command_line(),
        torch=torch.__version__,
        onnx=onnx.__version__,
    )
    exported.save(out / f"{stem}{CARD_SUFFIX}")
    return path


def card_from_onnx(path: Union[str, os.PathLike]) -> ModelCard:
    """The card of an exported graph: the card file beside it if present, else the embedded one."""
    p = Path(path)
    beside = p.with_name(p.stem + CARD_SUFFIX)
    if beside.is_file():
        return load_card(beside)
    model = onnx.load(str(p), load_external_data=False)
    meta = {m.key: m.value for m in model.metadata_props}
    if METADATA_CARD_KEY not in meta:
        raise ConfigError(
            f"{p} carries no cityserve model card (metadata {METADATA_CARD_KEY!r}); "
            f"export it with `cityserve export onnx`"
        )

    return ModelCard.from_dict(json.loads(meta[METADATA_CARD_KEY]))


def compare_images(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Parity figures of two uint8 outputs: share of identical values, max and mean |difference|."""
    if a.shape != b.shape:
        raise ConfigError(f"outputs differ in shape: {a.shape} vs {b.shape}")
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return {
        "identical": float((d == 0).mean()),
        "max_diff": int(d.max()) if d.size else 0,
        "mean_diff": float(d.mean()) if d.size else 0.0,
    }


def run_torch(module: nn.Module, feeds: dict[str, np.ndarray], input_names: list[str]) -> np.ndarray:
    """The torch graph on the engine feeds (by name: a VAE model's ``z`` is not its 2nd parameter)."""
    with torch.no_grad():
        return module(**{n: torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in input_names}).numpy()


def verify_onnx(
    card: ModelCard,
    onnx_path: Union[str, os.PathLike],
    batches: tuple[int, ...] = (1, 4),
    fused: bool = False,
    form: Optional[str] = None,
) -> list[dict[str, float]]:
    """onnxruntime (CPU) vs torch on random inputs at each batch size; the parity figures per batch."""
    module, input_names, _ = build_graph(card, fused=fused, form=form)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    results = []
    for b in batches:
        feeds = {k: v.numpy() for k, v in example_inputs(card, batch=b, seed=b).items()}
        ref = run_torch(module, feeds, input_names)
        got = sess.run(None, feeds)[0]
        results.append({"batch": b, **compare_images(ref, got)})
    return results


def parity_ok(stats: dict[str, float], kind: str) -> bool:
    """The issue's bar: images >= 99.9 % identical and none more than 1 level apart; labels identical."""
    if kind == "segmenter":
        return stats["max_diff"] == 0
    return stats["identical"] >= 0.999 and stats["max_diff"] <= 1

"""The models and ensembles a depth-aware SPADE pair gets in a repository (docs/depth.md, issue 17).

A pair is a stage-1 card (``--stage depth``: labels -> depth) and a stage-2 card (``--stage
photo-from-depth``: labels + depth -> photo). Each stage is served as its own exported graph, so stage
2 can also take a depth map the user brings:

* ``depth``: ``depth.onnx``, labels uint8 [B,1,H,W] (+ instances) -> depth float32 [B,1,H,W] metres;
* ``render_from_depth``: ``depth2photo.onnx``, labels (+ instances) + depth -> image uint8 [B,H,W,3];
* ``decode_png_depth`` (label PNG -> ids), ``prepare_depth`` (ids -> instances, where a stage takes
  them), ``encode_depth`` (metres -> 16-bit PNG in millimetres, clipped to 1..65535 mm) and
  ``decode_depth`` (a user's 16-bit mm PNG or ``.npy`` metres -> metres, checked:
  ``depth_codec.py``);
* ensembles ``label2depth`` (LABELS_PNG -> DEPTH_PNG), ``label2depth2photo`` (LABELS_PNG -> PHOTO_PNG
  and the DEPTH_PNG it used) and ``depth2photo`` (LABELS_PNG + the user's DEPTH_PNG -> PHOTO_PNG).

The graphs run on the repository's target as the render graphs do (cpu: onnxruntime, or OpenVINO with
``cpu_engine="openvino"``, in the python backend; gpu-onnx / gpu-trt / openvino: Triton's own
backends), their configs checked against the graphs. One pair per repository.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Union

import numpy as np

from .. import contract
from ..card_sections import ServingOptions
from ..cards import ModelCard, file_stem, load_card
from ..data.depth import card_depth
from ..errors import ConfigError
from ..export.depth_export import export_depth_onnx
from ..extras import MissingExtraError, missing_extra_message
from ..labels import get_label_set
from ..models.registry import config_from_card
from . import configs as C
from .card_models import (
    attach_plan,
    label_set_name,
    openvino_backend_params,
    openvino_installed,
    place_graph_model,
)
from .configs import PNG, Tensor, check_config_against_onnx, quoted
from .ensembles import Pipeline, Step
from .layout import Repository
from .sources import GraphSource, _exported_graph, graph_io

CardLike = Union[ModelCard, str, os.PathLike]
DEPTH, RENDER, DECODE, PREPARE = "depth", "render_from_depth", "decode_png_depth", "prepare_depth"
ENCODE_DEPTH, DECODE_DEPTH = "encode_depth", "decode_depth"
ENSEMBLES = ("label2depth", "label2depth2photo", "depth2photo")
WARMUP_DEPTH = "depth_10m.f32"


@dataclasses.dataclass
class DepthPair:
    """Both stages' exported graphs, checked to fit each other and the tensor contract."""

    depth: GraphSource  # stage 1: depth.onnx
    photo: GraphSource  # stage 2: depth2photo.onnx
    num_classes: int
    notes: list[str] = dataclasses.field(default_factory=list)

    def uses_instances(self, src: GraphSource) -> bool:
        return any(t["name"] == contract.INSTANCES for t in src.inputs)


def _card(spec: CardLike) -> ModelCard:
    if isinstance(spec, ModelCard):
        return spec
    p = Path(spec)
    if p.is_dir():
        cards = sorted(p.glob("*.card.json"))
        if len(cards) != 1:
            raise ConfigError(f"{p}: expected one model card in the directory, found {len(cards)}")
        p = cards[0]
    return load_card(p)


def _stage_graph(card: ModelCard, stage: str, graph: str, work_dir: Path) -> Path:
    """The stage's exported graph: the one an exported card names, else exported into ``work_dir``."""
    have, _ = card_depth(card)
    if have != stage:
        raise ConfigError(
            f"model card {card.path or card.name}: a {have} stage, where the pair needs its {stage} stage"
        )
    exported = (card.depth or {}).get("graph")
    if exported is not None and exported != graph:
        raise ConfigError(
            f"model card {card.path or card.name} is the exported {exported!r} graph; give the {stage} stage's "
            f"own card (or its {graph}.card.json)"
        )
    path = _exported_graph(card) if exported == graph else None
    return path or export_depth_onnx(graph, card, work_dir / f"{file_stem(card.name)}-{graph}")


def _source(card: ModelCard, onnx_path: Path, inputs, outputs) -> GraphSource:
    """The graph's tensors, held to the contract (``inputs`` / ``outputs``: TensorSpecs)."""
    g_in, g_out = graph_io(onnx_path)
    got = {t["name"]: t for t in g_in + g_out}
    want = [*inputs, *outputs]
    if [t["name"] for t in g_in] != [s.name for s in inputs] or [t["name"] for t in g_out] != [s.name for s in outputs]:
        raise ConfigError(
            f"{onnx_path}: tensors {[t['name'] for t in g_in]} -> {[t['name'] for t in g_out]} are not the "
            f"depth-aware contract ({', '.join(map(str, inputs))} -> {', '.join(map(str, outputs))})"
        )
    for spec in want:
        shape = got[spec.name]["shape"]
        if len(shape) != len(spec.dims) + 1 or any(
            isinstance(g, int) and g > 0 and g != e for g, e in zip(shape[1:], spec.dims)
        ):
            raise ConfigError(f"{onnx_path}: tensor {spec.name!r} has shape {shape}, the contract says {spec}")
        got[spec.name]["shape"] = [shape[0], *spec.dims]
    return GraphSource(card, onnx_path, g_in, g_out)


def resolve_depth_pair(stage1: CardLike, stage2: CardLike, work_dir: Path) -> DepthPair:
    """Stage 1 and stage 2 cards (or their exported depth / depth2photo cards) -> their graphs."""
    d, p = _card(stage1), _card(stage2)
    if (d.height, d.width) != (p.height, p.width):
        raise ConfigError(f"the depth pair differs in size: depth {d.height}x{d.width}, photo {p.height}x{p.width}")
    if get_label_set(d.label_set).to_dict() != get_label_set(p.label_set).to_dict():
        raise ConfigError(f"the depth pair's stages label {label_set_name(d)!r} and {label_set_name(p)!r}")
    nc = config_from_card(d).num_classes
    if config_from_card(p).num_classes != nc:
        raise ConfigError(f"the depth pair's stages take {nc} and {config_from_card(p).num_classes} label channels")
    h, w = d.height, d.width
    labels = contract.labels_spec(nc, h, w)
    inst = contract.TensorSpec(contract.INSTANCES, "int32", (1, h, w))
    d_cfg, p_cfg = config_from_card(d), config_from_card(p)
    d_in = [labels] + ([inst] if not d_cfg.no_instance else [])
    p_in = [labels] + ([inst] if not p_cfg.no_instance else []) + [contract.depth_spec(h, w)]
    work_dir = Path(work_dir)
    depth = _source(d, _stage_graph(d, "depth", "depth", work_dir), d_in, [contract.depth_spec(h, w)])
    photo = _source(
        p, _stage_graph(p, "photo-from-depth", "depth2photo", work_dir), p_in, [contract.render_output(h, w)]
    )
    notes = []
    link = (p.depth or {}).get("depth_model")
    if isinstance(link, dict) and link.get("sha256") and d.sha256 and link["sha256"] != d.sha256:
        notes.append(
            f"depth pair: stage 2 {quoted(p.name)} was trained on the predictions of another stage 1 "
            f"({quoted(link.get('name'))}), not {quoted(d.name)}"
        )
    return DepthPair(depth, photo, nc, notes)


def linked_pairs(cards: list[ModelCard]) -> list[tuple[ModelCard, ModelCard]]:
    """(stage 1, stage 2) pairs among ``cards``: each photo-from-depth card with the depth card its
    ``depth.depth_model`` names (by sha256), or, with one of each and no link, those two."""
    stages = {"depth": [], "photo-from-depth": []}
    for c in cards:
        if isinstance(c.depth, dict) and c.depth.get("stage") in stages:
            stages[c.depth["stage"]].append(c)
    pairs = []
    for p in stages["photo-from-depth"]:
        sha = ((p.depth or {}).get("depth_model") or {}).get("sha256")
        match = [d for d in stages["depth"] if sha and d.sha256 == sha]
        if match:
            pairs.append((match[0], p))
    if not pairs and len(stages["depth"]) == 1 and len(stages["photo-from-depth"]) == 1:
        pairs.append((stages["depth"][0], stages["photo-from-depth"][0]))
    return pairs


# ---- the models -------------------------------------------------------------------------------------


def _graph_model(repo: Repository, name: str, src: GraphSource, opts: ServingOptions, plans, io_text: str) -> None:
    ins = [Tensor.of(t) for t in src.inputs]
    outs = [Tensor.of(t) for t in src.outputs]
    params: dict[str, Any] = {
        "card_name": src.card.name,
        "height": src.card.height,
        "width": src.card.width,
        "label_set": label_set_name(src.card),
        "num_classes": config_from_card(src.card).num_classes,
        "label_inputs": "labels",
    }
    if any(t.name == contract.DEPTH for t in ins):
        params["depth_inputs"] = contract.DEPTH  # the python-backend runners check the values first
    what = [
        f'Depth-aware model "{name}" (target {repo.target}): the exported graph of',
        f"{quoted(src.card.name)} ({io_text}),",
    ]
    files: dict[str, Any] = {"model.onnx": src.onnx, "card.json": src.card.to_json()}
    engine, folder = "onnxruntime", None
    if repo.target == "cpu":
        runtime, folder = "onnxruntime_python", "render_onnxruntime_python"
        params["intra_op_threads"] = opts.intra_op_threads
        header = [*what, "run by onnxruntime in Triton's python backend (no AOT package for depth-aware graphs)."]
        if opts.cpu_engine == "openvino":
            if not openvino_installed():
                raise MissingExtraError(missing_extra_message("openvino", "openvino", "--cpu-engine openvino"))
            engine, runtime, folder = "openvino", "openvino_python", "render_openvino_python"
            # "auto" is FP32 here: BF16 was measured for the demo generator only, and on the test stages it
            # moved saturated depths by decades (1 m <-> 1000 m); --cpu-precision bf16 still asks for it
            params["precision"] = "fp32" if opts.cpu_precision == "auto" else opts.cpu_precision
            precision = str(params["precision"]).upper()
            header = [*what, f"compiled by OpenVINO ({precision}) and run in Triton's python backend."]
    elif repo.target == "openvino":
        runtime, engine = "openvino", "openvino"
        params.update(openvino_backend_params(opts))
        header = [*what, "on Triton's own OpenVINO backend (CPU instances), compiled from 1/model.onnx at load."]
    elif repo.target == "gpu-onnx":
        runtime = "onnxruntime_onnx"
        header = [*what, "on Triton's onnxruntime backend (CUDA execution provider)."]
    else:  # gpu-trt
        runtime, engine = "tensorrt_plan", "tensorrt"
        header = [*what, "as a TensorRT FP16 engine: 1/model.plan, built on the serving GPU by build_engines.sh."]
        attach_plan(repo, name, src.card.name, plans, files, opts)
    spec = C.graph_model(name, runtime, ins, outs, opts, params, header)
    check_config_against_onnx(spec.config, src.onnx)
    depth_in = [t for t in ins if t.name == contract.DEPTH]
    if depth_in and spec.config.model_warmup:  # random floats (NaN, negative) are no depth map
        files[f"../warmup/{WARMUP_DEPTH}"] = np.full(depth_in[0].dims, 10.0, "<f4").tobytes()
        for w in spec.config.model_warmup:
            w.inputs[contract.DEPTH].input_data_file = WARMUP_DEPTH
        spec.header.append(
            f"Warm-up depth: {WARMUP_DEPTH} (10 m everywhere, float32), as Triton reads it from warmup/."
        )
    place_graph_model(repo, spec, name, src, engine, ins, outs, folder, files)


def encode_depth(name: str, h: int, w: int, opts: ServingOptions) -> C.Spec:
    params = {"compression": opts.png_compression}
    cfg = C.python_model(name, "encode_depth", [Tensor(contract.DEPTH, "float32", (1, h, w))], [PNG], opts, params)
    return C.Spec(
        cfg,
        [
            f'"{name}": depth float32 [1, {h}, {w}] metres -> a 16-bit PNG in millimetres, clipped to',
            "1..65535 mm (1 mm .. 65.535 m: anything farther, e.g. a 1000 m sky, reads 65.535 m).",
            C.source_line("encode_depth"),
        ],
    )


def decode_depth(name: str, labels: Tensor, opts: ServingOptions) -> C.Spec:
    """A user's depth file -> metres; the label ids pass through it, so that depth2photo decodes the
    two inputs one after the other: when one of two parallel first steps of an ensemble fails, Triton
    2.51 answers the request but never retires it (the model's in-flight count stays up, and a SIGTERM
    waits out its exit timeout), so no depth2photo step runs beside a step that may fail."""
    h, w = labels.dims[1], labels.dims[2]
    params = {"height": h, "width": w, "max_pixels": opts.max_pixels, "max_bytes": opts.max_bytes}
    depth = Tensor(contract.DEPTH, "float32", (1, h, w))
    cfg = C.python_model(name, "decode_depth", [PNG, labels], [depth, labels], opts, params)
    return C.Spec(
        cfg,
        [
            f'"{name}": a depth map -> depth float32 [1, {h}, {w}] metres: a 1-channel 16-bit PNG in millimetres',
            f"or .npy bytes of floats in metres, at exactly {h}x{w}. Another size or dtype, NaN/inf, zero or",
            "negative values fail only their own request (INVALID_ARG), naming the problem. The label ids",
            "pass through unchanged: depth2photo runs its decoders in sequence, never side by side (a",
            "failing step beside a running one leaves the request in flight in Triton 2.51).",
            C.source_line("decode_depth"),
        ],
    )


def add_depth_pair(repo: Repository, pair: DepthPair, opts: ServingOptions, d_opts: ServingOptions, plans) -> None:
    """``depth``, ``render_from_depth``, their codecs and the three ensembles (``opts``: stage 2's
    serving options, for everything but the ``depth`` graph, which gets stage 1's ``d_opts``)."""
    for name in (DEPTH, RENDER, DECODE, PREPARE, ENCODE_DEPTH, DECODE_DEPTH, *ENSEMBLES):
        if name in repo.specs:
            raise ConfigError(f"the repository already has a model {name!r}: one depth-aware pair per repository")
    d, p = pair.depth, pair.photo
    h, w = p.card.height, p.card.width
    _graph_model(repo, DEPTH, d, d_opts, plans, "label ids uint8 [B,1,H,W] -> depth float32 [B,1,H,W] metres")
    _graph_model(repo, RENDER, p, opts, plans, "label ids + depth float32 [B,1,H,W] metres -> photo uint8 [B,H,W,3]")
    labels = Tensor.of(p.tensor(contract.LABELS))
    spec = C.decode_labels(DECODE, labels, opts, label_set_name(p.card), pair.num_classes, RENDER)
    label_set = json.dumps(get_label_set(p.card.label_set).to_dict(), indent=1)
    repo.python_model(spec, "decode_png", {"role": "decode_png", "card": p.card.name}, **{"label_set.json": label_set})
    if pair.uses_instances(d) or pair.uses_instances(p):
        inst = Tensor(contract.INSTANCES, "int32", labels.dims)
        params = {"height": h, "width": w, "num_classes": pair.num_classes, "dtype": labels.dtype, "z_dim": 0}
        spec = C.prepare_render(PREPARE, labels, [labels, inst], opts, params, f"{DEPTH} / {RENDER}")
        repo.python_model(spec, "prepare_render", {"role": "prepare_render", "card": p.card.name})
    if "encode_png" not in repo.specs:
        repo.python_model(C.encode_image("encode_png", opts), "encode_png", {"role": "encode_png"})
    repo.python_model(encode_depth(ENCODE_DEPTH, h, w, opts), "encode_depth", {"role": "encode_depth"})
    repo.python_model(decode_depth(DECODE_DEPTH, labels, opts), "decode_depth", {"role": "decode_depth"})

    def ids(*graphs: GraphSource, user_depth: bool = False) -> list[Step]:
        """Label PNG -> ensemble tensor ``ids`` (and ``instances``); with ``user_depth`` the user's
        depth file is decoded in between (``decode_depth``: why in sequence) into ``depth``."""
        steps = [Step(DECODE, {"PNG": contract.LABELS_PNG}, {"labels": "label_ids" if user_depth else "ids"})]
        if user_depth:
            feeds = {"PNG": contract.DEPTH_PNG, "labels": "label_ids"}
            steps.append(Step(DECODE_DEPTH, feeds, {"depth": "depth", "labels": "ids"}))
        if any(pair.uses_instances(g) for g in graphs):
            steps.append(Step(PREPARE, {"ids": "ids"}, {"instances": "instances"}))
        return steps

    def feeds(g: GraphSource, **more: str) -> dict[str, str]:
        return {"labels": "ids", **({"instances": "instances"} if pair.uses_instances(g) else {}), **more}

    stage1 = Step(DEPTH, feeds(d), {"depth": "depth"})
    stage2 = Step(RENDER, feeds(p, depth="depth"), {"image": "image"})
    to_png = Step("encode_png", {"image": "image"}, {"PNG": contract.PHOTO_PNG})
    to_depth_png = Step(ENCODE_DEPTH, {"depth": "depth"}, {"PNG": contract.DEPTH_PNG})
    about = {
        contract.LABELS_PNG: f"a {h}x{w} label map: ids ({quoted(label_set_name(p.card))} file convention) or palette colors",
        contract.PHOTO_PNG: f"the {h}x{w} photo as PNG",
        contract.DEPTH_PNG: "depth, 16-bit PNG in millimetres (1..65535 mm; farther clips to 65.535 m)",
    }
    pair_name = f"{quoted(d.card.name)} -> {quoted(p.card.name)}"
    raw = f'Raw tensors: call "{DEPTH}" (ids -> metres) and "{RENDER}" (ids + metres -> RGB) directly.'
    repo.add_ensemble(
        Pipeline(
            "label2depth",
            f'a label PNG -> the depth map predicted by "{DEPTH}" (stage 1 {quoted(d.card.name)})',
            [*ids(d), stage1, to_depth_png],
            [contract.DEPTH_PNG],
            about,
            [raw],
        ),
        {"card": d.card.name},
    )
    repo.add_ensemble(
        Pipeline(
            "label2depth2photo",
            f"a label PNG -> depth (stage 1) -> photo (stage 2), pair {pair_name}",
            [*ids(d, p), stage1, stage2, to_png, to_depth_png],
            [contract.PHOTO_PNG, contract.DEPTH_PNG],
            {
                **about,
                contract.DEPTH_PNG: "the depth stage 2 was given: 16-bit PNG in millimetres (clipped at 65.535 m)",
            },
            [raw, "Stage 2 reads stage 1's float metres; the PNG is only the copy returned."],
        ),
        {"card": f"{d.card.name} -> {p.card.name}"},
    )
    repo.add_ensemble(
        Pipeline(
            "depth2photo",
            f'a label PNG and your own depth map -> the photo rendered by "{RENDER}" ({quoted(p.card.name)})',
            [*ids(p, user_depth=True), stage2, to_png],
            [contract.PHOTO_PNG],
            {
                **about,
                contract.DEPTH_PNG: f"your depth map at {h}x{w}: 16-bit PNG in millimetres or .npy bytes in metres",
            },
            [raw],
        ),
        {"card": p.card.name},
    )

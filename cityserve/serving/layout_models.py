"""The models a layout card (kind "layout", ``train/layouts.py``) gets in a repository, for each target.

``random_layout`` (python backend): SEED int64 [1] (and TRUNCATION float32 [1], optional) -> LAYOUT_IDS
uint8 [1, H, W], INSTANCE_IDS int32 [1, H, W], LABELS_PNG and COLOR_PNG, the same layout
``cityserve generate`` draws for that seed. Between turning seeds into z and snapping the ids it calls
(business logic scripting) ``layout_graph``, the layout graph (``export.layout_serving``: z and
truncation -> argmax ids) on the target's engine: on cpu the render graphs' onnxruntime runner in the
python backend, elsewhere Triton's onnxruntime_onnx, tensorrt_plan or openvino backend. One code path
on every target, so the cpu tests exercise what the GPUs run. With a generator of the same label set, the
``random2photo`` ensemble chains it into that generator: SEED -> LABELS_PNG, COLOR_PNG, PHOTO_PNG.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .. import contract
from ..card_sections import ServingOptions
from ..cards import ModelCard, file_stem, load_card, sha256_file
from ..errors import ConfigError
from ..labels import get_label_set
from ..models.registry import render_io
from . import configs as C
from .card_models import _render_steps, attach_plan, label_set_name, model_suffix, openvino_backend_params
from .configs import Spec, Tensor, check_config_against_onnx, quoted
from .ensembles import Pipeline, Step
from .layout import Repository
from .sources import GraphSource, graph_io

GRAPH_RUNTIMES = {
    "cpu": "onnxruntime_python",
    "gpu-onnx": "onnxruntime_onnx",
    "gpu-trt": "tensorrt_plan",
    "openvino": "openvino",
}
FOLDER = "random_layout"


def is_layout_spec(spec: Any) -> bool:
    """Whether what a user passed to the builder is a layout card (a card, its file or folder)."""
    if isinstance(spec, ModelCard):
        return spec.kind == "layout"
    if str(spec).endswith((".onnx", ".plan")):
        return False
    try:
        return load_card(spec).kind == "layout"
    except Exception:  # not a card at all: the generator / segmenter path reports it
        return False


def split_layout_cards(specs: Iterable[Any]) -> tuple[list[Any], list[ModelCard]]:
    """(the generator / segmenter specs, the layout cards), in the order given."""
    others, layouts = [], []
    for s in specs:
        if is_layout_spec(s):
            layouts.append(s if isinstance(s, ModelCard) else load_card(s))
        else:
            others.append(s)
    return others, layouts


def _graph(card: ModelCard, work: Path) -> tuple[Path, list[Tensor], list[Tensor]]:
    from ..export.layout_serving import export_served_layout_onnx

    ls = get_label_set(card.label_set)
    if ls.num_ids > contract.MAX_UINT8_CLASSES:
        raise ConfigError(f"layout card {card.name!r}: {ls.num_ids} ids do not fit the uint8 LAYOUT_IDS")
    onnx_path = export_served_layout_onnx(card, work / file_stem(card.name) / "layout.onnx")
    g_in, g_out = graph_io(onnx_path)
    fixed = {"z": (card.layout.z_dim,), "truncation": (1,), "layout_ids": (1, card.height, card.width)}
    ins = [Tensor(t["name"], t["dtype"], fixed[t["name"]]) for t in g_in]
    outs = [Tensor(t["name"], t["dtype"], fixed[t["name"]]) for t in g_out]
    return onnx_path, ins, outs


def _add_graph_model(repo: Repository, name: str, card: ModelCard, onnx_path: Path, ins, outs, opts, plans) -> None:
    runtime = GRAPH_RUNTIMES[repo.target]
    params: dict[str, Any] = {"card_name": card.name, "height": card.height, "width": card.width}
    files: dict[str, Any] = {"model.onnx": onnx_path, "card.json": card.to_json()}
    what = f'Layout graph "{name}" (target {repo.target}) of layout card {quoted(card.name)}: z, truncation ->'
    header = [what, f'argmax label ids uint8 [B,1,{card.height},{card.width}], called by "random_layout".']
    if runtime == "onnxruntime_python":
        params["intra_op_threads"] = opts.intra_op_threads
    if runtime == "openvino":
        params.update(openvino_backend_params(opts))
    if runtime == "tensorrt_plan":
        attach_plan(repo, name, card.name, plans, files, opts)
    spec = C.graph_model(name, runtime, ins, outs, opts, params, header)
    check_config_against_onnx(spec.config, onnx_path)
    info = {"role": "layout_graph", "card": card.name, "onnx_sha256": sha256_file(onnx_path)}
    if runtime == "onnxruntime_python":  # the render graphs' onnxruntime runner, batched the same way
        repo.python_model(spec, C.RUNTIMES[runtime][1], info, **files)
    else:
        repo.add(spec, files, info)


def random_layout_config(name: str, card: ModelCard, opts: ServingOptions, params: dict[str, Any]) -> Spec:
    """SEED (+ optional TRUNCATION) -> LAYOUT_IDS, INSTANCE_IDS, LABELS_PNG, COLOR_PNG."""
    h, w = card.height, card.width
    inputs = [Tensor(contract.SEED, "int64", (1,)), Tensor(contract.TRUNCATION, "float32", (1,))]
    outputs = [
        Tensor(contract.LAYOUT_IDS, "uint8", (1, h, w)),
        Tensor(contract.INSTANCE_IDS, "int32", (1, h, w)),
        Tensor(contract.LABELS_PNG, "bytes", (1,)),
        Tensor(contract.COLOR_PNG, "bytes", (1,)),
    ]
    cfg = C.python_model(name, FOLDER, inputs, outputs, opts, params)
    cfg.input[1].optional = True
    return Spec(
        cfg,
        [
            f'"{name}": a seed -> a {h}x{w} street layout of layout card {quoted(card.name)}:',
            "SEED int64 [1] (0..2^63-1; the layout cityserve generate --seed draws), TRUNCATION float32 [1]",
            f"(optional, 0..2; default {card.layout.truncation_psi}) -> LAYOUT_IDS, INSTANCE_IDS (thing",
            f'components, id*1000+k), LABELS_PNG (ids), COLOR_PNG. The graph is model "{params["graph_model"]}";',
            f"specks under {card.layout.min_area} pixels are merged. A bad seed fails only its request.",
            C.source_line(FOLDER),
        ],
    )


def add_layout(
    repo: Repository, card: ModelCard, suffix: str, opts: ServingOptions, work: Path, plans: dict[str, Path]
) -> str:
    """``random_layout<suffix>`` (and ``layout_graph<suffix>`` off the cpu target); returns its name."""
    onnx_path, ins, outs = _graph(card, work)
    name = f"random_layout{suffix}"
    params: dict[str, Any] = {
        "card_name": card.name,
        "z_dim": card.layout.z_dim,
        "truncation_psi": card.layout.truncation_psi,
        "min_area": card.layout.min_area,
        "connectivity": card.layout.instance_connectivity,
        "compression": opts.png_compression,
        "label_set_file": "label_set.json",
    }
    files: dict[str, Any] = {
        "card.json": card.to_json(),
        "label_set.json": json.dumps(get_label_set(card.label_set).to_dict(), indent=1),
    }
    graph = f"layout_graph{suffix}"
    _add_graph_model(repo, graph, card, onnx_path, ins, outs, opts, plans)
    params["graph_model"] = graph
    info = {"role": "random_layout", "card": card.name, "onnx_sha256": sha256_file(onnx_path)}
    repo.python_model(random_layout_config(name, card, opts, params), FOLDER, info, **files)
    return name


def random2photo_problem(layout: ModelCard, gen: GraphSource) -> str:
    if get_label_set(layout.label_set).to_dict() != get_label_set(gen.card.label_set).to_dict():
        return (
            f"layout card {layout.name!r} draws {label_set_name(layout)!r} but generator {gen.card.name!r} "
            f"renders {label_set_name(gen.card)!r}"
        )
    if get_label_set(layout.label_set).num_ids > render_io(gen.card).num_classes:
        return f"layout card {layout.name!r} draws ids the generator {gen.card.name!r} has no channel for"
    return ""


def add_random2photo(
    repo: Repository, layout: ModelCard, random_layout: str, gen: GraphSource, render: str, opts: ServingOptions
) -> None:
    ids = Tensor("ids", "uint8", (1, layout.height, layout.width))
    own = ids.dims != Tensor.of(gen.tensor("labels")).dims
    pipeline = Pipeline(
        "random2photo",
        f'a seed -> a street layout ("{random_layout}") -> its photo ("{render}")',
        [
            Step(
                random_layout,
                {contract.SEED: contract.SEED},
                {contract.LAYOUT_IDS: "ids", contract.LABELS_PNG: contract.LABELS_PNG, contract.COLOR_PNG: "COLOR_PNG"},
            ),
            *_render_steps(repo, render, gen, opts, ids, "_random2photo" if own else ""),
            Step("encode_png", {"image": "image"}, {"PNG": contract.PHOTO_PNG}),
        ],
        [contract.LABELS_PNG, contract.COLOR_PNG, contract.PHOTO_PNG],
        {
            contract.SEED: "0..2^63-1: the same seed gives the same layout",
            contract.LABELS_PNG: f"the {layout.height}x{layout.width} layout as 1-channel ids",
            contract.COLOR_PNG: "the same layout in palette colors",
            contract.PHOTO_PNG: f"its {gen.card.height}x{gen.card.width} photo (the layout nearest-resized)",
        },
        [f'Truncation, instance maps, raw ids: call model "{random_layout}" directly.'],
    )
    repo.add_ensemble(pipeline, {"card": f"{layout.name} -> {gen.card.name}"})


def add_layouts(
    repo: Repository,
    cards: list[ModelCard],
    opts: list[ServingOptions],
    gens: list[GraphSource],
    renders: list[str],
    work: Path,
    plans: dict[str, Path],
    notes: list[str],
) -> None:
    """Every layout card's models; ``random2photo`` from the first into the first generator."""
    names = [
        add_layout(repo, card, model_suffix(card, i), o, work, plans) for i, (card, o) in enumerate(zip(cards, opts))
    ]
    if not cards:
        return
    if not gens:
        notes.append("random2photo not built: no generator card to render the layouts")
        return
    problem = random2photo_problem(cards[0], gens[0])
    if problem:
        notes.append(f"random2photo not built: {problem}")
    else:
        add_random2photo(repo, cards[0], names[0], gens[0], renders[0], opts[0])

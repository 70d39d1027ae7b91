"""The models and ensembles each card gets in a repository, for each target.

Per generator: ``render`` (its exported graph), ``decode_png``, ``prepare_render`` where the graph needs
instances, a latent or ids of another size, and the ``label2photo`` ensemble (on the cpu target, by
default, ``label2photo`` is instead one fused python model: decode + prepare + render + encode); per segmenter:
``segment``, ``decode_photo``, ``encode_labels`` and ``photo2labels``; for the first of each,
``photo2photo``. Every card-derived value goes into a config as a protobuf field (``configs.py``); in
comments it passes through ``quoted`` (one safe line).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path
from typing import Any, Optional

from .. import contract
from ..card_sections import ServingOptions
from ..cards import ModelCard, sha256_file
from ..errors import ConfigError
from ..export.aot import aot_artifact, aot_card_for
from ..extras import MissingExtraError, missing_extra_message
from ..hardware import cpu_supports_bf16
from ..labels import get_label_set
from ..models.registry import render_io
from . import configs as C
from .configs import Tensor, check_config_against_onnx, quoted
from .engine_script import PRECISION_REPORT, EngineBuild
from .ensembles import Pipeline, Step, render_steps
from .layout import FileContent, Repository
from .sources import GraphSource


def label_set_name(card: ModelCard) -> str:
    return card.label_set if isinstance(card.label_set, str) else str(card.label_set.get("name", "custom"))


def _label_set_json(card: ModelCard) -> str:
    return json.dumps(get_label_set(card.label_set).to_dict(), indent=1)


def model_suffix(card: ModelCard, index: int) -> str:
    """ "" for the first card of its kind, else ``_<card name>``: the card name must then fit a model name."""
    if index == 0:
        return ""
    if not isinstance(card.name, str) or not C.MODEL_NAME.fullmatch(card.name):
        raise ConfigError(
            f"card name {card.name!r:.80} cannot be part of a Triton model name (a {card.kind} after the first "
            f"serves as <model>_<card name>): rename the card with A-Z a-z 0-9 _ . - only"
        )
    return f"_{card.name}"


def openvino_installed() -> bool:
    """Whether the OpenVINO engine can run here (the ``openvino`` extra is installed)."""
    return importlib.util.find_spec("openvino") is not None


def cpu_render_engine(src: GraphSource, opts: ServingOptions) -> str:
    """ "auto": where the CPU has BF16 instructions and a card was given, OpenVINO BF16 if it is
    installed (measured faster than the AOT package on the demo generator within the same accuracy
    budget: benchmarks/results/cpu-amd-epyc-2c/2026-12-04-openvino-vs-aot-demo.md), else the AOTInductor
    package; otherwise (no BF16, or an exported .onnx served as that graph) onnxruntime."""
    if opts.cpu_engine != "auto":
        return opts.cpu_engine
    if cpu_supports_bf16() and not src.from_onnx:
        return "openvino" if openvino_installed() else "aot"
    return "onnxruntime"


def cpu_graph_engine(src: GraphSource, opts: ServingOptions) -> str:
    """The engine of a cpu-target graph model: the render engine for generators; segmenters run
    OpenVINO when it is asked for (``cpu_engine="openvino"``), onnxruntime otherwise (AOT packages are
    generators only, and "auto" picks OpenVINO for render models only, where it was measured)."""
    engine = cpu_render_engine(src, opts)
    if src.kind != "generator" and (engine == "aot" or opts.cpu_engine == "auto"):
        return "onnxruntime"
    if engine == "openvino" and not openvino_installed():
        raise MissingExtraError(missing_extra_message("openvino", "openvino", "--cpu-engine openvino"))
    return engine


def openvino_backend_params(opts: ServingOptions) -> dict[str, Any]:
    """The parameters Triton's OpenVINO backend reads (it passes only these to OpenVINO): latency
    mode, one stream, the thread count; ``HINT_BF16`` for bf16. It has no FP32 switch, and OpenVINO
    runs BF16 by default on CPUs that have it, so "auto" sets nothing and "fp32" is refused."""
    if opts.cpu_precision == "fp32":
        raise ConfigError(
            "cpu_precision fp32: Triton's OpenVINO backend has no FP32 setting (OpenVINO runs BF16 where the "
            "CPU has it); serve FP32 with --target cpu --cpu-engine openvino --cpu-precision fp32"
        )
    params: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}
    if opts.intra_op_threads:
        params["INFERENCE_NUM_THREADS"] = opts.intra_op_threads
    if opts.cpu_precision == "bf16":
        params["HINT_BF16"] = "YES"
    return params


@dataclasses.dataclass(frozen=True)
class GraphModel:
    """What a graph model was built with: its engine, the files of its version directory (model.py
    aside) and its parameters; the fused label2photo runs the same engine from the same files."""

    engine: str
    files: dict[str, FileContent]
    params: dict[str, Any]


def place_graph_model(
    repo: Repository, spec, role: str, src: GraphSource, engine: str, ins, outs, folder, files
) -> None:
    """Put a graph model into ``repo``: as a python-backend model from ``folder`` (cpu target) or as a
    backend model, with the manifest entry every graph model gets (role, card, graph hash, engine, tensors)."""
    info = {
        "role": role,
        "card": src.card.name,
        "onnx_sha256": sha256_file(src.onnx),
        "engine": engine,
        "inputs": [{"name": t.name, "dtype": t.dtype, "dims": list(t.dims)} for t in ins],
        "outputs": [{"name": t.name, "dtype": t.dtype, "dims": list(t.dims)} for t in outs],
    }
    if folder:
        repo.python_model(spec, folder, info, **files)
    else:
        repo.add(spec, files, {"platform": spec.config.platform, **info})


def attach_plan(
    repo: Repository,
    name: str,
    card_name: str,
    plans: dict[str, Path],
    files: dict[str, Any],
    opts: ServingOptions,
    prebuilt: Optional[Path] = None,
    precision_report: Optional[Path] = None,
) -> None:
    """gpu-trt: the model's engine, ``plans[card_name]`` (or ``plans[name]``, or ``prebuilt``) if one was
    built, else listed as missing; and its line in build_engines.sh (profile 1 / preferred / max batch)."""
    plan = plans.get(card_name) or plans.get(name) or prebuilt
    if plan is not None:
        files["model.plan"] = Path(plan)
    else:
        repo.missing_plans.append(name)
    if precision_report is not None:
        files[PRECISION_REPORT] = precision_report
    opt_batch = max([s for s in opts.preferred if s <= opts.max_batch_size] or [1])
    repo.engine_builds.append(
        EngineBuild(name, 1, opt_batch, opts.max_batch_size, precision_report=precision_report is not None)
    )


def _add_graph_model(
    repo: Repository, name: str, src: GraphSource, opts: ServingOptions, plans: dict[str, Path]
) -> GraphModel:
    """The render or segment model of one card, for the repository's target."""
    role = "render" if src.kind == "generator" else "segment"
    ins = [Tensor.of(t) for t in src.inputs]
    outs = [Tensor.of(t) for t in src.outputs]
    params: dict[str, Any] = {
        "card_name": src.card.name,
        "height": src.card.height,
        "width": src.card.width,
        "label_set": label_set_name(src.card),
    }
    if role == "render":
        params["num_classes"] = render_io(src.card).num_classes
        params["label_inputs"] = "labels"
    io_text = (
        "label ids uint8 [B,1,H,W] -> photo uint8 [B,H,W,3]"
        if role == "render"
        else "photo uint8 [B,H,W,3] -> label ids uint8 [B,1,H,W]"
    )
    what = [
        f'{role.capitalize()} model "{name}" (target {repo.target}): the exported {role} graph of',
        f"{src.kind} {quoted(src.card.name)} ({io_text}),",
    ]
    files: dict[str, FileContent] = {"model.onnx": src.onnx, "card.json": src.card.to_json()}
    engine, folder = "onnxruntime", None
    if repo.target == "cpu":
        runtime, folder = "onnxruntime_python", "render_onnxruntime_python"
        params["intra_op_threads"] = opts.intra_op_threads
        header = [*what, "run by onnxruntime in Triton's python backend."]
        chosen = cpu_graph_engine(src, opts)
        if chosen == "openvino":
            engine, runtime, folder = "openvino", "openvino_python", "render_openvino_python"
            params["precision"] = opts.cpu_precision
            precision = "BF16 where the CPU has it" if opts.cpu_precision == "auto" else opts.cpu_precision.upper()
            header = [*what, f"compiled by OpenVINO ({precision}) and run in Triton's python backend."]
        elif chosen == "aot":
            aot_card = aot_card_for(src.card, trust=bool(opts.trust_aot))
            aot = aot_artifact(aot_card)
            engine, runtime, folder = "aot", "aot_python", "render_aot_python"
            files = {"render.pt2": aot_card.directory / aot.file, "card.json": aot_card.to_json()}
            header = [
                *what,
                f"compiled ahead of time with AOTInductor ({C.comment_text(aot.dtype, 8).upper()}) and run by torch",
                "in Triton's python backend. The package refuses to load on a CPU without the flags it was",
                "compiled for.",
            ]
    elif repo.target == "openvino":
        runtime, engine = "openvino", "openvino"
        params.update(openvino_backend_params(opts))
        header = [
            *what,
            "on Triton's own OpenVINO backend (the NGC tritonserver container; CPU instances), which",
            "compiles 1/model.onnx at load (BF16 where the CPU has it).",
        ]
    elif repo.target == "gpu-onnx":
        runtime = "onnxruntime_onnx"
        provider = ", TensorRT execution provider in FP16 first" if opts.onnx_accelerator == "tensorrt" else ""
        header = [*what, f"on Triton's onnxruntime backend (CUDA execution provider{provider})."]
    else:  # gpu-trt
        runtime = "tensorrt_plan"
        header = [
            *what,
            "as a TensorRT FP16 engine: 1/model.plan, built on the serving GPU from 1/model.onnx by",
            "build_engines.sh (cityserve export tensorrt: normalization and flagged layers stay FP32).",
        ]
        attach_plan(repo, name, src.card.name, plans, files, opts, src.plan, src.precision_report)
    spec = C.graph_model(name, runtime, ins, outs, opts, params, header)
    check_config_against_onnx(spec.config, src.onnx)
    place_graph_model(repo, spec, role, src, engine, ins, outs, folder, files)
    return GraphModel(engine, files, params)


def _render_steps(repo: Repository, render: str, gen: GraphSource, opts: ServingOptions, ids: Tensor, suffix: str):
    """The steps from label ids to the render graph's image, adding a prepare_render model when the
    graph needs instances / a latent or the ids have another size or dtype."""
    io = render_io(gen.card)
    labels = Tensor.of(gen.tensor("labels"))
    render_inputs = [Tensor.of(t) for t in gen.inputs]
    if not io.use_instance and not io.z_dim and ids.dims == labels.dims and ids.dtype == labels.dtype:
        return render_steps(render, [t.name for t in render_inputs], None)
    prep = f"prepare_render{suffix}"
    if prep not in repo.specs:
        params = {
            "height": gen.card.height,
            "width": gen.card.width,
            "num_classes": io.num_classes,
            "dtype": labels.dtype,
            "z_dim": io.z_dim,
        }
        if io.z_dim and opts.latent != "random":
            params["latent"] = opts.latent
        spec = C.prepare_render(prep, ids, render_inputs, opts, params, render)
        repo.python_model(spec, "prepare_render", {"role": "prepare_render", "card": gen.card.name})
    return render_steps(render, [t.name for t in render_inputs], prep)


def fused_pipeline(repo: Repository, opts: ServingOptions) -> bool:
    """Whether label2photo is one python model here: on the cpu target (every step a python model, so
    each ensemble hop is a python round trip) unless ``pipeline: ensemble`` is asked for."""
    return repo.target == "cpu" and opts.pipeline == "fused"


def _add_fused_label2photo(repo: Repository, gen: GraphSource, suffix: str, opts: ServingOptions, graph: GraphModel):
    """label2photo as ONE python model (``triton_models/label2photo_python``): the decode_png model's
    parameters, the render model's engine, files and parameters, and the encoder's compression."""
    io, labels = render_io(gen.card), Tensor.of(gen.tensor("labels"))
    label_set, h, w = label_set_name(gen.card), labels.dims[1], labels.dims[2]
    render, name = f"render{suffix}", f"label2photo{suffix}"
    params = {k: v for k, v in graph.params.items() if k != "label_inputs"}
    params.update(
        engine=graph.engine,
        height=h,
        width=w,
        dtype=labels.dtype,
        label_set_file="label_set.json",
        max_pixels=opts.max_pixels,
        max_bytes=opts.max_bytes,
        nearest=bool(opts.nearest_colors),
        use_instance=bool(io.use_instance),
        z_dim=io.z_dim,
        render_outputs=",".join(t["name"] for t in gen.outputs),
        compression=opts.png_compression,
    )
    if io.z_dim and opts.latent != "random":
        params["latent"] = opts.latent
    header = [
        f'"{name}": a {h}x{w} label PNG (ids in the {quoted(label_set)} file convention, or palette colors) ->',
        f'the photo PNG rendered by generator {quoted(gen.card.name)}, in ONE python model (pipeline "fused"):',
        f'decode as decode_png does, prepare as prepare_render does, render with the engine of "{render}"',
        f"({graph.engine}, from the same files), encode as encode_png does. No python round trips between",
        "steps (each ensemble hop on the cpu target is one). PNG headers are checked before decoding: more",
        f"than {opts.max_pixels} pixels or {opts.max_bytes} bytes is refused; a bad item fails only its own request.",
        f'Raw tensors (ids in, RGB out, no PNG cost): call model "{render}" directly.',
    ]
    spec = C.label2photo_fused(name, opts, params, header)
    files = {**graph.files, "label_set.json": _label_set_json(gen.card)}
    info = {"role": "label2photo", "pipeline": "fused", "card": gen.card.name, "engine": graph.engine}
    repo.python_model(spec, "label2photo_python", info, **files)


def add_generator(repo: Repository, gen: GraphSource, suffix: str, opts: ServingOptions, plans, encode: str) -> str:
    render = f"render{suffix}"
    graph = _add_graph_model(repo, render, gen, opts, plans)
    if fused_pipeline(repo, opts):
        _add_fused_label2photo(repo, gen, suffix, opts, graph)
        return render
    labels = Tensor.of(gen.tensor("labels"))
    label_set, h, w = label_set_name(gen.card), gen.card.height, gen.card.width
    decode = f"decode_png{suffix}"
    spec = C.decode_labels(decode, labels, opts, label_set, render_io(gen.card).num_classes, render)
    info = {"role": "decode_png", "card": gen.card.name}
    repo.python_model(spec, "decode_png", info, **{"label_set.json": _label_set_json(gen.card)})
    steps = [
        Step(decode, {"PNG": contract.LABELS_PNG}, {"labels": "ids"}),
        *_render_steps(repo, render, gen, opts, labels, suffix),
        Step(encode, {"image": "image"}, {"PNG": contract.PHOTO_PNG}),
    ]
    pipeline = Pipeline(
        f"label2photo{suffix}",
        f'a label PNG -> the photo rendered by "{render}" (generator {quoted(gen.card.name)})',
        steps,
        [contract.PHOTO_PNG],
        {
            contract.LABELS_PNG: f"a {h}x{w} label map: ids ({quoted(label_set)} file convention) or palette colors",
            contract.PHOTO_PNG: f"the {h}x{w} photo as PNG",
        },
        [f'Raw tensors (ids in, RGB out, no PNG cost): call model "{render}" directly.', *_ISSUE_7482],
    )
    repo.add_ensemble(pipeline, {"card": gen.card.name})
    return render


_ISSUE_7482 = [
    "Ensemble outputs are only final step outputs: Triton 2.51 deadlocks when a client asks for a",
    "subset of outputs that includes a tensor a later step consumes (server issue #7482).",
]


def add_segmenter(repo: Repository, seg: GraphSource, suffix: str, opts: ServingOptions, plans) -> None:
    segment = f"segment{suffix}"
    _add_graph_model(repo, segment, seg, opts, plans)
    image, labels = Tensor.of(seg.tensor("image")), Tensor.of(seg.tensor("labels"))
    label_set = label_set_name(seg.card)
    decode, encode = f"decode_photo{suffix}", f"encode_labels{suffix}"
    repo.python_model(
        C.decode_photo(decode, image, opts, segment), "decode_png", {"role": "decode_photo", "card": seg.card.name}
    )
    repo.python_model(
        C.encode_labels(encode, labels, opts, label_set),
        "encode_png",
        {"role": "encode_labels", "card": seg.card.name},
        **{"label_set.json": _label_set_json(seg.card)},
    )
    h, w = image.dims[0], image.dims[1]
    pipeline = Pipeline(
        f"photo2labels{suffix}",
        f'a street photo -> its label map, by "{segment}" (segmenter {quoted(seg.card.name)})',
        [
            Step(decode, {"PNG": contract.PHOTO_PNG}, {"image": "photo"}),
            Step(segment, {"image": "photo"}, {"labels": "ids"}),
            Step(encode, {"labels": "ids"}, {"PNG": contract.LABELS_PNG, contract.COLOR_PNG: contract.COLOR_PNG}),
        ],
        [contract.LABELS_PNG, contract.COLOR_PNG],
        {
            contract.PHOTO_PNG: f"a photo (PNG or JPEG), area-resized to {h}x{w}",
            contract.LABELS_PNG: f"1-channel label ids in the {quoted(label_set)} file convention (lossless)",
            contract.COLOR_PNG: "the same labels in palette colors",
        },
        [f'Raw tensors (RGB in, ids out, no PNG cost): call model "{segment}" directly.'],
    )
    repo.add_ensemble(pipeline, {"card": seg.card.name})


def photo2photo_problem(gen: GraphSource, seg: GraphSource) -> str:
    if get_label_set(gen.card.label_set).to_dict() != get_label_set(seg.card.label_set).to_dict():
        return (
            f"segmenter {seg.card.name!r} labels {label_set_name(seg.card)!r} but generator {gen.card.name!r} "
            f"renders {label_set_name(gen.card)!r}"
        )
    if get_label_set(seg.card.label_set).num_ids > render_io(gen.card).num_classes:
        return f"segmenter {seg.card.name!r} produces ids the generator {gen.card.name!r} has no channel for"
    return ""


def add_photo2photo(repo: Repository, gen: GraphSource, seg: GraphSource, render: str, opts: ServingOptions) -> None:
    seg_labels, gen_labels = Tensor.of(seg.tensor("labels")), Tensor.of(gen.tensor("labels"))
    own = seg_labels.dims != gen_labels.dims or seg_labels.dtype != gen_labels.dtype
    h, w = seg_labels.dims[1], seg_labels.dims[2]
    pipeline = Pipeline(
        "photo2photo",
        f'a real street photo -> its labels ("segment") -> a re-rendered photo ("{render}")',
        [
            Step("decode_photo", {"PNG": contract.PHOTO_PNG}, {"image": "photo"}),
            Step("segment", {"image": "photo"}, {"labels": "ids"}),
            Step(
                "encode_labels", {"labels": "ids"}, {"PNG": contract.LABELS_PNG, contract.COLOR_PNG: contract.COLOR_PNG}
            ),
            *_render_steps(repo, render, gen, opts, seg_labels, "_photo2photo" if own else ""),
            Step("encode_png", {"image": "image"}, {"PNG": contract.RENDERED_PNG}),
        ],
        [contract.RENDERED_PNG, contract.LABELS_PNG, contract.COLOR_PNG],
        {
            contract.PHOTO_PNG: f"a photo (PNG or JPEG), area-resized to the segmenter's {h}x{w}",
            contract.RENDERED_PNG: "the photo the generator renders from the photo's labels",
            contract.LABELS_PNG: "the labels the segmenter found (1-channel ids, lossless)",
            contract.COLOR_PNG: "the same labels in palette colors",
        },
    )
    repo.add_ensemble(pipeline, {"card": f"{seg.card.name} -> {gen.card.name}"})

"""Build a Triton model repository from model cards and the templates in ``cityserve/serving/triton_models/``.

One repository per target (docs/architecture.md "Targets"), from the same templates and cards:

* ``cpu``: render / segment graphs run by onnxruntime inside Triton's python backend (the server the
  nvidia-pytriton wheel ships has no onnxruntime backend);
* ``gpu-onnx``: ``onnxruntime_onnx`` models (CUDA execution provider, optionally TensorRT's);
* ``gpu-trt``: ``tensorrt_plan`` models, engines built on the serving GPU by ``build_engines.sh``
  (or copied in with ``plans=``).

Per generator: ``render`` (raw tensors: label ids uint8 [B,1,H,W] in, RGB uint8 [B,H,W,3] out),
``decode_png`` (label PNG -> ids), ``prepare_render`` where the graph needs instances or a latent, and
the ``label2photo`` ensemble. Per segmenter: ``segment``, ``decode_photo``, ``encode_labels`` and the
``photo2labels`` ensemble. With both, ``photo2photo``. ``encode_png`` is shared. The first generator /
segmenter gets the plain names; later ones get ``_<card name>`` appended.

The tensors of every render/segment config are read from the exported ONNX graph, every config is
parsed as Triton's ``ModelConfig`` protobuf before it is written, and configs of graph models are
checked against the graph (``check_config_against_onnx``), so a repository that builds also loads.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import json
import os
import re
import shutil
import string
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ..cards import CARD_SUFFIX, ModelCard, command_line, load_card, now_iso, sha256_file
from ..errors import CheckpointError, ConfigError
from .codec import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS

TARGETS = ("cpu", "gpu-trt", "gpu-onnx")
MANIFEST = "cityserve_repo.json"
ENGINE_SCRIPT = "build_engines.sh"
DEFAULT_MAX_BATCH_SIZE = 8

TRITON_TYPES = {
    "uint8": "TYPE_UINT8",
    "int8": "TYPE_INT8",
    "int16": "TYPE_INT16",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "float16": "TYPE_FP16",
    "float32": "TYPE_FP32",
    "float64": "TYPE_FP64",
    "bool": "TYPE_BOOL",
    "bytes": "TYPE_STRING",
}

CardSpec = Union[ModelCard, str, os.PathLike]


def templates_dir() -> Path:
    """The python-backend models and config templates shipped in the package
    (``cityserve/serving/triton_models/``), or where ``CITYSERVE_TRITON_TEMPLATES`` points."""
    env = os.environ.get("CITYSERVE_TRITON_TEMPLATES")
    path = Path(env) if env else Path(str(importlib.resources.files("cityserve.serving") / "triton_models"))
    if not (path / "label2photo" / "config.pbtxt.tmpl").is_file():
        raise ConfigError(
            f"Triton templates not found at {path}; reinstall cityserve, or set CITYSERVE_TRITON_TEMPLATES "
            f"to a cityserve/serving/triton_models/ directory"
        )
    return path


# ---- options ------------------------------------------------------------------------------------


@dataclasses.dataclass
class ServingOptions:
    """How a model is served. Defaults come from here, then the card (``extra["serving"]``, and
    ``extra["max_batch_size"]``), then explicit overrides (the command line)."""

    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    preferred_batch_sizes: Optional[list[int]] = None  # None: powers of two from 2 up to max_batch_size
    max_queue_delay_us: int = 2000
    instances: int = 1
    max_pixels: int = DEFAULT_MAX_PIXELS  # PNGs with more pixels are refused from their header
    max_bytes: int = DEFAULT_MAX_BYTES
    png_compression: int = 1
    intra_op_threads: int = 0  # cpu target: threads per instance (0: onnxruntime's default; all cores for AOT)
    warmup: bool = True
    onnx_accelerator: str = "none"  # gpu-onnx: "tensorrt" puts onnxruntime's TensorRT EP (FP16) first
    nearest_colors: bool = False  # decode_png snaps unknown colors to the nearest palette color
    cpu_engine: str = "auto"  # cpu target render model: "aot" (AOTInductor package), "onnxruntime", or "auto"
    trust_aot: bool = False  # load an AOT card's package not compiled on this machine (it is native code)

    def __post_init__(self) -> None:
        if int(self.max_batch_size) < 1:
            raise ConfigError(f"max_batch_size must be >= 1, not {self.max_batch_size}")
        if int(self.instances) < 1:
            raise ConfigError(f"instances must be >= 1, not {self.instances}")
        if self.onnx_accelerator not in ("none", "tensorrt"):
            raise ConfigError(f"onnx_accelerator must be 'none' or 'tensorrt', not {self.onnx_accelerator!r}")
        if self.cpu_engine not in ("auto", "aot", "onnxruntime"):
            raise ConfigError(f"cpu_engine must be 'auto', 'aot' or 'onnxruntime', not {self.cpu_engine!r}")
        if int(self.max_pixels) < 1 or int(self.max_bytes) < 1:
            raise ConfigError("max_pixels and max_bytes must be positive")
        if not 0 <= int(self.png_compression) <= 9:
            raise ConfigError(f"png_compression must be 0..9, not {self.png_compression}")

    @property
    def preferred(self) -> list[int]:
        if self.preferred_batch_sizes:
            sizes = sorted({int(s) for s in self.preferred_batch_sizes})
            bad = [s for s in sizes if not 1 <= s <= self.max_batch_size]
            if bad:
                raise ConfigError(f"preferred batch sizes {bad} are outside 1..max_batch_size ({self.max_batch_size})")
            return sizes
        sizes, s = [], 2
        while s <= self.max_batch_size:
            sizes.append(s)
            s *= 2
        if self.max_batch_size > 1 and self.max_batch_size not in sizes:
            sizes.append(self.max_batch_size)
        return sizes


def serving_options(card: Optional[ModelCard], overrides: Optional[dict[str, Any]] = None) -> ServingOptions:
    values: dict[str, Any] = {}
    if card is not None:
        extra = card.extra or {}
        if "max_batch_size" in extra:
            values["max_batch_size"] = extra["max_batch_size"]
        serving = extra.get("serving") or {}
        known = {f.name for f in dataclasses.fields(ServingOptions)}
        unknown = set(serving) - known
        if unknown:
            raise ConfigError(
                f"card {card.name}: unknown serving option(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(known))}"
            )
        if "trust_aot" in serving:  # a card must not vouch for its own native code
            raise ConfigError(f"card {card.name}: trust_aot is not a card option; only the command line trusts")
        values.update(serving)
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return ServingOptions(**values)


# ---- sources: a card and its exported graph -------------------------------------------------------


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


def graph_io(onnx_path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    import onnx

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


def resolve_source(spec: CardSpec, work_dir: Path) -> GraphSource:
    """A card (exported or not) or an exported ``.onnx`` -> its graph (exported into ``work_dir`` if the
    card has none yet)."""
    if isinstance(spec, (str, os.PathLike)) and str(spec).endswith(".onnx"):
        from ..export.onnx_export import card_from_onnx

        onnx_path = Path(spec).resolve()
        if not onnx_path.is_file():
            raise CheckpointError(f"ONNX graph {onnx_path} does not exist")
        card = card_from_onnx(onnx_path)
    else:
        if isinstance(spec, (str, os.PathLike)) and str(spec).endswith(".plan"):
            spec = Path(spec).with_name(Path(spec).stem + CARD_SUFFIX)
        card = spec if isinstance(spec, ModelCard) else load_card(spec)
        onnx_info = (card.extra or {}).get("onnx") or {}
        onnx_path = None
        if onnx_info.get("file") and card.path is not None:
            candidate = card.directory / onnx_info["file"]
            if candidate.is_file():
                if onnx_info.get("sha256") and sha256_file(candidate) != onnx_info["sha256"]:
                    raise CheckpointError(f"{candidate} does not match the sha256 its card {card.path.name} records")
                onnx_path = candidate
        if onnx_path is None:
            from ..export.onnx_export import export_onnx

            onnx_path = export_onnx(card, work_dir / re.sub(r"[^A-Za-z0-9_.-]", "_", card.name))
    if card.kind not in ("generator", "segmenter"):
        raise ConfigError(f"card {card.name}: kind {card.kind!r} is neither 'generator' nor 'segmenter'")
    inputs, outputs = graph_io(onnx_path)
    plan = None
    trt_file = ((card.extra or {}).get("tensorrt") or {}).get("file")
    if trt_file and card.path is not None and (card.directory / trt_file).is_file():
        plan = card.directory / trt_file
    src = GraphSource(
        card,
        onnx_path,
        inputs,
        outputs,
        plan,
        from_onnx=isinstance(spec, (str, os.PathLike)) and str(spec).endswith(".onnx"),
    )
    expected_out = "image" if card.kind == "generator" else "labels"
    if [o["name"] for o in outputs] != [expected_out]:
        raise ConfigError(
            f"{onnx_path}: a {card.kind} graph has the single output {expected_out!r}, "
            f"not {[o['name'] for o in outputs]}"
        )
    for t in inputs + outputs:
        t["shape"] = _contract_shape(src, t)
    return src


def _contract_shape(src: GraphSource, t: dict[str, Any]) -> list:
    """The tensor's shape with the batch axis first and every other axis fixed: the graph's own dims
    where the graph fixes them (they must agree with the card), the docs/architecture.md contract's (from the
    card's H, W) where the exporter left them symbolic."""
    card = src.card
    h, w = card.height, card.width
    contract: dict[str, list[int]] = {"labels": [1, h, w], "instances": [1, h, w]}
    contract["image"] = [h, w, 3]
    if t["name"] == "z" and card.kind == "generator":
        from ..models.registry import render_io

        contract["z"] = [render_io(card).z_dim]
    graph = t["shape"]
    expected = contract.get(t["name"])
    if expected is None or len(graph) != len(expected) + 1:
        raise ConfigError(
            f"{src.onnx}: tensor {t['name']!r} of shape {graph} is not part of the {card.kind} "
            f"contract (docs/architecture.md: labels/instances [B,1,H,W], z [B,z_dim], image [B,H,W,3])"
        )
    out = [graph[0]]
    for g, e in zip(graph[1:], expected):
        if isinstance(g, int) and g > 0 and g != e:
            raise ConfigError(
                f"{src.onnx}: tensor {t['name']!r} has shape {graph} but card {card.name} "
                f"says {card.height}x{card.width} (expected [B, {', '.join(map(str, expected))}])"
            )
        out.append(e)
    return out


# ---- pbtxt helpers ------------------------------------------------------------------------------


def triton_type(dtype: str) -> str:
    if dtype not in TRITON_TYPES:
        raise ConfigError(f"no Triton data type for {dtype!r}")
    return TRITON_TYPES[dtype]


def _dims(dims: Iterable[int]) -> str:
    return "[ " + ", ".join(str(int(d)) for d in dims) + " ]"


def tensor_block(kind: str, tensors: list[tuple[str, str, list[int]]]) -> str:
    """``input [ ... ]`` / ``output [ ... ]`` from (name, numpy dtype name, dims without batch)."""
    rows = [f'  {{ name: "{n}" data_type: {triton_type(d)} dims: {_dims(s)} }}' for n, d, s in tensors]
    return f"{kind} [\n" + ",\n".join(rows) + "\n]"


def batching_block(opts: ServingOptions) -> str:
    lines = ["dynamic_batching {"]
    pref = [s for s in opts.preferred if s <= opts.max_batch_size]
    if pref:
        lines.append(f"  preferred_batch_size: {_dims(pref)}")
    lines.append(f"  max_queue_delay_microseconds: {int(opts.max_queue_delay_us)}")
    lines.append("  default_queue_policy { allow_timeout_override: true }")
    lines.append("}")
    return "\n".join(lines)


def instance_block(kind: str, count: int) -> str:
    return f"instance_group [\n  {{ kind: {kind} count: {int(count)} }}\n]"


def parameters_block(params: dict[str, Any]) -> str:
    return "\n".join(
        f'parameters {{ key: "{k}" value: {{ string_value: {json.dumps(str(v))} }} }}' for k, v in params.items()
    )


def warmup_block(inputs: list[tuple[str, str, list[int]]], batch_sizes: list[int]) -> str:
    """Warm-up requests at each batch size: zero label ids (valid for every model) / random others."""
    entries = []
    for b in batch_sizes:
        feeds = []
        for name, dtype, dims in inputs:
            data = "zero_data: true" if name in ("labels", "image") else "random_data: true"
            feeds.append(
                f'    inputs {{ key: "{name}" value: {{ data_type: {triton_type(dtype)} dims: {_dims(dims)} {data} }} }}'
            )
        entries.append(f'  {{\n    name: "warmup_batch_{b}"\n    batch_size: {b}\n' + "\n".join(feeds) + "\n  }")
    return "model_warmup [\n" + ",\n".join(entries) + "\n]"


def parse_config(text: str, where: str = "config.pbtxt"):
    """Parse config text as Triton's ``ModelConfig`` (tritonclient ships the protobuf)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as e:
        raise ConfigError(f"{where} does not parse as Triton's ModelConfig: {e}") from None


def check_config_against_onnx(config, onnx_path: Path) -> None:
    """The config's inputs/outputs are the graph's: same names, data types and (batch-less) dims."""
    from tritonclient.grpc import model_config_pb2

    g_in, g_out = graph_io(Path(onnx_path))
    batched = config.max_batch_size > 0
    for kind, c_tensors, g_tensors in (("input", config.input, g_in), ("output", config.output, g_out)):
        c_map = {t.name: t for t in c_tensors}
        g_map = {t["name"]: t for t in g_tensors}
        if set(c_map) != set(g_map):
            raise ConfigError(
                f"model {config.name}: config {kind}s {sorted(c_map)} are not the graph's {sorted(g_map)} ({onnx_path})"
            )
        for name, g in g_map.items():
            c = c_map[name]
            ctype = model_config_pb2.DataType.Name(c.data_type)
            if ctype != triton_type(g["dtype"]):
                raise ConfigError(
                    f"model {config.name}: {kind} {name!r} is {ctype} in the config but {g['dtype']} in the graph"
                )
            shape = g["shape"][1:] if batched else g["shape"]
            agree = len(c.dims) == len(shape) and all(
                (d == cd) if isinstance(d, int) and d > 0 else cd > 0 for d, cd in zip(shape, c.dims)
            )
            if not agree:
                raise ConfigError(
                    f"model {config.name}: {kind} {name!r} has dims {list(c.dims)} in the config "
                    f"but {shape} in the graph"
                )


# ---- the builder --------------------------------------------------------------------------------


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)


@dataclasses.dataclass
class _Writer:
    """Writes model directories into ``root`` and records them for the manifest."""

    root: Path
    templates: Path
    target: str
    models: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    engine_commands: list[str] = dataclasses.field(default_factory=list)
    missing_plans: list[str] = dataclasses.field(default_factory=list)

    def render_template(self, template: str, values: dict[str, Any]) -> str:
        path = self.templates / template / "config.pbtxt.tmpl"
        try:
            return string.Template(path.read_text()).substitute({k: str(v) for k, v in values.items()})
        except KeyError as e:
            raise ConfigError(f"template {path} needs a value for {e}") from None

    def write(
        self,
        name: str,
        template: str,
        values: dict[str, Any],
        files: dict[str, Path | bytes | str],
        info: dict[str, Any],
        graph: Optional[Path] = None,
    ) -> None:
        if name in self.models:
            raise ConfigError(f"two models would be named {name!r}; give the cards different names")
        text = self.render_template(template, {"name": name, **values})
        config = parse_config(text, f"{name}/config.pbtxt")
        if config.name != name:
            raise ConfigError(f"template {template} wrote name {config.name!r} for model {name!r}")
        if graph is not None:
            check_config_against_onnx(config, graph)
        model_dir = self.root / name
        version = model_dir / "1"
        version.mkdir(parents=True, exist_ok=True)
        (model_dir / "config.pbtxt").write_text(text)
        for rel, content in files.items():
            dest = version / rel
            if isinstance(content, Path):
                shutil.copyfile(content, dest)
            elif isinstance(content, bytes):
                dest.write_bytes(content)
            else:
                dest.write_text(content)
        self.models[name] = {"template": template, **info}


def _graph_model(w: _Writer, name: str, src: GraphSource, opts: ServingOptions, plans: dict[str, Path]) -> None:
    """The render or segment model of one card, for the writer's target."""
    role = "render" if src.kind == "generator" else "segment"
    ins = [(t["name"], t["dtype"], t["shape"][1:]) for t in src.inputs]
    outs = [(t["name"], t["dtype"], t["shape"][1:]) for t in src.outputs]
    values = {
        "card": src.card.name,
        "max_batch_size": opts.max_batch_size,
        "inputs": tensor_block("input", ins),
        "outputs": tensor_block("output", outs),
        "batching": batching_block(opts),
        "warmup": warmup_block(ins, sorted({1, opts.max_batch_size})) if opts.warmup else "",
    }
    params: dict[str, Any] = {
        "card_name": src.card.name,
        "height": src.card.height,
        "width": src.card.width,
        "label_set": _label_set_name(src.card),
    }
    if role == "render":
        from ..models.registry import render_io

        params["num_classes"] = render_io(src.card).num_classes
        params["label_inputs"] = "labels"
    files: dict[str, Path | bytes | str] = {"model.onnx": src.onnx, "card.json": src.card.to_json()}
    engine = "onnxruntime"
    if w.target == "cpu":
        template = f"{role}_onnxruntime_python"
        params["intra_op_threads"] = opts.intra_op_threads
        values["instance_group"] = instance_block("KIND_CPU", opts.instances)
        files["model.py"] = w.templates / "render_onnxruntime_python" / "model.py"
        if role == "render" and _cpu_render_engine(src, opts) == "aot":
            from ..export.aot import aot_card_for

            engine, template = "aot", "render_aot_python"
            aot_card = aot_card_for(src.card, trust=bool(opts.trust_aot))
            values["dtype"] = aot_card.extra["aot"]["dtype"].upper()
            files = {
                "render.pt2": aot_card.directory / aot_card.extra["aot"]["file"],
                "card.json": aot_card.to_json(),
                "model.py": w.templates / template / "model.py",
            }
    elif w.target == "gpu-onnx":
        template = f"{role}_onnx"
        values["instance_group"] = instance_block("KIND_GPU", opts.instances)
        if opts.onnx_accelerator == "tensorrt":
            values["optimization"] = (
                "optimization { execution_accelerators { gpu_execution_accelerator: [ "
                '{ name: "tensorrt" parameters { key: "precision_mode" value: "FP16" } } ] } }'
            )
            values["accelerator_note"] = ", TensorRT execution provider in FP16 first"
        else:
            values["optimization"] = ""
            values["accelerator_note"] = ""
    else:  # gpu-trt
        template = f"{role}_trt"
        values["instance_group"] = instance_block("KIND_GPU", opts.instances)
        plan = plans.get(src.card.name) or plans.get(name) or src.plan
        if plan is not None:
            files["model.plan"] = Path(plan)
        else:
            w.missing_plans.append(name)
        shapes = {k: [] for k in ("min", "opt", "max")}
        opt_batch = max([s for s in opts.preferred if s <= opts.max_batch_size] or [1])
        for n, _, dims in ins:
            for key, b in (("min", 1), ("opt", opt_batch), ("max", opts.max_batch_size)):
                shapes[key].append(f"{n}:" + "x".join(str(d) for d in [b, *dims]))
        w.engine_commands.append(
            f'trtexec --onnx="$REPO/{name}/1/model.onnx" --saveEngine="$REPO/{name}/1/model.plan" --fp16 '
            f"--minShapes={','.join(shapes['min'])} --optShapes={','.join(shapes['opt'])} "
            f"--maxShapes={','.join(shapes['max'])}"
        )
    values["parameters"] = parameters_block(params)
    info = {
        "role": role,
        "card": src.card.name,
        "onnx_sha256": sha256_file(src.onnx),
        "engine": engine,
        "inputs": [{"name": n, "dtype": d, "dims": s} for n, d, s in ins],
        "outputs": [{"name": n, "dtype": d, "dims": s} for n, d, s in outs],
    }
    w.write(name, template, values, files, info, graph=src.onnx)


def _cpu_render_engine(src: GraphSource, opts: ServingOptions) -> str:
    """ "auto": the AOTInductor package where the CPU has BF16 instructions and a card was given (an
    exported .onnx graph is served as that graph, by onnxruntime)."""
    if opts.cpu_engine != "auto":
        return opts.cpu_engine
    from ..hardware import cpu_supports_bf16

    return "aot" if cpu_supports_bf16() and not src.from_onnx else "onnxruntime"


def _label_set_name(card: ModelCard) -> str:
    return card.label_set if isinstance(card.label_set, str) else str(card.label_set.get("name", "custom"))


def _label_set_json(card: ModelCard) -> str:
    from ..labels import get_label_set

    return json.dumps(get_label_set(card.label_set).to_dict(), indent=1)


def _python_common(opts: ServingOptions) -> dict[str, Any]:
    return {
        "max_batch_size": opts.max_batch_size,
        "batching": batching_block(opts),
        "instance_group": instance_block("KIND_CPU", opts.instances),
    }


def _prepare_step(
    w: _Writer,
    name: str,
    gen: GraphSource,
    opts: ServingOptions,
    ids: tuple[str, list[int]],
    source_tensor: str,
    suffix: str,
) -> str:
    """The ensemble step(s) from ``source_tensor`` (ids) to the render graph, adding a prepare_render
    model when the graph needs instances / a latent or the ids have another size or dtype."""
    from ..models.registry import render_io

    io = render_io(gen.card)
    labels_t = gen.tensor("labels")
    ids_dtype, ids_dims = ids
    direct = (
        not io.use_instance and not io.z_dim and ids_dims == labels_t["shape"][1:] and ids_dtype == labels_t["dtype"]
    )
    if direct:
        return (
            f'    {{\n      model_name: "{name}"\n      model_version: -1\n'
            f'      input_map {{ key: "labels" value: "{source_tensor}" }}\n'
            f'      output_map {{ key: "image" value: "image" }}\n    }},'
        )
    prep = f"prepare_render{suffix}"
    if prep not in w.models:
        outs = [(t["name"], t["dtype"], t["shape"][1:]) for t in gen.inputs]
        what = ", ".join(o[0] for o in outs) + (" (ids nearest-resized)" if ids_dims != labels_t["shape"][1:] else "")
        w.write(
            prep,
            "prepare_render",
            {
                **_python_common(opts),
                "render": name,
                "what": what,
                "inputs": tensor_block("input", [("ids", ids_dtype, ids_dims)]),
                "outputs": tensor_block("output", outs),
                "parameters": parameters_block(
                    {
                        "height": gen.card.height,
                        "width": gen.card.width,
                        "num_classes": io.num_classes,
                        "dtype": labels_t["dtype"],
                        "z_dim": io.z_dim,
                    }
                ),
            },
            {"model.py": w.templates / "prepare_render" / "model.py"},
            {"role": "prepare_render", "card": gen.card.name},
        )
    in_map = "\n".join(f'      output_map {{ key: "{t["name"]}" value: "{prep}_{t["name"]}" }}' for t in gen.inputs)
    render_in = "\n".join(f'      input_map {{ key: "{t["name"]}" value: "{prep}_{t["name"]}" }}' for t in gen.inputs)
    return (
        f'    {{\n      model_name: "{prep}"\n      model_version: -1\n'
        f'      input_map {{ key: "ids" value: "{source_tensor}" }}\n{in_map}\n    }},\n'
        f'    {{\n      model_name: "{name}"\n      model_version: -1\n{render_in}\n'
        f'      output_map {{ key: "image" value: "image" }}\n    }},'
    )


@dataclasses.dataclass
class BuiltRepository:
    path: Path
    target: str
    models: dict[str, dict[str, Any]]
    ensembles: list[str]
    notes: list[str]

    def configs(self) -> dict[str, Path]:
        return {name: self.path / name / "config.pbtxt" for name in self.models}


def build_repository(
    cards: Iterable[CardSpec],
    target: str,
    out_dir: Union[str, os.PathLike],
    overrides: Optional[dict[str, Any]] = None,
    plans: Optional[dict[str, Any]] = None,
    overwrite: bool = False,
    work_dir: Optional[Union[str, os.PathLike]] = None,
) -> BuiltRepository:
    """Write a Triton model repository for ``target`` serving ``cards`` (model cards, their
    weights/directories, or exported ``.onnx`` graphs) into ``out_dir``.

    ``overrides``: ServingOptions fields that win over the cards' own; ``plans``: card name (or model
    name) -> TensorRT engine file for the gpu-trt target. The repository is assembled in a temporary
    directory beside ``out_dir`` and moved into place only when complete.
    """
    if target not in TARGETS:
        raise ConfigError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")
    out = Path(out_dir).resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise ConfigError(f"{out} exists and is not empty; pass --force to replace it")
        if out.is_dir() and not (out / MANIFEST).is_file():
            raise ConfigError(f"{out} is not a cityserve repository ({MANIFEST} missing); refusing to replace it")
    specs = list(cards)
    if not specs:
        raise ConfigError("no model cards given: pass at least one generator or segmenter (--model CARD)")
    plans = {k: Path(v) for k, v in (plans or {}).items()}
    for k, p in plans.items():
        if not p.is_file():
            raise CheckpointError(f"TensorRT engine {p} (for {k}) does not exist")
    templates = templates_dir()

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    own_work = work_dir is None
    work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="cityserve-export-"))
    try:
        sources = [resolve_source(s, work) for s in specs]
        gens = [s for s in sources if s.kind == "generator"]
        segs = [s for s in sources if s.kind == "segmenter"]
        w = _Writer(tmp, templates, target)
        notes: list[str] = []
        ensembles: list[str] = []
        base = serving_options(None, overrides)

        if gens:
            w.write(
                "encode_png",
                "encode_png",
                {
                    **_python_common(base),
                    "what": "RGB uint8 [H, W, 3] -> photo PNG bytes",
                    "inputs": tensor_block("input", [("image", "uint8", [-1, -1, 3])]),
                    "outputs": tensor_block("output", [("PNG", "bytes", [1])]),
                    "parameters": parameters_block({"mode": "image", "compression": base.png_compression}),
                },
                {"model.py": templates / "encode_png" / "model.py"},
                {"role": "encode_png"},
            )
        gen_names: dict[str, str] = {}
        for i, gen in enumerate(gens):
            from ..models.registry import render_io

            suffix = "" if i == 0 else f"_{_slug(gen.card.name)}"
            opts = serving_options(gen.card, overrides)
            io = render_io(gen.card)
            render = f"render{suffix}"
            gen_names[gen.card.name] = render
            _graph_model(w, render, gen, opts, plans)
            labels_t = gen.tensor("labels")
            h, wd = gen.card.height, gen.card.width
            decode = f"decode_png{suffix}"
            w.write(
                decode,
                "decode_png",
                {
                    **_python_common(opts),
                    "max_pixels": opts.max_pixels,
                    "max_bytes": opts.max_bytes,
                    "what": f"label PNG bytes -> label ids [1, {h}, {wd}] for render model {render!r}",
                    "outputs": tensor_block("output", [("labels", labels_t["dtype"], [1, h, wd])]),
                    "parameters": parameters_block(
                        {
                            "mode": "labels",
                            "height": h,
                            "width": wd,
                            "num_classes": io.num_classes,
                            "dtype": labels_t["dtype"],
                            "label_set": _label_set_name(gen.card),
                            "label_set_file": "label_set.json",
                            "max_pixels": opts.max_pixels,
                            "max_bytes": opts.max_bytes,
                            "nearest": str(bool(opts.nearest_colors)).lower(),
                        }
                    ),
                },
                {"model.py": templates / "decode_png" / "model.py", "label_set.json": _label_set_json(gen.card)},
                {"role": "decode_png", "card": gen.card.name},
            )
            steps = _prepare_step(w, render, gen, opts, (labels_t["dtype"], [1, h, wd]), "ids", suffix)
            ens = f"label2photo{suffix}"
            w.write(
                ens,
                "label2photo",
                {
                    "max_batch_size": opts.max_batch_size,
                    "card": gen.card.name,
                    "render": render,
                    "decode": decode,
                    "encode": "encode_png",
                    "height": h,
                    "width": wd,
                    "label_set": _label_set_name(gen.card),
                    "render_steps": steps,
                },
                {},
                {"role": "ensemble", "card": gen.card.name},
            )
            ensembles.append(ens)

        for i, seg in enumerate(segs):
            suffix = "" if i == 0 else f"_{_slug(seg.card.name)}"
            opts = serving_options(seg.card, overrides)
            segment = f"segment{suffix}"
            _graph_model(w, segment, seg, opts, plans)
            img_t, lab_t = seg.tensor("image"), seg.tensor("labels")
            sh, sw = img_t["shape"][1], img_t["shape"][2]
            decode = f"decode_photo{suffix}"
            w.write(
                decode,
                "decode_png",
                {
                    **_python_common(opts),
                    "max_pixels": opts.max_pixels,
                    "max_bytes": opts.max_bytes,
                    "what": f"photo PNG/JPEG bytes -> RGB uint8 [{sh}, {sw}, 3] for segment model {segment!r}",
                    "outputs": tensor_block("output", [("image", "uint8", [sh, sw, 3])]),
                    "parameters": parameters_block(
                        {
                            "mode": "photo",
                            "height": sh,
                            "width": sw,
                            "max_pixels": opts.max_pixels,
                            "max_bytes": opts.max_bytes,
                        }
                    ),
                },
                {"model.py": templates / "decode_png" / "model.py"},
                {"role": "decode_photo", "card": seg.card.name},
            )
            encode = f"encode_labels{suffix}"
            w.write(
                encode,
                "encode_png",
                {
                    **_python_common(opts),
                    "what": f"label ids -> id PNG ({_label_set_name(seg.card)} file convention) and color PNG",
                    "inputs": tensor_block("input", [("labels", lab_t["dtype"], lab_t["shape"][1:])]),
                    "outputs": tensor_block("output", [("PNG", "bytes", [1]), ("COLOR_PNG", "bytes", [1])]),
                    "parameters": parameters_block(
                        {
                            "mode": "labels",
                            "compression": opts.png_compression,
                            "label_set": _label_set_name(seg.card),
                            "label_set_file": "label_set.json",
                        }
                    ),
                },
                {"model.py": templates / "encode_png" / "model.py", "label_set.json": _label_set_json(seg.card)},
                {"role": "encode_labels", "card": seg.card.name},
            )
            ens = f"photo2labels{suffix}"
            w.write(
                ens,
                "photo2labels",
                {
                    "max_batch_size": opts.max_batch_size,
                    "card": seg.card.name,
                    "segment": segment,
                    "decode": decode,
                    "encode": encode,
                    "height": sh,
                    "width": sw,
                    "label_set": _label_set_name(seg.card),
                },
                {},
                {"role": "ensemble", "card": seg.card.name},
            )
            ensembles.append(ens)

        if gens and segs:
            gen, seg = gens[0], segs[0]
            note = _photo2photo_problem(gen, seg)
            if note:
                notes.append(f"photo2photo not built: {note}")
            else:
                opts = serving_options(gen.card, overrides)
                seg_opts = serving_options(seg.card, overrides)
                lab_t = seg.tensor("labels")
                render = gen_names[gen.card.name]
                own = (
                    lab_t["shape"][1:] != gen.tensor("labels")["shape"][1:]
                    or lab_t["dtype"] != gen.tensor("labels")["dtype"]
                )
                steps = _prepare_step(
                    w, render, gen, opts, (lab_t["dtype"], lab_t["shape"][1:]), "ids", "_photo2photo" if own else ""
                )
                w.write(
                    "photo2photo",
                    "photo2photo",
                    {
                        "max_batch_size": min(opts.max_batch_size, seg_opts.max_batch_size),
                        "card": gen.card.name,
                        "render": render,
                        "segment": "segment",
                        "decode": "decode_photo",
                        "encode": "encode_png",
                        "encode_labels": "encode_labels",
                        "seg_height": lab_t["shape"][2],
                        "seg_width": lab_t["shape"][3],
                        "render_steps": steps,
                    },
                    {},
                    {"role": "ensemble", "card": f"{seg.card.name} -> {gen.card.name}"},
                )
                ensembles.append("photo2photo")

        if target == "gpu-trt":
            _write_engine_script(tmp, w.engine_commands)
            if w.missing_plans:
                notes.append(
                    f"no TensorRT engine given for {', '.join(w.missing_plans)}: build them on the "
                    f"serving GPU before starting Triton: sh {out / ENGINE_SCRIPT}"
                )
        manifest = {
            "format": "cityserve-repo/1",
            "target": target,
            "created": now_iso(),
            "command": command_line(),
            "models": w.models,
            "ensembles": ensembles,
            "notes": notes,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
        os.chmod(out, 0o755)
        return BuiltRepository(out, target, w.models, ensembles, notes)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if own_work:
            shutil.rmtree(work, ignore_errors=True)


def _photo2photo_problem(gen: GraphSource, seg: GraphSource) -> str:
    from ..labels import get_label_set
    from ..models.registry import render_io

    if get_label_set(gen.card.label_set).to_dict() != get_label_set(seg.card.label_set).to_dict():
        return (
            f"segmenter {seg.card.name} labels {_label_set_name(seg.card)} but generator {gen.card.name} "
            f"renders {_label_set_name(gen.card)}"
        )
    if get_label_set(seg.card.label_set).num_ids > render_io(gen.card).num_classes:
        return f"segmenter {seg.card.name} produces ids the generator {gen.card.name} has no channel for"
    return ""


def _write_engine_script(root: Path, commands: list[str]) -> None:
    text = (
        "#!/bin/sh\n# Build the TensorRT FP16 engines of this repository on the GPU that will serve it\n"
        "# (engines are specific to the GPU and TensorRT version). Run inside the NGC Triton container.\n"
        'set -e\nREPO="$(cd "$(dirname "$0")" && pwd)"\n' + "\n".join(commands) + "\n"
    )
    (root / ENGINE_SCRIPT).write_text(text)
    os.chmod(root / ENGINE_SCRIPT, 0o755)


def load_manifest(repo: Union[str, os.PathLike]) -> dict[str, Any]:
    path = Path(repo) / MANIFEST
    if not path.is_file():
        raise ConfigError(f"{repo} is not a cityserve model repository ({MANIFEST} missing)")
    return json.loads(path.read_text())


__all__ = [
    "TARGETS",
    "ServingOptions",
    "BuiltRepository",
    "build_repository",
    "check_config_against_onnx",
    "parse_config",
    "serving_options",
    "load_manifest",
    "templates_dir",
    "CARD_SUFFIX",
]

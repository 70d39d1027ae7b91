"""Triton ``ModelConfig`` messages for each model role of a cityserve repository, and their text form.

Every config is a ``tritonclient.grpc.model_config_pb2.ModelConfig`` built field by field. Values that
come from a card or a label set (names, sizes, options) only ever become protobuf fields, so no value
can end a string or add a field; ``config_text`` serialises the message with
``google.protobuf.text_format`` after a header of ``#`` comments the builder writes from its own data,
where any card-derived text passes through ``comment_text`` (one line of printable ASCII).

Roles (each function returns a ``Spec``: the message and its header):

* ``graph_model``: the render / segment graph, for a ``runtime``: ``onnxruntime_onnx``,
  ``tensorrt_plan`` or ``openvino`` (Triton's own backends; the NGC container has the OpenVINO one),
  ``onnxruntime_python``, ``aot_python`` or ``openvino_python`` (python backend);
* ``decode_labels`` (label PNG -> ids), ``decode_photo`` (photo PNG/JPEG -> RGB);
* ``encode_image`` (RGB -> PNG), ``encode_labels`` (ids -> id PNG + color PNG);
* ``prepare_render`` (ids -> the render graph's labels / instances / z);
* ``label2photo_fused`` (cpu target: label PNG -> photo PNG in one python model).

Ensembles are built from steps in ``ensembles.py``. Model names are checked by ``check_model_name``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Optional

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from .. import contract
from ..card_sections import DEFAULT_QUEUE_DELAY_US, FUSED_QUEUE_DELAY_US, ServingOptions
from ..errors import ConfigError
from .sources import graph_io

# How each graph runtime is served: ("python", the folder of its model.py in cityserve/serving/triton_models/),
# ("platform", a Triton platform) or ("backend", a Triton backend), the latter two with their file in
# MODEL_FILES, on GPU instances except openvino (CPU). A new runtime is one entry here (and one in MODEL_FILES).
RUNTIMES = {
    "onnxruntime_python": ("python", "render_onnxruntime_python"),
    "aot_python": ("python", "render_aot_python"),
    "openvino_python": ("python", "render_openvino_python"),
    "onnxruntime_onnx": ("platform", "onnxruntime_onnx"),
    "tensorrt_plan": ("platform", "tensorrt_plan"),
    "openvino": ("backend", "openvino"),
}
MODEL_FILES = {"onnxruntime_onnx": "model.onnx", "tensorrt_plan": "model.plan", "openvino": "model.onnx"}
GPU_RUNTIMES = ("onnxruntime_onnx", "tensorrt_plan")  # the others run on CPU instances
MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
_COMMENT_SAFE = re.compile(r"[^ -~]")  # anything but printable ASCII


@dataclasses.dataclass(frozen=True)
class Tensor:
    """One input or output: name, numpy dtype name ("bytes" for Triton strings), dims without batch."""

    name: str
    dtype: str
    dims: tuple[int, ...]

    @classmethod
    def of(cls, graph_tensor: Mapping[str, Any]) -> Tensor:
        """From a ``GraphSource`` tensor ({name, dtype, shape}, shape[0] the batch axis)."""
        return cls(graph_tensor["name"], graph_tensor["dtype"], tuple(graph_tensor["shape"][1:]))


PNG = Tensor(contract.PNG, "bytes", (1,))


@dataclasses.dataclass
class Spec:
    """A model's config and the comment lines written above it."""

    config: mc.ModelConfig
    header: list[str]


# ---- names, types, text -----------------------------------------------------------------------


def check_model_name(name: str, what: str = "model name") -> str:
    """``name`` if Triton can take it as a model (and directory) name, else a one-line ConfigError."""
    if not isinstance(name, str) or not MODEL_NAME.fullmatch(name):
        raise ConfigError(
            f"{what} {name!r:.80} is not a usable Triton model name (1-100 of A-Z a-z 0-9 _ . -, "
            f"not starting with . or -)"
        )
    return name


def triton_type(dtype: str) -> int:
    """numpy dtype name (or "bytes") -> the ``ModelConfig`` DataType value, by the tensor contract."""
    try:
        return mc.DataType.Value(contract.triton_type(dtype))
    except ValueError:
        raise ConfigError(f"no Triton data type for {dtype!r}") from None


def comment_text(text: Any, limit: int = 160) -> str:
    """``text`` as one safe comment line: printable ASCII only (others become ``?``), at most ``limit``."""
    s = _COMMENT_SAFE.sub("?", str(text))
    return s if len(s) <= limit else s[: limit - 3] + "..."


def quoted(text: Any) -> str:
    """A card- or label-set-derived name for a comment: quoted, one line, at most 60 characters."""
    return '"' + comment_text(text, 58) + '"'


def config_text(spec: Spec) -> str:
    """The header as ``#`` lines, then the message in protobuf text format (checked to read back equal)."""
    head = "".join(f"# {comment_text(line)}\n".replace("# \n", "#\n") for line in spec.header)
    text = head + text_format.MessageToString(spec.config, use_short_repeated_primitives=True, use_index_order=True)
    if parse_config(text, f"{spec.config.name}/config.pbtxt") != spec.config:
        raise ConfigError(f"{spec.config.name}/config.pbtxt does not read back as the config it was written from")
    return text


def parse_config(text: str, where: str = "config.pbtxt") -> mc.ModelConfig:
    """Parse config text as Triton's ``ModelConfig``."""
    try:
        return text_format.Parse(text, mc.ModelConfig())
    except text_format.ParseError as e:
        raise ConfigError(f"{where} does not parse as Triton's ModelConfig: {e}") from None


# ---- the parts every model config has ---------------------------------------------------------


def new_config(
    name: str, max_batch_size: int, inputs: Iterable[Tensor], outputs: Iterable[Tensor], **kind: str
) -> mc.ModelConfig:
    """name, ``backend=`` or ``platform=``, max_batch_size, inputs and outputs."""
    cfg = mc.ModelConfig(name=check_model_name(name), max_batch_size=int(max_batch_size), **kind)
    for t in inputs:
        cfg.input.add(name=t.name, data_type=triton_type(t.dtype), dims=[int(d) for d in t.dims])
    for t in outputs:
        cfg.output.add(name=t.name, data_type=triton_type(t.dtype), dims=[int(d) for d in t.dims])
    return cfg


def set_batching(cfg: mc.ModelConfig, opts: ServingOptions, delay_us: Optional[int] = DEFAULT_QUEUE_DELAY_US) -> None:
    """Dynamic batching with the preferred sizes and queue delay (``delay_us`` unless the options name
    one; None: no dynamic batching, requests run as they come); clients may set per-request timeouts."""
    if opts.queue_delay_us(delay_us) is None:
        return
    batching = cfg.dynamic_batching
    batching.preferred_batch_size.extend(s for s in opts.preferred if s <= opts.max_batch_size)
    batching.max_queue_delay_microseconds = int(opts.queue_delay_us(delay_us))
    batching.default_queue_policy.allow_timeout_override = True


def set_instances(cfg: mc.ModelConfig, gpu: bool, count: int) -> None:
    kind = mc.ModelInstanceGroup.KIND_GPU if gpu else mc.ModelInstanceGroup.KIND_CPU
    cfg.instance_group.add(kind=kind, count=int(count))


def set_parameters(cfg: mc.ModelConfig, params: Mapping[str, Any]) -> None:
    """String parameters (what the python models read); booleans as "true" / "false"."""
    for key, value in params.items():
        cfg.parameters[key].string_value = str(value).lower() if isinstance(value, bool) else str(value)


def add_warmup(cfg: mc.ModelConfig, batch_sizes: Iterable[int]) -> None:
    """Warm-up requests at each batch size: zero label ids / black photos (valid for every model),
    random values for the other inputs."""
    for b in batch_sizes:
        w = cfg.model_warmup.add(name=f"warmup_batch_{b}", batch_size=int(b))
        for t in cfg.input:
            feed = w.inputs[t.name]
            feed.data_type = t.data_type
            feed.dims.extend(t.dims)
            if t.name in ("labels", "image"):
                feed.zero_data = True
            else:
                feed.random_data = True


def python_model(
    name: str,
    folder: str,
    inputs: list[Tensor],
    outputs: list[Tensor],
    opts: ServingOptions,
    params: Mapping[str, Any],
    delay_us: Optional[int] = DEFAULT_QUEUE_DELAY_US,
) -> mc.ModelConfig:
    """A python-backend model on CPU instances with dynamic batching (``folder``: its model.py's)."""
    cfg = new_config(name, opts.max_batch_size, inputs, outputs, backend="python")
    set_batching(cfg, opts, delay_us)
    set_instances(cfg, False, opts.instances)
    set_parameters(cfg, params)
    return cfg


def source_line(folder: str) -> str:
    return f"Python backend: cityserve/serving/triton_models/{folder}/model.py."


# ---- the roles --------------------------------------------------------------------------------


def graph_model(
    name: str,
    runtime: str,
    inputs: list[Tensor],
    outputs: list[Tensor],
    opts: ServingOptions,
    params: Mapping[str, Any],
    header: list[str],
) -> Spec:
    """The render or segment graph of one card on ``runtime`` (see ``RUNTIMES``)."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown graph runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
    how, value = RUNTIMES[runtime]
    if how == "python":
        cfg = python_model(name, value, inputs, outputs, opts, params)
        header = [*header, source_line(value)]
    else:
        cfg = new_config(name, opts.max_batch_size, inputs, outputs, **{how: value})
        cfg.default_model_filename = MODEL_FILES[runtime]
        set_batching(cfg, opts)
        set_instances(cfg, runtime in GPU_RUNTIMES, opts.instances)
        if runtime == "onnxruntime_onnx" and opts.onnx_accelerator == "tensorrt":
            trt = cfg.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
            trt.parameters["precision_mode"] = "FP16"
        set_parameters(cfg, params)
    if opts.warmup:
        add_warmup(cfg, sorted({1, opts.max_batch_size}))
    return Spec(cfg, header)


def decode_labels(
    name: str, labels: Tensor, opts: ServingOptions, label_set: str, num_classes: int, render: str
) -> Spec:
    """Label PNG bytes -> label ids at exactly the render graph's size and dtype."""
    h, w = labels.dims[1], labels.dims[2]
    params = {
        "mode": "labels",
        "height": h,
        "width": w,
        "num_classes": num_classes,
        "dtype": labels.dtype,
        "label_set": label_set,
        "label_set_file": "label_set.json",
        "max_pixels": opts.max_pixels,
        "max_bytes": opts.max_bytes,
        "nearest": bool(opts.nearest_colors),
    }
    cfg = python_model(name, "decode_png", [PNG], [Tensor("labels", labels.dtype, labels.dims)], opts, params)
    return Spec(
        cfg,
        [
            f'"{name}": label PNG bytes -> label ids [1, {h}, {w}] for render model "{render}"',
            f"(label set {quoted(label_set)}: 1-channel ids in its file convention, or palette colors).",
            f"PNG headers are checked before decoding: more than {opts.max_pixels} pixels or {opts.max_bytes}",
            "bytes is refused (PNG bombs); a bad item fails only its own request, naming the problem.",
            source_line("decode_png"),
        ],
    )


def decode_photo(name: str, image: Tensor, opts: ServingOptions, segment: str) -> Spec:
    """Photo PNG/JPEG bytes -> RGB uint8 area-resized to the segment graph's size."""
    h, w = image.dims[0], image.dims[1]
    params = {"mode": "photo", "height": h, "width": w, "max_pixels": opts.max_pixels, "max_bytes": opts.max_bytes}
    cfg = python_model(name, "decode_png", [PNG], [Tensor("image", "uint8", (h, w, 3))], opts, params)
    return Spec(
        cfg,
        [
            f'"{name}": photo PNG/JPEG bytes -> RGB uint8 [{h}, {w}, 3] for segment model "{segment}".',
            f"Headers are checked before decoding: more than {opts.max_pixels} pixels or {opts.max_bytes} bytes",
            "is refused; a bad item fails only its own request, naming the problem.",
            source_line("decode_png"),
        ],
    )


def encode_image(name: str, opts: ServingOptions) -> Spec:
    """RGB uint8 [H, W, 3] of any size -> photo PNG bytes."""
    params = {"mode": "image", "compression": opts.png_compression}
    cfg = python_model(name, "encode_png", [Tensor("image", "uint8", (-1, -1, 3))], [PNG], opts, params)
    return Spec(cfg, [f'"{name}": RGB uint8 [H, W, 3] -> photo PNG bytes.', source_line("encode_png")])


def encode_labels(name: str, labels: Tensor, opts: ServingOptions, label_set: str) -> Spec:
    """Label ids -> the id PNG (the label set's file convention, lossless) and a palette-color PNG."""
    params = {
        "mode": "labels",
        "compression": opts.png_compression,
        "label_set": label_set,
        "label_set_file": "label_set.json",
    }
    outputs = [PNG, Tensor("COLOR_PNG", "bytes", (1,))]
    cfg = python_model(name, "encode_png", [labels], outputs, opts, params)
    return Spec(
        cfg,
        [
            f'"{name}": label ids -> id PNG (the {quoted(label_set)} file convention) and color PNG.',
            source_line("encode_png"),
        ],
    )


def prepare_render(
    name: str, ids: Tensor, render_inputs: list[Tensor], opts: ServingOptions, params: Mapping[str, Any], render: str
) -> Spec:
    """Label ids -> the render graph's inputs (instances from the ids, a latent, a nearest resize)."""
    cfg = python_model(name, "prepare_render", [Tensor("ids", ids.dtype, ids.dims)], render_inputs, opts, params)
    resized = " (ids nearest-resized)" if ids.dims != render_inputs[0].dims else ""
    what = ", ".join(t.name for t in render_inputs) + resized
    if params.get("latent") == "zero":
        what += "; z = 0, the mean style (--latent zero)"
    return Spec(
        cfg,
        [f'"{name}": label ids -> the inputs of render model "{render}":', f"{what}.", source_line("prepare_render")],
    )


def label2photo_fused(name: str, opts: ServingOptions, params: Mapping[str, Any], header: list[str]) -> Spec:
    """The cpu target's fused label2photo: the ensemble's contract (``LABELS_PNG`` -> ``PHOTO_PNG``,
    BYTES [B, 1]) in one python model that decodes, prepares, renders and encodes."""
    ins, outs = [Tensor(contract.LABELS_PNG, "bytes", (1,))], [Tensor(contract.PHOTO_PNG, "bytes", (1,))]
    params = {**params, "warmup": bool(opts.warmup)}
    cfg = python_model(name, "label2photo_python", ins, outs, opts, params, FUSED_QUEUE_DELAY_US)
    return Spec(cfg, [*header, source_line("label2photo_python")])


# ---- checks -----------------------------------------------------------------------------------


def check_config_against_onnx(config: mc.ModelConfig, onnx_path: Path) -> None:
    """The config's inputs/outputs are the graph's: same names, data types and (batch-less) dims."""
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
            if c.data_type != triton_type(g["dtype"]):
                raise ConfigError(
                    f"model {config.name}: {kind} {name!r} is {mc.DataType.Name(c.data_type)} in the config "
                    f"but {g['dtype']} in the graph"
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

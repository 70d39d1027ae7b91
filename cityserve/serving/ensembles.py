"""Ensembles built from a list of steps, checked against the configs of the models they chain.

A pipeline is data: a name, a one-line description, its ``Step`` s (a model, which ensemble tensor
feeds each of its inputs, which ensemble tensor each of its outputs becomes) and the names of the
tensors it returns. ``ensemble`` turns it into Triton's ``ModelConfig`` (``platform: "ensemble"``):
the ensemble's inputs are the tensors some step reads and no step writes, their types and dims come
from the models that read them, the outputs' from the models that write them, and ``max_batch_size``
is the smallest of its models'. Everything Triton would refuse at load time is refused here, naming
the ensemble and the step: a model not in the repository, an input left unfed (unless optional), an output the model
lacks, a tensor read before it is written, written twice or never used, a data type or dims that
differ between writer and reader, and an ensemble output that a later step also consumes (Triton
2.51 deadlocks when a client asks for a subset of outputs that includes one: server issue #7482).

Adding a pipeline takes a few lines in the repository builder, after the models it chains::

    repo.add_ensemble(Pipeline(
        "label2depth", "a label PNG -> the depth map rendered by \\"depth\\"",
        [Step("decode_png", {"PNG": "LABELS_PNG"}, {"labels": "ids"}),
         Step("depth", {"labels": "ids"}, {"depth": "depth"}),
         Step("encode_depth", {"depth": "depth"}, {"PNG": "DEPTH_PNG"})],
        outputs=["DEPTH_PNG"],
        about={"LABELS_PNG": "a label map PNG", "DEPTH_PNG": "16-bit depth PNG"}))

``render_steps`` gives the one or two steps from label ids to a render graph's image (through a
``prepare_render`` model where the graph takes more than ids).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from tritonclient.grpc import model_config_pb2 as mc

from ..errors import ConfigError
from .configs import Spec, check_model_name, comment_text, new_config


@dataclasses.dataclass(frozen=True)
class Step:
    """One model of an ensemble: ``inputs`` maps each of the model's inputs to the ensemble tensor it
    reads, ``outputs`` each of the model's outputs (those used) to the ensemble tensor it becomes."""

    model: str
    inputs: Mapping[str, str]
    outputs: Mapping[str, str]


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """An ensemble as data. ``about``: what each of its input/output tensors holds, for the header."""

    name: str
    description: str
    steps: Sequence[Step]
    outputs: Sequence[str]
    about: Mapping[str, str] = dataclasses.field(default_factory=dict)
    notes: Sequence[str] = ()


def render_steps(render: str, render_inputs: Sequence[str], prepare: str | None, ids: str = "ids") -> list[Step]:
    """Label ids (ensemble tensor ``ids``) -> ensemble tensor ``image`` through render model ``render``:
    directly, or through ``prepare`` (a prepare_render model producing ``render_inputs``)."""
    if prepare is None:
        return [Step(render, {"labels": ids}, {"image": "image"})]
    mid = {t: f"{prepare}_{t}" for t in render_inputs}
    return [Step(prepare, {"ids": ids}, mid), Step(render, mid, {"image": "image"})]


def _member(members: Mapping[str, mc.ModelConfig], where: str, model: str) -> mc.ModelConfig:
    if model not in members:
        raise ConfigError(f"{where} names model {model!r}, which the repository does not have")
    return members[model]


def ensemble(pipeline: Pipeline, members: Mapping[str, mc.ModelConfig]) -> Spec:
    """The ensemble config of ``pipeline``, checked against its models' configs (``members``)."""
    name = check_model_name(pipeline.name, "ensemble name")
    written: dict[str, tuple[int, list[int], str]] = {}  # tensor -> (data type, dims, writer step)
    read: dict[str, tuple[int, list[int], str]] = {}  # ensemble inputs: read before / without a writer
    consumed: set[str] = set()
    cfg_steps = []
    for k, step in enumerate(pipeline.steps):
        where = f"ensemble {name!r} step {k} ({step.model})"
        model = _member(members, where, step.model)
        ins = {t.name: t for t in model.input}
        outs = {t.name: t for t in model.output}
        required = {n for n, t in ins.items() if not t.optional}  # an optional input may go unfed
        if not required <= set(step.inputs) <= set(ins):
            raise ConfigError(f"{where}: feeds inputs {sorted(step.inputs)}, the model has {sorted(ins)}")
        if not set(step.outputs) <= set(outs):
            raise ConfigError(f"{where}: maps outputs {sorted(set(step.outputs) - set(outs))} the model lacks")
        for model_input, tensor in step.inputs.items():
            t = ins[model_input]
            have = written.get(tensor) or read.get(tensor)
            if have is None:
                read[tensor] = (t.data_type, list(t.dims), where)
            elif not _compatible(have, t):
                raise ConfigError(
                    f"{where}: input {model_input!r} takes {_describe(t.data_type, t.dims)} but tensor {tensor!r} "
                    f"is {_describe(have[0], have[1])} ({have[2]})"
                )
            consumed.add(tensor)
        for model_output, tensor in step.outputs.items():
            if tensor in written or tensor in read:
                raise ConfigError(f"{where}: tensor {tensor!r} is written twice (or read before it is written)")
            t = outs[model_output]
            written[tensor] = (t.data_type, list(t.dims), where)
        cfg_steps.append(step)
    for tensor in pipeline.outputs:
        if tensor not in written:
            raise ConfigError(f"ensemble {name!r}: output {tensor!r} is written by no step")
        if tensor in consumed:
            raise ConfigError(
                f"ensemble {name!r}: output {tensor!r} is also read by a step; ensemble outputs must be final "
                f"(Triton 2.51 deadlocks otherwise, server issue #7482)"
            )
    unused = sorted(set(written) - consumed - set(pipeline.outputs))
    if unused:
        raise ConfigError(f"ensemble {name!r}: tensor(s) {', '.join(unused)} are written but never used")

    max_batch = min(_member(members, name, s.model).max_batch_size for s in pipeline.steps)
    cfg = new_config(name, max_batch, [], [], platform="ensemble")
    for tensor, (dtype, dims, _) in read.items():
        cfg.input.add(name=tensor, data_type=dtype, dims=dims)
    for tensor in pipeline.outputs:
        dtype, dims, _ = written[tensor]
        cfg.output.add(name=tensor, data_type=dtype, dims=dims)
    for step in cfg_steps:
        s = cfg.ensemble_scheduling.step.add(model_name=step.model, model_version=-1)
        for key, value in step.inputs.items():
            s.input_map[key] = value
        for key, value in step.outputs.items():
            s.output_map[key] = value
    return Spec(cfg, _header(pipeline, cfg))


def _compatible(have: tuple[int, list[int], str], t: mc.ModelInput) -> bool:
    dtype, dims, _ = have
    return (
        dtype == t.data_type
        and len(dims) == len(t.dims)
        and all(a == b or a == -1 or b == -1 for a, b in zip(dims, t.dims))
    )


def _describe(dtype: int, dims) -> str:
    return f"{mc.DataType.Name(dtype)} {list(dims)}"


def _header(pipeline: Pipeline, cfg: mc.ModelConfig) -> list[str]:
    lines = [f'Ensemble "{cfg.name}": {pipeline.description}.']
    width = max(len(t.name) for t in [*cfg.input, *cfg.output])
    rows = [("in ", t) for t in cfg.input] + [("out", t) for t in cfg.output]
    for kind, t in rows:
        dtype = mc.DataType.Name(t.data_type).removeprefix("TYPE_").lower()
        about = pipeline.about.get(t.name, "")
        lines.append(f"  {kind} {t.name:<{width}}  {dtype} {list(t.dims)}  {comment_text(about)}".rstrip())
    lines.append("Steps: " + " -> ".join(s.model_name for s in cfg.ensemble_scheduling.step) + ".")
    lines.extend(pipeline.notes)
    return lines

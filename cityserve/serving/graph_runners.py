"""The in-process engines that cityserve's python-backend models run a graph with, in one place.

The cpu target's graph models (``render_onnxruntime_python``, ``render_openvino_python``,
``render_aot_python``) and the fused ``label2photo_python`` model run the same engines the same way:
each ``*_runner`` here loads one from the model's version directory and returns ``run(feeds)``, the
output arrays in ``outputs`` order. ``graph_runner`` picks one by name (the config's ``engine``
parameter). The engines are imported only when a runner is made, so this module imports without
torch, onnxruntime or openvino.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

Run = Callable[[Mapping[str, np.ndarray]], list[np.ndarray]]
ENGINES = ("onnxruntime", "openvino", "aot")


def default_threads(threads: int) -> int:
    """``threads``, or every core this process may use for 0. The server's environment sets
    OMP_NUM_THREADS=1 (several python stubs share the cores), which would leave torch on one thread."""
    return int(threads) or len(os.sched_getaffinity(0))


def onnxruntime_runner(onnx_file: str, outputs: Sequence[str], threads: int = 0) -> Run:
    """onnxruntime on the CPU; ``threads`` 0: onnxruntime's default. No spinning between calls
    (the cores are shared with the other python models)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads > 0:
        options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(onnx_file, options, providers=["CPUExecutionProvider"])
    names = list(outputs)
    return lambda feeds: session.run(names, dict(feeds))


def openvino_runner(
    onnx_file: str, outputs: Sequence[str], threads: int = 0, precision: str = "auto", what: str = "openvino"
) -> tuple[Run, str]:
    """(run, the precision it runs in): the graph compiled by OpenVINO (BF16 where the CPU has it for
    ``auto``) with one infer request; ``threads`` 0: every core this process may use."""
    from ..engines.openvino_engine import compile_onnx

    compiled, chosen = compile_onnx(onnx_file, precision or "auto", default_threads(threads), what=what)
    request = compiled.create_infer_request()
    ports = [compiled.output(name) for name in outputs]

    def run(feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        result = request.infer(dict(feeds))
        return [result[p].copy() for p in ports]  # the request's buffers are reused by the next call

    return run, chosen


def aot_runner(card_file: str, version_dir: str, threads: int = 0) -> Run:
    """A render package compiled ahead of time with AOTInductor (``render.pt2`` beside its AOT card).
    It refuses, with a one-line reason, a package for missing CPU flags / another torch / altered
    bytes; its origin was checked by the repository builder (the version directory is its copy)."""
    import torch

    from ..cards import ModelCard
    from ..export.aot import AOTPackage, aot_artifact

    torch.set_num_threads(default_threads(threads))
    with open(card_file) as f:
        aot = aot_artifact(ModelCard.from_dict(json.load(f)))
    package = AOTPackage(aot, version_dir, trust=True)
    return lambda feeds: [package(dict(feeds))]


def graph_runner(engine: str, model: Any, outputs: Sequence[str]) -> tuple[Run, str]:
    """(run, what it runs: the engine, with OpenVINO's precision) for a python model (``PythonModel``)
    whose config names ``engine``; its files and ``intra_op_threads`` / ``precision`` parameters are
    read from it."""
    threads = int(model.params.get("intra_op_threads", "0") or 0)
    if engine == "onnxruntime":
        return onnxruntime_runner(model.version_file("onnx_file", "model.onnx"), outputs, threads), engine
    if engine == "openvino":
        run, precision = openvino_runner(
            model.version_file("onnx_file", "model.onnx"),
            outputs,
            threads,
            model.params.get("precision", "auto"),
            what=f"the openvino model {model.name}",
        )
        return run, f"openvino {precision}"
    if engine == "aot":
        return aot_runner(model.version_file("card_file", "card.json"), model.version_dir, threads), "AOT package"
    raise ValueError(f"{model.name}: unknown engine {engine!r} ({' | '.join(ENGINES)})")

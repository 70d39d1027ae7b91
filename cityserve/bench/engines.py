"""The engines a benchmark can time, each as ``make(card, graph_dir) -> callable(feeds) -> output``.

Every engine runs the same graph (the card's render or segment graph, pre/post-processing inside),
so their latencies compare like for like. An engine that cannot run here raises ``Unavailable``
with the reason, and the report says "not measured: <reason>" instead of a number.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..cards import load_card
from ..engines.onnxruntime_engine import OnnxRuntimeEngine
from ..engines.tensorrt_engine import TensorRTEngine
from ..errors import ConfigError, UnavailableError
from ..export.aot import (
    BUDGET_MAX_LEVELS,
    BUDGET_MEAN_LEVELS,
    aot_card_for,
    calibration_inputs,
    compile_aot,
    level_diff,
    load_aot,
)
from ..export.forms import apply_form
from ..export.onnx_export import export_onnx
from ..export.tensorrt_build import build_engine
from ..gpu import import_tensorrt
from ..hardware import cpu_supports_bf16
from ..labels.labelmap import nearest_indices, resize_nearest
from ..models.registry import render_io
from ..models.render import render_graph_from_card
from ..models.segment import segment_graph_from_card


class Unavailable(Exception):
    """This engine cannot run on this machine; the message says why."""


Runner = Callable[[dict[str, np.ndarray]], object]


class Photo2PhotoGraph(torch.nn.Module):
    """Segment graph then render graph: uint8 photo [B,H,W,3] -> uint8 photo [B,H,W,3]."""

    def __init__(self, segment: torch.nn.Module, render: torch.nn.Module, size: tuple[int, int]):
        super().__init__()
        self.segment, self.render, self.size = segment, render, tuple(size)  # size: the generator's (H, W)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        labels = self.segment(image)
        if tuple(labels.shape[-2:]) != self.size:  # a segmenter of another size: nearest, as prepare_render does
            rows = torch.from_numpy(nearest_indices(labels.shape[-2], self.size[0]))
            cols = torch.from_numpy(nearest_indices(labels.shape[-1], self.size[1]))
            labels = labels[..., rows[:, None], cols[None, :]]
        inst = labels.to(torch.int32) if self.render.use_instance else None
        z = torch.zeros(labels.shape[0], self.render.z_dim) if self.render.z_dim else None
        return self.render(labels, inst, z)


def torch_graph(card) -> torch.nn.Module:
    if card.kind == "chain":
        g = card.generator
        return Photo2PhotoGraph(torch_graph(card.segmenter), torch_graph(g), (g.height, g.width)).eval()
    if card.kind == "segmenter":
        return segment_graph_from_card(card).eval()

    return render_graph_from_card(card).eval()


def _torch_runner(module: torch.nn.Module, device: str, autocast_dtype=None, channels_last=False) -> Runner:
    module = module.to(device)
    if channels_last:
        module = module.to(memory_format=torch.channels_last)

    def run(feeds):
        args = [torch.from_numpy(v).to(device) for v in feeds.values()]
        with torch.inference_mode():
            if autocast_dtype is not None:
                with torch.autocast(device_type=device, dtype=autocast_dtype):
                    return module(*args)
            return module(*args)

    return run


def make_torch_eager(card, device: str, **_) -> Runner:
    return _torch_runner(torch_graph(card), device)


def make_torch_eager_boundary(card, device: str, **_) -> Runner:
    """torch eager FP32 on SPADE's boundary form (``cityserve.export.boundary``): the same image."""
    if card.kind != "generator" or card.arch != "spade":
        raise Unavailable(f"the boundary form is for SPADE generators, not a {card.arch} {card.kind}")
    graph = torch_graph(card)
    try:
        graph.generator = apply_form(graph.generator, "boundary", card.name, card.arch)
    except ConfigError as e:
        raise Unavailable(str(e)) from None
    return _torch_runner(graph, device)


def make_torch_lowp(card, device: str, **_) -> Runner:
    """FP16 (CUDA) / BF16 (CUDA, or CPU with AVX-512 BF16 / AMX) autocast with channels_last."""
    if device == "cpu":
        if not cpu_supports_bf16():
            raise Unavailable("this CPU has no AVX-512 BF16 / AMX-BF16 (BF16 would be emulated)")
        return _torch_runner(torch_graph(card), device, torch.bfloat16, channels_last=True)
    return _torch_runner(torch_graph(card), device, torch.float16, channels_last=True)


def make_torch_compile(card, device: str, dtype: str = "fp32", **_) -> Runner:
    if device == "cpu" and dtype == "bf16" and not cpu_supports_bf16():
        raise Unavailable("this CPU has no AVX-512 BF16 / AMX-BF16")
    if dtype == "fp16":
        _needs_cuda(device, "FP16 autocast")
    module = torch_graph(card).to(device)
    compiled = torch.compile(module, dynamic=False)
    ac = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(dtype)
    return _torch_runner(compiled, device, ac)


def _needs_cuda(device: str, what: str) -> None:
    if device != "cuda" or not torch.cuda.is_available():
        raise Unavailable(f"{what} needs a CUDA GPU")


def make_torch_autocast(card, device: str, dtype: str, **_) -> Runner:
    """Eager torch under one autocast dtype with channels_last: FP16 on CUDA; BF16 on Ampere+ or a CPU with
    BF16 instructions."""
    if dtype == "fp16":
        _needs_cuda(device, "FP16 autocast")
    elif device == "cpu" and not cpu_supports_bf16():
        raise Unavailable("this CPU has no AVX-512 BF16 / AMX-BF16 (BF16 would be emulated)")
    elif device == "cuda" and not torch.cuda.is_bf16_supported():
        raise Unavailable("this GPU has no BF16 (Ampere or newer)")
    return _torch_runner(torch_graph(card), device, _AUTOCAST[dtype], channels_last=True)


_AUTOCAST = {"fp16": torch.float16, "bf16": torch.bfloat16}


def make_torch_cuda_graphs(card, device: str, dtype: str = "fp16", **_) -> Runner:
    """The autocast channels_last module captured once per input shape as a CUDA graph and replayed: what is
    left of the per-kernel launch cost at batch 1. Inputs are copied into the graph's static tensors."""
    _needs_cuda(device, "CUDA graphs")
    module = torch_graph(card).to(device).to(memory_format=torch.channels_last)
    ac = _AUTOCAST[dtype]
    graphs: dict = {}

    def run(feeds):
        key = tuple((k, v.shape, v.dtype.str) for k, v in feeds.items())
        if key not in graphs:
            static = [torch.from_numpy(v).to(device) for v in feeds.values()]
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            # warm up off the capture (cuDNN's algorithm search, the allocator); autocast's cast cache is
            # off, as the CUDA-graphs notes require
            with torch.cuda.stream(side), torch.inference_mode(), torch.autocast("cuda", ac, cache_enabled=False):
                for _ in range(2):
                    module(*static)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.inference_mode(), torch.autocast("cuda", ac, cache_enabled=False), torch.cuda.graph(graph):
                out = module(*static)
            graphs[key] = (graph, static, out)
        graph, static, out = graphs[key]
        for t, v in zip(static, feeds.values()):
            t.copy_(torch.from_numpy(v))
        graph.replay()
        return out

    return run


def _chain(card, seg: Runner, gen: Runner) -> Runner:
    """photo2photo as Triton's ensemble runs it: segment, resize the ids to the generator's size
    (nearest), then render with the inputs the generator's graph takes (instances from the ids, zero z)."""
    io = render_io(card.generator)

    def chain(feeds):
        labels = seg(feeds)
        if labels.shape[-2:] != (card.generator.height, card.generator.width):
            labels = resize_nearest(labels, card.generator.height, card.generator.width)
        g = {"labels": labels}
        if io.use_instance:
            g["instances"] = labels.astype(np.int32)
        if io.z_dim:
            g["z"] = np.zeros((labels.shape[0], io.z_dim), np.float32)
        return gen(g)

    return chain


def make_onnxruntime(card, device: str, threads: int | None = None, form: str | None = None, **_) -> Runner:
    """The project's onnxruntime engine (the same cached export ``cityserve render --engine onnxruntime``
    uses); photo2photo runs as two sessions, as Triton's ensemble runs it. ``form``: a SPADE inference
    form (``cityserve.export.forms``) for generators."""
    if form not in (None, "plain") and (card.kind != "generator" or card.arch != "spade"):
        raise Unavailable(f"--form {form} is for SPADE generators, not a {getattr(card, 'arch', '')} {card.kind}")
    if card.kind == "chain":
        return _chain(
            card, make_onnxruntime(card.segmenter, device, threads), make_onnxruntime(card.generator, device, threads)
        )
    try:
        engine = OnnxRuntimeEngine(card, providers="cuda" if device == "cuda" else None, threads=threads, form=form)
    except (UnavailableError, ConfigError) as e:
        raise Unavailable(str(e)) from None
    return engine.run


def make_openvino(card, device: str, precision: str = "fp32", threads: int | None = None, **_) -> Runner:
    """The project's OpenVINO engine on the same cached export as the onnxruntime row (plain OpenVINO:
    ``compile_model`` with only the precision hint); photo2photo runs segment then render."""
    if device != "cpu":
        raise Unavailable("the OpenVINO engine runs on the CPU here")
    if card.kind == "chain":
        seg = make_openvino(card.segmenter, device, precision, threads)
        return _chain(card, seg, make_openvino(card.generator, device, precision, threads))
    from ..engines.openvino_engine import OpenVINOEngine  # the openvino extra

    try:
        engine = OpenVINOEngine(card, precision=precision, threads=threads)
    except UnavailableError as e:
        raise Unavailable(str(e)) from None
    info = {"precision": engine.precision, "accuracy": accuracy_vs_fp32(card, engine.run)}

    def run(feeds):
        return engine.run(feeds)

    run.info = info
    return run


def accuracy_vs_fp32(card, run: Runner) -> dict | None:
    """uint8 differences of ``run`` vs the float32 torch graph on the AOT check's scene-like label maps
    (``export.aot.calibration_inputs``), against the budget (max <= 8, mean <= 1 level); generators only."""
    if card.kind != "generator":
        return None
    inputs = calibration_inputs(card, images=2)
    with torch.inference_mode():
        ref = render_graph_from_card(card)(*inputs)
    io = render_io(card)
    feeds = {"labels": inputs[0].numpy()}
    if io.use_instance:
        feeds["instances"] = inputs[1].numpy()
    if io.z_dim:
        feeds["z"] = inputs[-1].numpy()
    out = run(feeds)
    res = level_diff(torch.from_numpy(np.asarray(out)), ref)
    res["budget"] = {"max_levels": BUDGET_MAX_LEVELS, "mean_levels": BUDGET_MEAN_LEVELS}
    return res


def make_tensorrt(card, device: str, graph_dir: Path, **_) -> Runner:
    if device != "cuda" or not torch.cuda.is_available():
        raise Unavailable("TensorRT needs a CUDA GPU")
    try:
        import_tensorrt()
    except UnavailableError as e:
        raise Unavailable(str(e)) from None

    onnx_path = export_onnx(card, graph_dir)
    plan = build_engine(onnx_path, graph_dir / (onnx_path.stem + ".plan"))
    engine = TensorRTEngine(card, plan_path=plan)
    return engine.run


def make_aot(card, device: str, graph_dir: Path, dtype: str = "bf16", fused=None, **_) -> Runner:
    """An AOTInductor package (``cityserve export aot``) of the render graph, compiled here, then
    loaded as a server would. Its compile-time accuracy check against FP32 rides along in ``info``."""
    if device != "cpu":
        raise Unavailable("AOT packages are compiled for the CPU here")
    if card.kind != "generator":
        raise Unavailable("AOT packages are built for generators")
    if dtype == "bf16" and not cpu_supports_bf16():
        raise Unavailable("this CPU has no AVX-512 BF16 / AMX-BF16")

    if fused is not None:  # an explicit form, for comparison
        form = "fused" if fused else "unfused"
        aot_card = load_card(compile_aot(card, Path(graph_dir) / f"aot-{dtype}-{form}", dtype, fused=fused))
    else:  # the default package, cached beside the card, which the Triton cpu target's repository reuses
        aot_card = aot_card_for(card, dtype)
    package = load_aot(aot_card)

    def run(feeds):
        return package(feeds)

    aot = aot_card.artifacts["aot"].to_dict()
    run.info = {
        k: aot.get(k)
        for k in ("dtype", "compile_seconds", "layers_fp32", "accuracy", "fused", "cpu_flags_required", "vec_isa")
    }
    return run


ENGINES: dict[str, Callable[..., Runner]] = {
    "aot-bf16": lambda card, device, **kw: make_aot(card, device, dtype="bf16", **kw),
    "aot-fp32": lambda card, device, **kw: make_aot(card, device, dtype="fp32", **kw),
    "aot-bf16-fused": lambda card, device, **kw: make_aot(card, device, dtype="bf16", fused=True, **kw),
    "aot-bf16-unfused": lambda card, device, **kw: make_aot(card, device, dtype="bf16", fused=False, **kw),
    "torch-eager-fp32": make_torch_eager,
    "torch-eager-fp32-channels-last": lambda card, device, **kw: _torch_runner(
        torch_graph(card), device, channels_last=True
    ),
    "torch-fp16-channels-last": lambda card, device, **kw: make_torch_autocast(card, device, "fp16"),
    "torch-bf16-channels-last": lambda card, device, **kw: make_torch_autocast(card, device, "bf16"),
    "torch-cuda-graphs-fp16": lambda card, device, **kw: make_torch_cuda_graphs(card, device, "fp16"),
    "torch-compile-fp16": lambda card, device, **kw: make_torch_compile(card, device, "fp16", **kw),
    "torch-lowp-channels-last": make_torch_lowp,
    "torch-compile-fp32": lambda card, device, **kw: make_torch_compile(card, device, "fp32", **kw),
    "torch-compile-bf16": lambda card, device, **kw: make_torch_compile(card, device, "bf16", **kw),
    "onnxruntime": make_onnxruntime,
    "openvino-fp32": lambda card, device, **kw: make_openvino(card, device, "fp32", **kw),
    "openvino-bf16": lambda card, device, **kw: make_openvino(card, device, "bf16", **kw),
    "torch-eager-boundary": make_torch_eager_boundary,
    "onnxruntime-boundary": lambda card, device, **kw: make_onnxruntime(card, device, form="boundary", **kw),
    "tensorrt-fp16": make_tensorrt,
}

"""Ahead-of-time compiled render engines (AOTInductor) for CPUs: BF16 where the CPU has it.

``compile_aot(card, out_dir, dtype)`` exports the render computation (the render.onnx contract: uint8
label ids in, uint8 RGB out, one-hot / instance edges / uint8 conversion inside) with ``torch.export``
over a dynamic batch, compiles it with AOTInductor into ``render.pt2``, and writes a card beside it
recording the torch version, the vector ISA the code was generated for and the CPU flags it needs.
Loading checks those flags first: code compiled for AVX-512 on one machine would crash with an
illegal instruction on a CPU without it (and a BF16 package would crawl on a CPU without BF16
instructions), so the loader refuses with a one-line error instead.

The BF16 precision policy (measured on the official-format fixtures, see ``docs``/the benchmark):
convolutions and linear layers, where the time goes, compute in bfloat16 (weights and inputs cast
down, outputs cast back up). Everything between them stays in float32: the param-free batch norm,
the SPADE modulation ``x_norm * (1 + gamma) + beta``, activations, residual adds and resizing; the
compiler fuses those casts into the neighbouring element-wise kernels, so they cost little. Rounding
the residual stream to bfloat16 too doubles the error for no measurable speed. The layers nearest
the output (the output conv; for SPADE also the last residual block's ``conv_0/conv_1/conv_s``) stay
in float32 by default: their rounding reaches the image without being averaged by later layers, and
they are ~6% of the work. ``layers_fp32`` adds more (e.g. those a precision report flags).

Instruction sets: AOTInductor generates its element-wise code for the vector ISA it picks at compile
time (``avx512`` on AVX-512 machines; ``amx`` adds AMX tiles on Xeons from Sapphire Rapids on) and
oneDNN runs the BF16 convolutions with AVX-512 BF16 (``vdpbf16ps``) or AMX-BF16 tiles. The development
machine is an AMD EPYC (Zen 4) with AVX-512 BF16 but *no AMX*: BF16 there is ~2.4x the FP32 matmul rate,
not the ~16x AMX gives, which bounds what BF16 can win on it.

After compiling, the package is run against the float32 torch model on a few synthetic label maps
and the uint8 differences are recorded in the card (``artifacts["aot"].accuracy``) against the budget
(max <= 8 levels, mean <= 1 level).

A package is native code (a shared library), not data: it is loaded only from the folder it was
compiled into on this machine, or with ``trust=True`` (``--trust``); see ``cityserve.export.aot_trust``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from .. import contract
from ..card_sections import AotArtifact
from ..cards import ModelCard, file_stem, load_card, now_iso, sha256_file
from ..data.synthetic import generate_scene
from ..errors import CheckpointError, CityserveError, ConfigError, UnavailableError
from ..hardware import cpu_flags, cpu_name, cpu_supports_bf16
from ..models.registry import render_io
from ..models.render import RenderGraph, render_graph_from_card
from .aot_trust import check_trusted, is_trusted, record_built
from .fuse import fuse_spade

PACKAGE = "render.pt2"
ISA_FLAGS = {  # inductor's CPU vector ISA -> the /proc/cpuinfo flags its generated code needs
    "amx": ["avx512f", "avx512bw", "avx512vl", "avx512dq", "amx_tile", "amx_bf16"],
    "avx512": ["avx512f", "avx512bw", "avx512vl", "avx512dq"],
    "avx2": ["avx2", "fma"],
}
BUDGET_MAX_LEVELS = 8  # uint8 levels vs the float32 model (issue 8)
BUDGET_MEAN_LEVELS = 1.0
DEFAULT_INDUCTOR_CONFIGS: dict = {}
LOWP_TYPES = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


class LowPrecision(nn.Module):
    """A conv / linear layer computed in a low precision inside a float32 network."""

    def __init__(self, inner: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.inner = inner.to(dtype)
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.to(self.dtype)).to(torch.float32)


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in patterns)


def normalize_layer_names(names: Iterable[str]) -> list[str]:
    """Generator-relative names; a precision report's ``generator.``-prefixed names are accepted."""
    out = []
    for n in names:
        n = n.strip()
        if n.startswith("generator."):
            n = n[len("generator.") :]
        if n and n not in out:
            out.append(n)
    return out


def default_fp32_layers(card: ModelCard, generator: nn.Module) -> list[str]:
    """The layers nearest the output: their BF16 rounding reaches the image unaveraged."""
    names = [n for n, m in generator.named_modules() if isinstance(m, LOWP_TYPES)]
    if card.arch == "spade":
        last = "up_4" if any(n.startswith("up_4.") for n in names) else "up_3"
        return ["conv_img"] + [f"{last}.{c}" for c in ("conv_0", "conv_1", "conv_s") if f"{last}.{c}" in names]
    return names[-1:]


def check_layer_names(generator: nn.Module, names: Iterable[str]) -> list[str]:
    keep = list(names)
    known = {n for n, _ in generator.named_modules()}
    unknown = [k for k in keep if k not in known]
    if unknown:
        raise ConfigError(
            f"--fp32-layers: {', '.join(unknown[:3])} not a submodule of the generator "
            f"(names look like 'up_3.conv_0', 'head_0.norm_0.mlp_gamma')"
        )
    return keep


def apply_precision(generator: nn.Module, dtype: torch.dtype, layers_fp32: Iterable[str]) -> list[str]:
    """Wrap every conv / linear not in ``layers_fp32`` in ``LowPrecision`` (in place); returns their names."""
    keep = check_layer_names(generator, layers_fp32)
    lowered = []
    for name, module in list(generator.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if isinstance(child, LOWP_TYPES) and not _matches(full, keep):
                setattr(module, child_name, LowPrecision(child, dtype))
                lowered.append(full)
    return lowered


class AOTRender(nn.Module):
    """The render graph with explicit inputs (torch.export needs a fixed signature) and a precision."""

    def __init__(self, graph: RenderGraph, dtype: torch.dtype, layers_fp32: Iterable[str] = ()):
        super().__init__()
        self.net = graph
        self.dtype = dtype
        self.lowered: list[str] = []
        if dtype != torch.float32:
            self.lowered = apply_precision(graph.generator, dtype, layers_fp32)

    def forward(
        self, labels: torch.Tensor, instances: Optional[torch.Tensor] = None, z: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        return self.net(labels, instances, z)


def vec_isa() -> str:
    import torch._inductor.cpu_vec_isa as vec

    isa = vec.pick_vec_isa()
    return str(isa).split()[0] if str(isa) else ""


def required_flags(dtype: str) -> list[str]:
    """CPU flags the package needs: the generated code's vector ISA, plus BF16 instructions for BF16."""
    flags = list(ISA_FLAGS.get(vec_isa(), []))
    if dtype == "bf16" and "amx_bf16" not in flags:
        flags.append("avx512_bf16")
    return flags


def default_dtype() -> str:
    return "bf16" if cpu_supports_bf16() else "fp32"


def _example_inputs(card: ModelCard, batch: int = 2) -> tuple[list[Optional[torch.Tensor]], dict]:
    # The example batch must be >= 2, or torch.export specializes the batch dimension to 1.
    io = render_io(card)
    h, w = card.height, card.width
    g = torch.Generator().manual_seed(0)
    dt = getattr(torch, contract.label_dtype(io.num_classes).name)
    inputs: list[Optional[torch.Tensor]] = [torch.randint(0, io.num_classes, (batch, 1, h, w), generator=g).to(dt)]
    batch_dim = torch.export.Dim("batch", min=1, max=256)
    shapes = {"labels": {0: batch_dim}, "instances": None, "z": None}
    if io.use_instance:
        inputs.append(torch.randint(0, 50, (batch, 1, h, w), generator=g, dtype=torch.int32))
        shapes["instances"] = {0: batch_dim}
    if io.z_dim:
        if not io.use_instance:
            inputs.append(None)
        inputs.append(torch.randn(batch, io.z_dim, generator=g))
        shapes["z"] = {0: batch_dim}
    return inputs, shapes


def calibration_inputs(card: ModelCard, images: int = 2, seed: int = 0) -> list[Optional[torch.Tensor]]:
    """Label maps that look like scenes (large regions, few edges): synthetic Cityscapes street scenes
    for Cityscapes models, blocky random label maps otherwise. Per-pixel random ids would make every
    pixel an instance edge, which no real input does."""
    io = render_io(card)
    h, w = card.height, card.width
    labels, instances = [], []
    name = card.label_set if isinstance(card.label_set, str) else ""
    rng = np.random.default_rng(seed)
    for i in range(images):
        if name == "cityscapes" and io.num_classes >= 34:
            scene = generate_scene(seed + i, h, w)
            lab, inst = scene.labels, scene.instances
        else:
            small = rng.integers(0, io.num_classes, (max(1, h // 16), max(1, w // 16)))
            lab = np.kron(small, np.ones((16, 16), dtype=small.dtype))[:h, :w]
            lab = np.pad(lab, ((0, h - lab.shape[0]), (0, w - lab.shape[1])), mode="edge")
            inst = lab
        labels.append(lab)
        instances.append(inst)
    dt = getattr(torch, contract.label_dtype(io.num_classes).name)
    out: list[Optional[torch.Tensor]] = [torch.from_numpy(np.stack(labels)[:, None].astype(np.int64)).to(dt)]
    if io.use_instance:
        out.append(torch.from_numpy(np.stack(instances)[:, None].astype(np.int32)))
    if io.z_dim:
        if not io.use_instance:
            out.append(None)
        out.append(torch.from_numpy(rng.standard_normal((images, io.z_dim)).astype(np.float32)))
    return out


def level_diff(a: torch.Tensor, b: torch.Tensor) -> dict:
    d = (a.to(torch.int32) - b.to(torch.int32)).abs()
    mx, mean = int(d.max()), float(d.float().mean())
    return {
        "max_levels": mx,
        "mean_levels": round(mean, 4),
        "within_budget": mx <= BUDGET_MAX_LEVELS and mean <= BUDGET_MEAN_LEVELS,
    }


def measure_accuracy(card: ModelCard, fn, images: int = 2) -> dict:
    """uint8 differences of ``fn`` (the compiled package) vs the float32 torch model."""
    inputs = calibration_inputs(card, images)
    with torch.inference_mode():
        ref = render_graph_from_card(card)(*inputs)
        out = fn(*inputs)
    if isinstance(out, (list, tuple)):
        out = out[0]
    res = level_diff(out, ref)
    res.update(images=images, budget={"max_levels": BUDGET_MAX_LEVELS, "mean_levels": BUDGET_MEAN_LEVELS})
    return res


def compile_aot(
    card: ModelCard,
    out_dir: str | os.PathLike,
    dtype: Optional[str] = None,
    layers_fp32: Optional[Iterable[str]] = None,
    verify_images: int = 2,
    fused: Optional[bool] = None,
    inductor_configs: Optional[dict] = None,
    log=None,
) -> Path:
    """Compile the card's render graph; returns the path of the card written beside ``render.pt2``.

    ``layers_fp32`` None: the default set (``default_fp32_layers``); a list replaces it (``[]``: every
    conv in BF16). ``verify_images`` synthetic label maps check the package against float32 (0: skip).
    ``fused``: compile SPADE's fused inference form (``cityserve.export.fuse``); None: fused for SPADE,
    where the benchmark measured it ~15-20% faster than the plain form with identical output.
    """
    log = log or (lambda msg: None)
    dtype = dtype or default_dtype()
    if dtype not in ("bf16", "fp32"):
        raise ConfigError(f"--dtype must be bf16 or fp32, not {dtype!r}")
    if dtype == "bf16" and not cpu_supports_bf16():
        raise UnavailableError(f"this CPU ({cpu_name()}) has no AVX-512 BF16 or AMX-BF16; compile with --dtype fp32")
    if card.kind != "generator":
        raise ConfigError(f"{card.name} is a {card.kind}; AOT packages are built for generators")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    graph = render_graph_from_card(card)
    if fused is None:
        fused = card.arch == "spade"
    if fused:
        if card.arch != "spade":
            raise ConfigError(f"--fused applies to SPADE generators, not {card.arch}")

        graph.generator = fuse_spade(graph.generator)
    if layers_fp32 is None:
        layers_fp32 = default_fp32_layers(card, graph.generator) if dtype == "bf16" else []
    layers_fp32 = check_layer_names(graph.generator, normalize_layer_names(layers_fp32))
    module = AOTRender(graph, torch_dtype, layers_fp32).eval()
    inputs, shapes = _example_inputs(card)
    t0 = time.perf_counter()
    with torch.inference_mode():
        ep = torch.export.export(module, tuple(inputs), dynamic_shapes=tuple(shapes.values())[: len(inputs)])
        from torch._inductor import aoti_compile_and_package

        configs = dict(DEFAULT_INDUCTOR_CONFIGS if inductor_configs is None else inductor_configs)
        pkg = aoti_compile_and_package(ep, package_path=str(out / PACKAGE), inductor_configs=configs)
    seconds = time.perf_counter() - t0
    pkg_sha256 = sha256_file(pkg)
    record_built(pkg_sha256, out)  # built here, into this folder: loadable without --trust
    log(f"compiled in {seconds:.0f} s")
    # the package's card names no weights: it points at the card that holds them (export provenance)
    new = card.derived(out)
    io = render_io(card)
    new.artifacts["aot"] = AotArtifact(
        file=PACKAGE,
        sha256=pkg_sha256,
        dtype=dtype,
        torch=torch.__version__,
        vec_isa=vec_isa(),
        cpu_flags_required=required_flags(dtype),
        built_on=cpu_name(),
        built=now_iso(),
        compile_seconds=round(seconds, 1),
        fused=bool(fused),
        inductor_configs=configs,
        precision=(
            "float32"
            if dtype == "fp32"
            else "convolutions/linear in bfloat16 except layers_fp32; norms, SPADE modulation, "
            "activations, residual adds, resizing in float32"
        ),
        layers_fp32=list(layers_fp32) if dtype == "bf16" else [],
        inputs=["labels"] + (["instances"] if io.use_instance else []) + (["z"] if io.z_dim else []),
    )
    path = new.save(out / f"{file_stem(card.name)}.card.json")
    if verify_images:
        from torch._inductor import aoti_load_package

        acc = measure_accuracy(card, aoti_load_package(str(pkg)), verify_images)
        log(
            f"vs float32 on {verify_images} synthetic label maps: max {acc['max_levels']} levels, "
            f"mean {acc['mean_levels']:.3f} (budget {BUDGET_MAX_LEVELS} / {BUDGET_MEAN_LEVELS})"
        )
        new.artifacts["aot"].accuracy = acc
        path = new.save(path)
    return path


def check_compatible(aot: AotArtifact, flags: Optional[set[str]] = None) -> None:
    """Refuse a package this CPU / torch cannot run, naming what is missing."""
    flags = cpu_flags() if flags is None else flags
    missing = [f for f in aot.cpu_flags_required if f not in flags]
    if missing:
        raise UnavailableError(
            f"AOT package needs CPU flag(s) {', '.join(missing)} that this CPU ({cpu_name()}) "
            f"lacks (built on {aot.built_on or '?'}); rebuild it here with "
            f"`cityserve export aot`"
        )
    if aot.torch != torch.__version__:
        raise UnavailableError(
            f"AOT package was compiled with torch {aot.torch}, this is torch "
            f"{torch.__version__}; rebuild it with `cityserve export aot`"
        )


def verify_package(aot: AotArtifact, directory: str | os.PathLike, trust: bool = False) -> Path:
    """The package file, once this CPU and torch can run it, its bytes match the card, and it was
    compiled into ``directory`` here (or ``trust``); else a one-line error naming the first problem."""
    check_compatible(aot)
    pkg = Path(directory) / aot.file
    if not aot.file or not pkg.is_file():
        raise CheckpointError(f"AOT package {pkg} is missing")
    if sha256_file(pkg) != aot.sha256:
        raise CheckpointError(f"AOT package {pkg} does not match the sha256 in its card (changed or truncated)")
    check_trusted(aot.sha256, Path(directory), trust)
    return pkg


class AOTPackage:
    """A loaded ``render.pt2``, checked first: ``package(feeds)`` takes the render graph's inputs by name
    (numpy) and returns the uint8 image [B,H,W,3]. The engine, the benchmark and the Triton cpu model
    all run packages through this one class. Loading runs the package's native code: it must have been
    compiled into ``directory`` on this machine, unless ``trust``."""

    def __init__(self, aot: AotArtifact, directory: str | os.PathLike, trust: bool = False):
        pkg = verify_package(aot, directory, trust)
        from torch._inductor import aoti_load_package

        self.inputs = list(aot.inputs)  # positional order of the compiled graph
        self._fn = aoti_load_package(str(pkg))

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        args = [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in self.inputs]
        if self.inputs == ["labels", "z"]:  # the compiled signature is (labels, instances, z)
            args.insert(1, None)
        with torch.inference_mode():
            out = self._fn(*args)
        return (out[0] if isinstance(out, (list, tuple)) else out).numpy()


def aot_artifact(card: ModelCard) -> AotArtifact:
    """The card's AOT package section, or a CheckpointError saying how to build one."""
    aot = card.artifacts.get("aot")
    if not isinstance(aot, AotArtifact) or not aot.file:
        raise CheckpointError(f"card {card.path} has no AOT package; build one with `cityserve export aot`")
    return aot


def load_aot(card: ModelCard, trust: bool = False) -> AOTPackage:
    """The package of an AOT card, after the compatibility, sha256 and origin checks."""
    return AOTPackage(aot_artifact(card), card.directory, trust)


def aot_card_for(card: ModelCard, dtype: Optional[str] = None, log=None, trust: bool = False) -> ModelCard:
    """The AOT card to run ``card`` with: ``card`` itself if it is one (refused unless compiled into its
    folder here, or ``trust``), else the package cached beside it (``<card dir>/aot-<dtype>/``),
    compiled now when missing, built for another torch / CPU, or not built here (a cache that came
    with a downloaded model is rebuilt from the weights, never loaded)."""
    if "aot" in card.artifacts:
        verify_package(aot_artifact(card), card.directory, trust)
        return card
    dtype = dtype or default_dtype()
    cached = card.directory / f"aot-{dtype}" / f"{file_stem(card.name)}.card.json"
    if cached.is_file():
        try:
            c = load_card(cached)
            aot = aot_artifact(c)
            check_compatible(aot)
            if (
                c.sha256 == card.sha256
                and (c.directory / aot.file).is_file()
                and (trust or is_trusted(aot.sha256, c.directory))
            ):
                return c
        except CityserveError:
            pass
    return load_card(compile_aot(card, cached.parent, dtype, log=log))


def find_aot_card(path: str | os.PathLike) -> ModelCard:
    card = load_card(path)
    aot_artifact(card)
    return card


def describe(card: ModelCard) -> str:
    return json.dumps(aot_artifact(card).to_dict(), indent=2)

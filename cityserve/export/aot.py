"""Ahead-of-time compiled render engines (AOTInductor) for CPUs: BF16 where the CPU has it.

``compile_aot(card, out_dir, dtype)`` exports the render computation (the render.onnx contract: uint8
label ids in, uint8 RGB out, one-hot / instance edges / uint8 conversion inside) with ``torch.export``
over a dynamic batch, compiles it with AOTInductor into ``render.pt2``, and writes a card beside it
recording the torch version, the vector ISA the code was generated for and the CPU flags it needs.
Loading checks those flags first: code compiled for AVX-512 BF16 on one machine would crash with an
illegal instruction on a CPU without it, so the loader refuses with a one-line error instead.

In BF16 the generator's convolutions run in bfloat16 while the one-hot input, the label-map
resizing and the final conversion stay exact; ``layers_fp32`` keeps named submodules (e.g. those the
precision report flags) in float32.
"""
from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path
from typing import Iterable, Optional

import torch
from torch import nn

from ..bench.devices import cpu_flags, cpu_name, cpu_supports_bf16
from ..cards import ModelCard, load_card, now_iso, sha256_file
from ..errors import CheckpointError, ConfigError, UnavailableError
from ..models.registry import render_io
from ..models.render import RenderGraph, render_graph_from_card, to_uint8_image

PACKAGE = "render.pt2"
ISA_FLAGS = {  # inductor's CPU vector ISA -> the /proc/cpuinfo flags its code needs
    "avx512": ["avx512f", "avx512bw", "avx512vl", "avx512dq"],
    "avx2": ["avx2", "fma"],
}


class _Fp32Island(nn.Module):
    """Runs a submodule in float32 inside a BF16 network."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner.float()

    def forward(self, *args):
        out = self.inner(*[a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args])
        return out.to(torch.bfloat16)


class AOTRender(nn.Module):
    """The render graph with explicit inputs (torch.export needs a fixed signature) and a dtype."""

    def __init__(self, graph: RenderGraph, dtype: torch.dtype, layers_fp32: Iterable[str] = ()):
        super().__init__()
        self.net = graph
        self.dtype = dtype
        if dtype != torch.float32:
            self.net.generator = graph.generator.to(dtype)
            for name in layers_fp32:
                parent_name, _, child = name.rpartition(".")
                parent = self.net.generator.get_submodule(parent_name) if parent_name else self.net.generator
                setattr(parent, child, _Fp32Island(getattr(parent, child)))

    def forward(self, labels: torch.Tensor, instances: Optional[torch.Tensor] = None,
                z: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = self.net.semantics(labels, instances).to(self.dtype)
        if self.net.z_dim:
            y = self.net.generator(x, z.to(self.dtype))
        else:
            y = self.net.generator(x)
        return to_uint8_image(y.float())


def required_flags(dtype: str) -> list[str]:
    import torch._inductor.cpu_vec_isa as vec

    isa = str(vec.pick_vec_isa()).split()[0] if str(vec.pick_vec_isa()) else ""
    flags = list(ISA_FLAGS.get(isa, []))
    if dtype == "bf16":
        flags.append("avx512_bf16" if "amx_bf16" not in cpu_flags() else "amx_bf16")
    return flags


def default_dtype() -> str:
    return "bf16" if cpu_supports_bf16() else "fp32"


def _example_inputs(card: ModelCard, batch: int = 2) -> tuple[list[torch.Tensor], dict]:
    io = render_io(card)
    h, w = card.height, card.width
    g = torch.Generator().manual_seed(0)
    dt = torch.uint8 if io.num_classes <= 256 else torch.int32
    inputs = [torch.randint(0, io.num_classes, (batch, 1, h, w), generator=g).to(dt)]
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


def compile_aot(card: ModelCard, out_dir: str | os.PathLike, dtype: Optional[str] = None,
                layers_fp32: Iterable[str] = ()) -> Path:
    """Compile the card's render graph; returns the path of the card written beside ``render.pt2``."""
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
    module = AOTRender(render_graph_from_card(card), torch_dtype, layers_fp32).eval()
    inputs, shapes = _example_inputs(card)
    t0 = time.perf_counter()
    with torch.inference_mode():
        ep = torch.export.export(module, tuple(inputs), dynamic_shapes=tuple(shapes.values())[:len(inputs)])
        from torch._inductor import aoti_compile_and_package

        pkg = aoti_compile_and_package(ep, package_path=str(out / PACKAGE))
    seconds = time.perf_counter() - t0
    new = copy.deepcopy(card)
    new.extra = dict(card.extra)
    new.extra["aot"] = {
        "file": PACKAGE, "sha256": sha256_file(pkg), "dtype": dtype, "torch": torch.__version__,
        "cpu_flags_required": required_flags(dtype), "built_on": cpu_name(), "built": now_iso(),
        "compile_seconds": round(seconds, 1), "layers_fp32": list(layers_fp32),
        "inputs": ["labels"] + (["instances"] if render_io(card).use_instance else []) + (["z"] if render_io(card).z_dim else []),
    }
    # The card keeps pointing at the original weights (export provenance), by absolute path.
    new.weights = str(card.weights_path)
    return new.save(out / f"{card.name}.card.json")


def check_compatible(aot: dict, flags: Optional[set[str]] = None) -> None:
    """Refuse a package this CPU / torch cannot run, naming what is missing."""
    flags = cpu_flags() if flags is None else flags
    missing = [f for f in aot.get("cpu_flags_required", []) if f not in flags]
    if missing:
        raise UnavailableError(f"AOT package was compiled for CPU flags {', '.join(missing)} that this CPU "
                               f"({cpu_name()}) lacks; rebuild it here with `cityserve export aot`")
    if aot.get("torch") != torch.__version__:
        raise UnavailableError(f"AOT package was compiled with torch {aot.get('torch')}, this is torch "
                               f"{torch.__version__}; rebuild it with `cityserve export aot`")


def load_aot(card: ModelCard):
    """The compiled callable of an AOT card, after the compatibility and sha256 checks."""
    aot = card.extra.get("aot")
    if not aot:
        raise CheckpointError(f"card {card.path} has no AOT package; build one with `cityserve export aot`")
    check_compatible(aot)
    pkg = card.directory / aot["file"]
    if not pkg.is_file():
        raise CheckpointError(f"AOT package {pkg} is missing")
    if sha256_file(pkg) != aot["sha256"]:
        raise CheckpointError(f"AOT package {pkg} does not match the sha256 in its card (changed or truncated)")
    from torch._inductor import aoti_load_package

    return aoti_load_package(str(pkg))


def find_aot_card(path: str | os.PathLike) -> ModelCard:
    card = load_card(path)
    if "aot" not in card.extra:
        raise CheckpointError(f"{card.path} is not an AOT card (no extra.aot); run `cityserve export aot` first")
    return card


def describe(card: ModelCard) -> str:
    return json.dumps(card.extra.get("aot", {}), indent=2)

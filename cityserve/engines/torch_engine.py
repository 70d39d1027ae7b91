"""The torch engine: the card's render graph (inference form) as a PyTorch module, on CPU or CUDA.

It is the reference the other engines are compared with: no export step, the same weights and the
same uint8 contract. ``dtype=torch.float16`` (CUDA) runs the generator in half precision while the
one-hot input assembly and the uint8 conversion stay as the graph defines them.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from ..cards import ModelCard
from ..errors import ConfigError, UnavailableError
from ..models.render import render_graph_from_card


class _Cast(nn.Module):
    """Run ``generator`` in ``dtype``; inputs are cast in and the output back to float32."""

    def __init__(self, generator: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.generator = generator.to(dtype)
        self.dtype = dtype

    def forward(self, x: torch.Tensor, z: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = x.to(self.dtype)
        y = self.generator(x) if z is None else self.generator(x, z.to(self.dtype))
        return y.float()


def resolve_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown torch device {device!r} (cpu, cuda, cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UnavailableError(f"device {device!r} asked for, but this torch build or machine has no CUDA GPU")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"the torch engine runs on cpu or cuda, not {device!r}")
    return dev


def resolve_dtype(dtype: Any) -> Optional[torch.dtype]:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    names = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "float16": torch.float16,
        "fp16": torch.float16,
        "half": torch.float16,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
    }
    if str(dtype).lower() not in names:
        raise ConfigError(f"unknown dtype {dtype!r}; choose from {', '.join(names)}")
    return names[str(dtype).lower()]


class TorchEngine:
    """``run(feeds) -> uint8 [B,H,W,3]`` with the card's RenderGraph under ``torch.inference_mode``."""

    def __init__(self, card: ModelCard, device: str | torch.device = "cpu", dtype: Any = None):
        self.card = card
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        graph = render_graph_from_card(card)
        if self.dtype is not None and self.dtype != torch.float32:
            graph.generator = _Cast(graph.generator, self.dtype)
        self.graph = graph.to(self.device).eval()

    @property
    def input_names(self) -> list[str]:
        return self.graph.input_names

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        unknown = set(feeds) - set(self.input_names)
        if unknown:
            raise ConfigError(
                f"model {self.card.name!r} takes {', '.join(self.input_names)}; "
                f"got unexpected input(s) {', '.join(sorted(unknown))}"
            )
        tensors = {k: torch.from_numpy(np.ascontiguousarray(v)).to(self.device) for k, v in feeds.items()}
        with torch.inference_mode():
            out = self.graph(**tensors)
        return out.cpu().numpy()

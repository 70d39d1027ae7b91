"""A layout generator card -> an ONNX graph: latent z [B, z_dim] float32 -> label ids [B, 1, H, W] uint8.

The graph holds the mapping network, the truncation the card records (``w_avg`` is a constant of the
graph), the synthesis with its stored (``const``) noise, and the argmax, so the same z gives the same ids
in torch and in onnxruntime. Seeds become z outside the graph (``models.layout_sample.seed_latents``:
torch's CPU generator, which no ONNX op reproduces); speck removal and instance maps are connected-
component passes that stay on the host (``labels.snapping``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from ..cards import ModelCard
from ..models.layout_sample import layout_generator_from_card
from ..models.layout_stylegan import LayoutGenerator
from .onnx_export import DEFAULT_OPSET, torch_to_onnx_bytes

LATENT, LAYOUT_IDS = "z", "layout_ids"


class LayoutGraph(nn.Module):
    def __init__(self, G: nn.Module, truncation_psi: float, noise_mode: str):
        super().__init__()
        self.G, self.psi, self.noise_mode = G, float(truncation_psi), noise_mode

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        if isinstance(self.G, LayoutGenerator):
            return self.G(z, truncation_psi=self.psi, noise_mode=self.noise_mode)
        return self.G(z)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.logits(z).argmax(dim=1, keepdim=True).to(torch.uint8)


def layout_graph_from_card(card: ModelCard, truncation_psi: Optional[float] = None) -> LayoutGraph:
    psi = card.layout.truncation_psi if truncation_psi is None else truncation_psi
    return LayoutGraph(layout_generator_from_card(card), psi, card.layout.noise_mode).eval()


def export_layout_onnx(card: ModelCard, out: str | Path, opset: int = DEFAULT_OPSET) -> Path:
    """Write the layout graph of ``card`` to ``out`` (.onnx) with a dynamic batch axis."""
    graph = layout_graph_from_card(card)
    z = torch.zeros(2, card.layout.z_dim)
    data = torch_to_onnx_bytes(graph, {"z": z}, [LATENT], [LAYOUT_IDS], opset)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from ..files import atomic_write_bytes

    atomic_write_bytes(out, data)
    return out


def run_layout_onnx(path: str | Path, z: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run([LAYOUT_IDS], {LATENT: np.ascontiguousarray(z, dtype=np.float32)})[0]

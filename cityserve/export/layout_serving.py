"""The layout graph as served: z [B, z_dim] and truncation [B, 1] float32 -> label ids [B, 1, H, W] uint8.

``layout_onnx`` bakes the card's truncation into the graph; a server takes it per request, so this
graph has it as an input: StyleGAN2's ``w = w_avg + psi * (w - w_avg)`` on every layer's w (as
``MappingNetwork`` does, up to the last bits), and for DCGAN, which has no w space, z scaled by psi
(the truncation of a Gaussian latent toward its mean). The argmax is in the graph, as in ``layout_onnx``;
seeds, specks and instances stay on the host (``serving.layout_sampler``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..cards import ModelCard
from ..files import atomic_write_bytes
from ..models.layout_sample import layout_generator_from_card
from ..models.layout_stylegan import LayoutGenerator
from .layout_onnx import LATENT, LAYOUT_IDS
from .onnx_export import DEFAULT_OPSET, torch_to_onnx_bytes

TRUNCATION = "truncation"


class ServedLayoutGraph(nn.Module):
    def __init__(self, G: nn.Module, noise_mode: str):
        super().__init__()
        self.G, self.noise_mode = G, noise_mode

    def forward(self, z: torch.Tensor, truncation: torch.Tensor) -> torch.Tensor:
        psi = truncation.reshape(-1, 1)
        if isinstance(self.G, LayoutGenerator):
            ws = self.G.mapping(z, 1.0)
            w_avg = self.G.mapping.w_avg.to(ws.dtype)
            ws = w_avg + psi[:, :, None] * (ws - w_avg)
            logits = self.G.synthesis(ws, self.noise_mode)
        else:
            logits = self.G(z * psi)
        return logits.argmax(dim=1, keepdim=True).to(torch.uint8)


def served_layout_graph(card: ModelCard) -> ServedLayoutGraph:
    return ServedLayoutGraph(layout_generator_from_card(card), card.layout.noise_mode).eval()


def export_served_layout_onnx(card: ModelCard, out: str | Path, opset: int = DEFAULT_OPSET) -> Path:
    """Write the served layout graph of ``card`` to ``out`` (.onnx), batch axis dynamic."""
    example = {LATENT: torch.zeros(2, card.layout.z_dim), TRUNCATION: torch.ones(2, 1)}
    data = torch_to_onnx_bytes(served_layout_graph(card), example, [LATENT, TRUNCATION], [LAYOUT_IDS], opset)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, data)
    return out


def run_served_layout_onnx(path: str | Path, z: np.ndarray, truncation: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {LATENT: np.ascontiguousarray(z, np.float32), TRUNCATION: np.ascontiguousarray(truncation, np.float32)}
    return sess.run([LAYOUT_IDS], feeds)[0]

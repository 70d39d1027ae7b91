"""An exponential moving average of the generator's weights, the model OASIS (and StyleGAN, EDM)
evaluate and ship: averaging over the last few thousand updates removes most of the step-to-step jitter
an adversarial generator carries, at no cost at inference.

Parameters are averaged; buffers (spectral-norm vectors, batch-norm statistics) are copied from the
live generator, since an average of power-iteration vectors is no longer a unit vector. Before export,
``refresh_spectral_vectors`` runs a few power iterations on the averaged weights, so the folded
``W / sigma`` of the inference form uses the averaged weights' own spectral norm.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """``EMA(model, decay)``; ``update(model, step)`` after every optimizer step; ``module`` is the
    averaged copy (a trainer checkpoints it like any module). The effective decay
    ramps up as ``min(decay, (1 + step) / (10 + step))`` so early averages are not dominated by the
    random initialisation."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), not {decay}")
        self.decay = float(decay)
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = min(self.decay, (1.0 + step) / (10.0 + step))
        mine = dict(self.module.named_parameters())
        for name, p in model.named_parameters():
            mine[name].lerp_(p.detach(), 1.0 - d)
        own_buffers = dict(self.module.named_buffers())
        for name, b in model.named_buffers():
            own_buffers[name].copy_(b)


@torch.no_grad()
def refresh_spectral_vectors(model: nn.Module, iters: int = 20) -> nn.Module:
    """Power iterations on every spectral-normed weight's stored ``u``/``v`` (in place), so that in eval
    mode sigma = u . (W v) is the spectral norm of the weight as it is now."""
    from torch.nn.utils.spectral_norm import SpectralNorm

    for m in model.modules():
        for hook in m._forward_pre_hooks.values():
            if not isinstance(hook, SpectralNorm):
                continue
            w = getattr(m, hook.name + "_orig")
            u, v = getattr(m, hook.name + "_u"), getattr(m, hook.name + "_v")
            mat = w.movedim(hook.dim, 0).reshape(w.shape[hook.dim], -1)
            for _ in range(iters):
                v.copy_(nn.functional.normalize(torch.mv(mat.t(), u), dim=0, eps=hook.eps))
                u.copy_(nn.functional.normalize(torch.mv(mat, v), dim=0, eps=hook.eps))
    return model

"""Spectral norm folded into plain weights: the inference form of spectral-normed generators and encoders.

Each spectral-normed conv / linear becomes a plain one holding ``W / sigma``, with ``sigma = u . (W v)``
from the stored vectors (eval-mode spectral norm does no power iteration), folded by hand because
``torch.nn.utils.remove_spectral_norm`` leaves a load-state-dict hook behind in torch 2.13. Outputs
are unchanged; exporters see plain convolutions.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.spectral_norm import SpectralNorm

from ..errors import ConfigError


def _spectral_hook(module: nn.Module):
    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, SpectralNorm):
            return hook
    return None


def folded_weight(module: nn.Module) -> torch.Tensor:
    """``weight_orig / sigma`` with ``sigma = u . (W v)`` from the stored vectors (eval-mode SN)."""
    hook = _spectral_hook(module)
    name = hook.name if hook is not None else "weight"
    w = getattr(module, name + "_orig")
    u, v = getattr(module, name + "_u"), getattr(module, name + "_v")
    dim = hook.dim if hook is not None else 0
    w_mat = w.movedim(dim, 0).reshape(w.shape[dim], -1)
    sigma = torch.dot(u, torch.mv(w_mat, v))
    return (w / sigma).detach().clone()


def fold_spectral_norm(model: nn.Module) -> nn.Module:
    """Replace every spectral-normed conv / linear with a plain one holding ``W / sigma`` (in place)."""
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if _spectral_hook(child) is None:
                continue
            if isinstance(child, nn.Conv2d):
                plain = nn.Conv2d(
                    child.in_channels,
                    child.out_channels,
                    child.kernel_size,
                    child.stride,
                    child.padding,
                    child.dilation,
                    child.groups,
                    child.bias is not None,
                    child.padding_mode,
                )
            elif isinstance(child, nn.Linear):
                plain = nn.Linear(child.in_features, child.out_features, child.bias is not None)
            else:
                raise ConfigError(f"cannot fold spectral norm of a {type(child).__name__}")
            plain = plain.to(device=child.weight_orig.device, dtype=child.weight_orig.dtype)
            with torch.no_grad():
                plain.weight.copy_(folded_weight(child))
                if child.bias is not None:
                    plain.bias.copy_(child.bias)
            setattr(parent, child_name, plain)
    return model


def to_inference(model: nn.Module) -> nn.Module:
    """Inference form of a generator or encoder: spectral norm folded, eval mode, no grads.

    Batch norm stays in eval mode (running statistics), which exporters fuse into the preceding ops.
    """
    model.eval()
    fold_spectral_norm(model)
    model.requires_grad_(False)
    return model.eval()

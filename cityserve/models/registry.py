"""Model families and how a model card becomes a module.

Each family module (``spade``, ``pix2pix``, ``fchardnet``, ``deeplab``) calls ``register_family`` at
import time with its config dataclass and builders; ``family(arch)`` imports it on first use, so
importing ``cityserve.models`` stays cheap. Everything that turns a card into a module goes through
``build_from_card``, which verifies the weights' sha256 first.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import typing
from collections.abc import Callable
from typing import Any, Optional

from torch import nn

from .. import contract
from ..cards import ModelCard
from ..checkpoints import load_strict, load_weights
from ..errors import CheckpointError, ConfigError

FAMILY_MODULES = {
    "spade": "cityserve.models.spade",
    "pix2pix": "cityserve.models.pix2pix",
    "fchardnet": "cityserve.models.fchardnet",
    "deeplabv3plus": "cityserve.models.deeplab",
}


@dataclasses.dataclass(frozen=True)
class RenderIO:
    """What a generator's render graph takes (see cityserve.models.render)."""

    num_classes: int  # label ids must be < num_classes (the generator's label channels, dontcare included)
    use_instance: bool = False
    z_dim: int = 0  # > 0: the graph takes z [B, z_dim]
    input_mode: str = "onehot"  # or "color" (pix2pix trained on palette images)


@dataclasses.dataclass
class Family:
    arch: str
    kind: str  # "generator" | "segmenter"
    config_cls: type
    build: Callable[[Any], nn.Module]  # config -> module (random init)
    render_io: Optional[Callable[[Any], RenderIO]] = None  # generators only
    # state dict -> module in its inference form (e.g. spectral norm folded); default: load_state_dict
    to_inference: Optional[Callable[[nn.Module], nn.Module]] = None


_FAMILIES: dict[str, Family] = {}


def register_family(f: Family) -> Family:
    _FAMILIES[f.arch] = f
    return f


def family(arch: str) -> Family:
    if arch not in _FAMILIES:
        if arch not in FAMILY_MODULES:
            raise ConfigError(f"unknown architecture {arch!r}; known: {', '.join(sorted(FAMILY_MODULES))}")
        importlib.import_module(FAMILY_MODULES[arch])
    return _FAMILIES[arch]


# Bounds of the integer options of every family's config, by name (others: 0..65536). A card is a
# user's file: a width of 1e7 channels would allocate terabytes before anything else could complain.
CONFIG_INT_BOUNDS = {
    "label_nc": (1, 4096),
    "num_classes": (1, 4096),
    "ngf": (1, 1024),
    "ndf": (1, 1024),
    "nhidden": (1, 4096),
    "z_dim": (1, 4096),
    "crop_size": (1, 16384),
    "output_nc": (1, 4),
    "extra_condition_nc": (0, 8),
    "n_layers_D": (1, 8),
}
CONFIG_FLOAT_BOUNDS = {"aspect_ratio": (1e-3, 1e3)}


def check_config(cls: type, config: Any, where: str) -> None:
    """Every value of ``config`` against the type of ``cls``'s field of that name, with bounds."""
    if not isinstance(config, dict):
        raise CheckpointError(f"{where}: config must be a mapping, not {type(config).__name__}")
    hints = typing.get_type_hints(cls)
    for name, value in config.items():
        kind = hints.get(name)
        what = f"{where}: config.{name}"
        if kind is bool:
            ok = isinstance(value, bool)
        elif kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
            if ok:
                lo, hi = CONFIG_INT_BOUNDS.get(name, (0, 65536))
                if not lo <= value <= hi:
                    raise CheckpointError(f"{what} must be {lo}..{hi}, not {value}")
        elif kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if ok:
                lo, hi = CONFIG_FLOAT_BOUNDS.get(name, (-1e6, 1e6))
                if not lo <= value <= hi:
                    raise CheckpointError(f"{what} must be {lo:g}..{hi:g}, not {value}")
        elif kind is str:
            ok = isinstance(value, str) and len(value) <= 64
        elif kind is tuple:
            ok = isinstance(value, (list, tuple)) and len(value) <= 8
            ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
        else:
            continue  # not a field: the config class names it below
        if not ok:
            shown = getattr(kind, "__name__", kind)
            raise CheckpointError(f"{what} must be {'an' if shown == 'int' else 'a'} {shown}, not {value!r:.40}")


def config_from_card(card: ModelCard) -> Any:
    """The family's config from the card, every value checked with its type and bounds first."""
    fam = family(card.arch)
    where = f"model card {card.path or repr(card.name)[:60]}"
    check_config(fam.config_cls, card.config, where)
    try:
        return fam.config_cls(**card.config)
    except TypeError as e:
        raise CheckpointError(f"{where}: config does not fit {fam.config_cls.__name__}: {e}") from None


def build_from_card(card: ModelCard, load: bool = True, inference: bool = True) -> nn.Module:
    """The card's model with its weights (sha256-verified), in eval mode; inference form if asked."""
    fam = family(card.arch)
    model = fam.build(config_from_card(card))
    if load:
        load_strict(model, load_weights(card), card.weights_path, f"{card.arch} with the card's config")
    model.eval()
    if inference and fam.to_inference is not None:
        model = fam.to_inference(model)
    return model


def render_io(card: ModelCard) -> RenderIO:
    fam = family(card.arch)
    if fam.render_io is None:
        raise ConfigError(f"{card.name} is a {fam.kind} ({card.arch}), not a generator")
    return fam.render_io(config_from_card(card))


def graph_tensors(card: ModelCard) -> tuple[tuple[contract.TensorSpec, ...], tuple[contract.TensorSpec, ...]]:
    """The (inputs, outputs) of the card's graph in the tensor contract (``cityserve.contract``): a
    generator's render graph or a segmenter's segment graph, at the card's H x W."""
    h, w = card.height, card.width
    if family(card.arch).kind == "segmenter":
        return (contract.segment_input(h, w),), (contract.segment_output(h, w),)
    io = render_io(card)
    return contract.render_inputs(io.num_classes, h, w, io.use_instance, io.z_dim), (contract.render_output(h, w),)

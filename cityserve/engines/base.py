"""``Renderer``: label ids in, photos out, on any engine (torch, onnxruntime, tensorrt, aot).

The Renderer validates input against the model card (shape, id range, instances, latent) so every
engine sees well-formed tensors and every user sees the same one-line errors; engines only run the
render graph. An engine is a class with ``__init__(card, **options)``, ``input_names`` and
``run(feeds: dict[str, np.ndarray]) -> uint8 [B,H,W,3]``, registered by dotted path in ``ENGINES``.
"""

from __future__ import annotations

import importlib
from typing import Any, Optional, Protocol

import numpy as np

from ..cards import ModelCard, load_card
from ..errors import ConfigError, LabelError
from ..models.registry import RenderIO, render_io

ENGINES = {
    "torch": "cityserve.engines.torch_engine:TorchEngine",
    "onnxruntime": "cityserve.engines.onnxruntime_engine:OnnxRuntimeEngine",
    "tensorrt": "cityserve.engines.tensorrt_engine:TensorRTEngine",
    "aot": "cityserve.engines.aot_engine:AOTEngine",
}


class Engine(Protocol):
    input_names: list[str]

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray: ...


def load_engine(name: str, card: ModelCard, **options: Any) -> Engine:
    if name not in ENGINES:
        raise ConfigError(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}")
    module, cls = ENGINES[name].split(":")
    return getattr(importlib.import_module(module), cls)(card, **options)


def as_batch(a: np.ndarray, what: str, height: int, width: int) -> np.ndarray:
    """[H,W] or [B,H,W] or [B,1,H,W] -> [B,1,H,W], with a shape error that names the expected size."""
    a = np.asarray(a)
    if a.ndim == 2:
        a = a[None, None]
    elif a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4 or a.shape[1] != 1:
        raise LabelError(f"{what} must be [H,W], [B,H,W] or [B,1,H,W]; got shape {tuple(np.shape(a))}")
    if a.shape[2:] != (height, width):
        raise LabelError(
            f"{what} are {a.shape[2]}x{a.shape[3]} but the model renders {height}x{width} "
            f"(HxW); resize the label map with nearest-neighbour first"
        )
    return a


def check_ids(labels: np.ndarray, num_classes: int, model_name: str) -> None:
    if not np.issubdtype(labels.dtype, np.integer):
        raise LabelError(f"label ids must be integers, got {labels.dtype}")
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        values, counts = np.unique(labels[bad], return_counts=True)
        listed = ", ".join(f"{int(v)} ({int(c)} px)" for v, c in zip(values[:5], counts[:5]))
        raise LabelError(
            f"label id(s) {listed} out of range for model {model_name!r}, "
            f"which has {num_classes} label channels (valid ids 0..{num_classes - 1})"
        )


class Renderer:
    """Render label maps with one model on one engine.

    >>> r = Renderer.from_card("models/demo", engine="onnxruntime")
    >>> photo = r.render(ids)            # ids: uint8 [H,W] -> uint8 [1,H,W,3]
    """

    def __init__(self, card: ModelCard, engine: str = "torch", **engine_options: Any):
        self.card = card
        self.io: RenderIO = render_io(card)
        self.engine_name = engine
        self.engine: Engine = load_engine(engine, card, **engine_options)

    @classmethod
    def from_card(cls, card: ModelCard | str, engine: str = "torch", **engine_options: Any) -> Renderer:
        return cls(card if isinstance(card, ModelCard) else load_card(card), engine, **engine_options)

    @property
    def height(self) -> int:
        return self.card.height

    @property
    def width(self) -> int:
        return self.card.width

    def feeds(
        self,
        labels: np.ndarray,
        instances: Optional[np.ndarray] = None,
        z: Optional[np.ndarray] = None,
        seed: Optional[int] = None,
    ) -> dict[str, np.ndarray]:
        """Validated engine inputs: labels uint8 (int32 past 256 classes), instances int32, z float32."""
        labels = as_batch(labels, "labels", self.height, self.width)
        check_ids(labels, self.io.num_classes, self.card.name)
        dtype = np.uint8 if self.io.num_classes <= 256 else np.int32
        feeds = {"labels": np.ascontiguousarray(labels, dtype=dtype)}
        batch = labels.shape[0]
        if self.io.use_instance:
            if instances is None:
                # No instance map: every pixel of one class is one instance (edges = class boundaries).
                instances = labels.astype(np.int32)
            inst = as_batch(instances, "instances", self.height, self.width)
            if inst.shape[0] != batch:
                raise LabelError(f"{inst.shape[0]} instance maps for {batch} label maps")
            feeds["instances"] = np.ascontiguousarray(inst, dtype=np.int32)
        if self.io.z_dim:
            if z is None:
                z = np.random.default_rng(seed).standard_normal((batch, self.io.z_dim)).astype(np.float32)
            z = np.asarray(z, dtype=np.float32).reshape(batch, self.io.z_dim)
            feeds["z"] = np.ascontiguousarray(z)
        return feeds

    def render(
        self,
        labels: np.ndarray,
        instances: Optional[np.ndarray] = None,
        z: Optional[np.ndarray] = None,
        seed: Optional[int] = None,
    ) -> np.ndarray:
        """uint8 [B,H,W,3] photos for label ids [H,W] / [B,H,W] / [B,1,H,W]."""
        return self.engine.run(self.feeds(labels, instances, z, seed))

"""``Renderer``: label ids in, photos out, on any engine (torch, onnxruntime, tensorrt, aot, openvino).

The Renderer validates input against the model card (shape, id range, instances, latent) so every
engine sees well-formed tensors and every user sees the same one-line errors; engines only run the
render graph. An engine is a class with ``__init__(card, **options)``, ``input_names`` and
``run(feeds: dict[str, np.ndarray]) -> uint8 [B,H,W,3]``, registered by dotted path in ``ENGINES``.
"""

from __future__ import annotations

import importlib
from typing import Any, Optional, Protocol

import numpy as np

from .. import contract
from ..cards import ModelCard, load_card
from ..errors import ConfigError, LabelError
from ..labels import labelmap, read_label_png
from ..labels.png import Source
from ..models.registry import RenderIO, render_io

ENGINES = {
    "torch": "cityserve.engines.torch_engine:TorchEngine",
    "onnxruntime": "cityserve.engines.onnxruntime_engine:OnnxRuntimeEngine",
    "tensorrt": "cityserve.engines.tensorrt_engine:TensorRTEngine",
    "aot": "cityserve.engines.aot_engine:AOTEngine",
    "openvino": "cityserve.engines.openvino_engine:OpenVINOEngine",
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
    a = labelmap.as_batch(a, what)
    if a.shape[2:] != (height, width):
        raise LabelError(
            f"{what} are {a.shape[2]}x{a.shape[3]} but the model renders {height}x{width} "
            f"(HxW); resize the label map with nearest-neighbour first"
        )
    return a


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

    def read_labels(self, src: Source, nearest: bool = False) -> np.ndarray:
        """Label ids [H,W] for this model from a color or id PNG (path or bytes): id PNGs in the label
        set's file convention, with every id the model has channels for accepted (official SPADE
        Cityscapes: 35 channels for ids 0..33); ``nearest`` snaps painted colors to the palette."""
        return read_label_png(src, self.card.label_set, nearest=nearest, num_channels=self.io.num_classes)

    def feeds(
        self,
        labels: np.ndarray,
        instances: Optional[np.ndarray] = None,
        z: Optional[np.ndarray] = None,
        seed: Optional[int] = None,
    ) -> dict[str, np.ndarray]:
        """Validated engine inputs: labels uint8 (int32 past 256 classes), instances int32, z float32."""
        labels = as_batch(labels, "labels", self.height, self.width)
        labelmap.check_ids(
            labels, self.io.num_classes, f"model {self.card.name!r} ({self.io.num_classes} label channels)"
        )
        feeds = {contract.LABELS: np.ascontiguousarray(labels, dtype=contract.label_dtype(self.io.num_classes))}
        batch = labels.shape[0]
        if self.io.use_instance:
            if instances is None:
                # No instance map: every pixel of one class is one instance (edges = class boundaries).
                instances = labels.astype(np.int32)
            inst = as_batch(instances, "instances", self.height, self.width)
            if inst.shape[0] != batch:
                raise LabelError(f"{inst.shape[0]} instance maps for {batch} label maps")
            feeds[contract.INSTANCES] = np.ascontiguousarray(inst, dtype=np.int32)
        if self.io.z_dim:
            if z is None:
                z = np.random.default_rng(seed).standard_normal((batch, self.io.z_dim)).astype(np.float32)
            z = np.asarray(z, dtype=np.float32).reshape(batch, self.io.z_dim)
            feeds[contract.Z] = np.ascontiguousarray(z)
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

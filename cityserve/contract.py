"""The tensor contract: name, dtype and shape of every tensor that crosses a boundary between cityserve's
parts (graph and engine, graph and Triton config, server and client), stated once, as data.

    render graph (generator)   labels     uint8 [B,1,H,W] (int32 past 256 classes)  label ids
                               instances  int32 [B,1,H,W]  optional: boundary edges are computed inside
                               z          float32 [B,z_dim]  optional: the style latent of VAE models
                           ->  image      uint8 [B,H,W,3]  RGB: clamp(round((y + 1) * 127.5), 0, 255)
    segment graph (segmenter)  image      uint8 [B,H,W,3]  the photo, RGB
                           ->  labels     uint8 [B,1,H,W]  label ids of the segmenter's label set
    pipelines (ensembles)      LABELS_PNG, PHOTO_PNG in; PHOTO_PNG, LABELS_PNG, COLOR_PNG, RENDERED_PNG
                               out: one encoded image per batch item (BYTES [B,1])

The batch axis is dynamic, H and W are fixed per model (SPADE's first layer is sized from them). Only
numpy is imported here, so the client, the graphs, the engines and the repository builder can all
read the same specs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# ---- names -----------------------------------------------------------------------------------------
LABELS = "labels"
INSTANCES = "instances"
Z = "z"
IMAGE = "image"  # the render graph's output and the segment graph's input: a photo
DEPTH = "depth"  # the depth-aware graphs' depth map: float32 metres (camera Z)

LABELS_PNG = "LABELS_PNG"  # a label map: 1-channel ids in the label set's file convention, or palette colors
PHOTO_PNG = "PHOTO_PNG"  # a photo (PNG; JPEG too as a segmenter's input)
COLOR_PNG = "COLOR_PNG"  # a label map in palette colors, for people
RENDERED_PNG = "RENDERED_PNG"  # photo2photo: the photo rendered from the input photo's labels
PNG = "PNG"  # the single bytes tensor of the decode / encode models
SEED = "SEED"  # random_layout / random2photo: int64 [1], the seed that names a layout (0..2^63-1)
TRUNCATION = "TRUNCATION"  # random_layout (optional): float32 [1], truncation psi toward the mean w (0..2)
LAYOUT_IDS = "LAYOUT_IDS"  # random_layout: the layout's label ids uint8 [1, H, W]
INSTANCE_IDS = "INSTANCE_IDS"  # random_layout: int32 [1, H, W], thing components as id * 1000 + k
DEPTH_PNG = "DEPTH_PNG"  # a depth map: 16-bit 1-channel PNG in millimetres (as input also .npy bytes in metres)

BATCH = "batch"  # the dynamic batch axis, as exported graphs name it
MAX_UINT8_CLASSES = 256  # label maps travel as uint8 while every id fits

# numpy dtype name -> Triton model-config data type ("bytes" is Triton's BYTES, TYPE_STRING in configs)
TRITON_TYPES = {
    "bool": "TYPE_BOOL",
    "uint8": "TYPE_UINT8",
    "int8": "TYPE_INT8",
    "int16": "TYPE_INT16",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "float16": "TYPE_FP16",
    "float32": "TYPE_FP32",
    "float64": "TYPE_FP64",
    "bytes": "TYPE_STRING",
}


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of the contract. ``dims`` are the axes after the batch axis; ``dtype`` is a numpy
    dtype name, or "bytes" for encoded images (numpy object arrays of ``bytes``)."""

    name: str
    dtype: str
    dims: tuple[int, ...]
    meaning: str = ""

    @property
    def shape(self) -> tuple:
        """The full shape, the batch axis first (as ``BATCH``)."""
        return (BATCH, *self.dims)

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(np.object_) if self.dtype == "bytes" else np.dtype(self.dtype)

    @property
    def triton_type(self) -> str:
        """The Triton model-config data type, e.g. ``TYPE_UINT8``."""
        return triton_type(self.dtype)

    def __str__(self) -> str:
        return f"{self.name} {self.dtype} [B,{','.join(map(str, self.dims))}]"


def triton_type(dtype: str) -> str:
    """numpy dtype name (or "bytes") -> Triton config data type; ValueError for a type Triton lacks."""
    name = "bytes" if dtype in ("bytes", "object") else np.dtype(dtype).name
    if name not in TRITON_TYPES:
        raise ValueError(f"no Triton data type for {dtype!r}")
    return TRITON_TYPES[name]


def numpy_dtype(triton: str) -> np.dtype:
    """Triton config data type (``TYPE_UINT8``, or the client's ``UINT8``) -> numpy dtype."""
    key = triton if triton.startswith("TYPE_") else f"TYPE_{triton}"
    key = "TYPE_STRING" if key == "TYPE_BYTES" else key
    for name, t in TRITON_TYPES.items():
        if t == key:
            return np.dtype(np.object_) if name == "bytes" else np.dtype(name)
    raise ValueError(f"unknown Triton data type {triton!r}")


def label_dtype(num_classes: int) -> np.dtype:
    """The dtype of label ids for a model with ``num_classes`` label channels: uint8 where every id fits."""
    return np.dtype(np.uint8 if int(num_classes) <= MAX_UINT8_CLASSES else np.int32)


# ---- the graphs -------------------------------------------------------------------------------------
def labels_spec(num_classes: int, height: int, width: int) -> TensorSpec:
    return TensorSpec(LABELS, label_dtype(num_classes).name, (1, height, width), "label ids, < num_classes")


def render_inputs(
    num_classes: int, height: int, width: int, use_instance: bool = False, z_dim: int = 0
) -> tuple[TensorSpec, ...]:
    """The render graph's inputs, in the graph's order (labels, [instances], [z])."""
    specs = [labels_spec(num_classes, height, width)]
    if use_instance:
        specs.append(TensorSpec(INSTANCES, "int32", (1, height, width), "instance ids; edges computed inside"))
    if z_dim:
        specs.append(TensorSpec(Z, "float32", (int(z_dim),), "style latent, N(0, 1)"))
    return tuple(specs)


def render_output(height: int, width: int) -> TensorSpec:
    return TensorSpec(IMAGE, "uint8", (height, width, 3), "RGB photo")


def depth_spec(height: int, width: int) -> TensorSpec:
    """The depth-aware graphs' depth map (stage 1's output, stage 2's input), in metres."""
    return TensorSpec(DEPTH, "float32", (1, height, width), "depth in metres, > 0")


def segment_input(height: int, width: int) -> TensorSpec:
    return TensorSpec(IMAGE, "uint8", (height, width, 3), "RGB photo")


def segment_output(height: int, width: int) -> TensorSpec:
    return TensorSpec(LABELS, "uint8", (1, height, width), "label ids of the segmenter's label set")


# ---- the pipelines (Triton ensembles) ----------------------------------------------------------------
def png_spec(name: str) -> TensorSpec:
    """An encoded-image tensor: one PNG (or JPEG) per batch item."""
    return TensorSpec(name, "bytes", (1,), "encoded image")


# ensemble name -> (input names, output names), the order clients see them in
PIPELINES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "label2photo": ((LABELS_PNG,), (PHOTO_PNG,)),
    "photo2labels": ((PHOTO_PNG,), (LABELS_PNG, COLOR_PNG)),
    "photo2photo": ((PHOTO_PNG,), (RENDERED_PNG, LABELS_PNG, COLOR_PNG)),
    "random2photo": ((SEED,), (LABELS_PNG, COLOR_PNG, PHOTO_PNG)),
    "label2depth": ((LABELS_PNG,), (DEPTH_PNG,)),
    "label2depth2photo": ((LABELS_PNG,), (PHOTO_PNG, DEPTH_PNG)),
    "depth2photo": ((LABELS_PNG, DEPTH_PNG), (PHOTO_PNG,)),
}

# ---- depth maps on the wire -------------------------------------------------------------------------
DEPTH_PNG_SCALE = 1000.0  # 16-bit depth PNGs hold millimetres (the KITTI / NYU convention)
DEPTH_PNG_MAX_M = 65535 / DEPTH_PNG_SCALE  # 65.535 m: farther depths (the synthetic sky's 1000 m) clip here


def depth_values_problem(depth: np.ndarray) -> str:
    """What is wrong with a depth map's values ('' when nothing): NaN / inf, zero or negative metres."""
    bad = ~np.isfinite(depth)
    if bad.any():
        return f"depth map has {int(bad.sum())} NaN/inf pixel(s)"
    nonpos = depth <= 0
    if nonpos.any():
        return f"depth map has {int(nonpos.sum())} zero or negative pixel(s) (min {float(depth.min()):.3g})"
    return ""

"""Depth maps on the wire: 16-bit PNGs in millimetres out, the same (or ``.npy`` bytes in metres) in,
each checked before it reaches a graph.

Why a codec of its own: the served depth is float32 metres [1,H,W] (``contract.depth_spec``), but
clients want a file they can open and store, and the users' own depth maps arrive as the files their
depth estimator wrote. The file conventions are those of ``cityserve.data.depth`` (training data):

* out (``encode_depth_png``): millimetres, rounded and clipped to 1..65535 (1 mm .. 65.535 m); 0 would
  read back as "no depth". Anything farther than 65.535 m (the synthetic sky, 1000 m) comes back as
  65.535 m: the PNG is for people and downstream tools, the ensembles feed stage 2 the float metres.
* in (``DepthDecoder``): a single-channel 16-bit PNG in millimetres, or a ``.npy`` of floats in metres
  ([H,W] or [1,H,W]), at exactly the model's size. Another size, another dtype (8-bit or RGB PNG,
  integer ``.npy``), NaN / inf, zero or negative values: a ``LabelError`` with one line naming it. The
  header is read first (PNG IHDR, ``.npy`` header), so an oversized map is refused without decoding.

numpy and OpenCV only: the python-backend models import it without torch.
"""

from __future__ import annotations

import dataclasses
import io

import cv2
import numpy as np

from ..card_sections import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS
from ..contract import DEPTH_PNG_SCALE, depth_values_problem
from ..errors import LabelError
from .codec import check_length, check_size, png_check_inflated, png_header

NPY_MAGIC = b"\x93NUMPY"


def encode_depth_png(depth: np.ndarray, compression: int = 1) -> bytes:
    """Metres [H,W] or [1,H,W] -> a 16-bit PNG in millimetres, clipped to 1..65535 mm."""
    d = np.asarray(depth, dtype=np.float64)
    d = d[0] if d.ndim == 3 else d
    mm = np.clip(np.round(np.nan_to_num(d, nan=0.0) * DEPTH_PNG_SCALE), 1, 65535).astype(np.uint16)
    ok, buf = cv2.imencode(".png", mm, [cv2.IMWRITE_PNG_COMPRESSION, int(compression)])
    if not ok:
        raise ValueError("could not encode the depth map as PNG")
    return buf.tobytes()


@dataclasses.dataclass
class DepthDecoder:
    """Depth file bytes -> float32 [1, height, width] metres, every check done before use."""

    height: int
    width: int
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = DEFAULT_MAX_BYTES

    def decode(self, data: bytes) -> np.ndarray:
        check_length(data, self.max_bytes, "depth map")
        if data[:6] == NPY_MAGIC:
            depth = self._npy(data)
        else:
            depth = self._png(data)
        problem = depth_values_problem(depth)
        if problem:
            raise LabelError(problem)
        return depth[None]

    def _size(self, h: int, w: int) -> None:
        if (h, w) != (self.height, self.width):
            raise LabelError(f"depth map is {h}x{w} (HxW), the model renders {self.height}x{self.width}")

    def _png(self, data: bytes) -> np.ndarray:
        header = png_header(data)  # "not a PNG ..." for anything else
        if header.channels != 1 or header.bit_depth != 16:
            raise LabelError(
                f"a depth PNG must be single-channel 16-bit (millimetres), not {header.channels}-channel "
                f"{header.bit_depth}-bit"
            )
        check_size(header, self.max_pixels, "depth map")
        self._size(header.height, header.width)
        png_check_inflated(data, header)
        raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if raw is None or raw.dtype != np.uint16 or raw.shape != (self.height, self.width):
            raise LabelError("malformed depth PNG: it does not decode as its header says")
        return raw.astype(np.float32) / np.float32(DEPTH_PNG_SCALE)

    def _npy(self, data: bytes) -> np.ndarray:
        f = io.BytesIO(data)
        try:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(f)
        except (ValueError, OSError, SyntaxError) as e:
            raise LabelError(f"malformed .npy depth map: {str(e)[:80]}") from None
        if dtype.kind != "f" or dtype.hasobject:
            raise LabelError(f"a .npy depth map must hold floats (metres), not {dtype}")
        if len(shape) == 3 and shape[0] == 1:
            shape = shape[1:]
        if len(shape) != 2:
            raise LabelError(f"a depth map must be [H,W] or [1,H,W], not shape {list(shape)}")
        self._size(*shape)
        try:
            raw = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError) as e:
            raise LabelError(f"malformed .npy depth map: {str(e)[:80]}") from None
        return np.ascontiguousarray(raw.reshape(self.height, self.width), dtype=np.float32)

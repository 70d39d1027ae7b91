"""Triton python-backend model: a user's depth map -> depth float32 [1, H, W] metres for stage 2.

``PNG``: a single-channel 16-bit PNG in millimetres, or ``.npy`` bytes of floats in metres ([H,W] or
[1,H,W]), at exactly the model's size (``cityserve.serving.depth_codec.DepthDecoder``). Another size or
dtype, NaN / inf, zero or negative values, more than ``max_bytes`` / ``max_pixels``: the request fails
with INVALID_ARG and one line naming the problem; the other requests, and the server, go on. The
``labels`` input passes through unchanged, so that depth2photo decodes its two inputs in sequence
(``cityserve.serving.depth_models.decode_depth`` says why).
"""

import os
import sys

# `cityserve serve` names where cityserve and its dependencies live (the stub ignores PYTHONPATH)
sys.path.extend(p for p in os.environ.get("CITYSERVE_PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path)

import numpy as np

from cityserve.serving import codec
from cityserve.serving.depth_codec import DepthDecoder
from cityserve.serving.pb_model import PythonModel, input_array


class TritonPythonModel(PythonModel):
    def initialize(self, args):
        super().initialize(args)
        self.decoder = DepthDecoder(
            int(self.params["height"]),
            int(self.params["width"]),
            max_pixels=int(self.params.get("max_pixels", codec.DEFAULT_MAX_PIXELS)),
            max_bytes=int(self.params.get("max_bytes", codec.DEFAULT_MAX_BYTES)),
        )

    def infer(self, request):
        items = input_array(request, "PNG").reshape(-1)
        decoded = []
        for k, item in enumerate(items):
            try:
                decoded.append(self.decoder.decode(codec.as_bytes(item)))
            except Exception as e:
                where = f" (batch item {k} of {len(items)})" if len(items) > 1 else ""
                raise ValueError(f"DEPTH_PNG{where}: {e}") from None
        return {"depth": np.stack(decoded), "labels": input_array(request, "labels")}

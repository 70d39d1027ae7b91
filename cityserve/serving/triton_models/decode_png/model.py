"""Triton python-backend model: PNG bytes -> tensors, with every check done before decoding.

``mode`` "labels": a label PNG (1-channel ids in the label set's file convention, or palette colors)
-> label ids [1, H, W] at exactly the generator's size; unknown colors, out-of-range ids, a wrong size
are errors. ``mode`` "photo": a photo PNG/JPEG -> RGB uint8 [H, W, 3], area-resized to the
segmenter's size. In both, the IHDR/frame header is read first and images over ``max_pixels`` (PNG
bombs) or ``max_bytes`` are refused without decoding, and pixel data that inflates past the header's
size is refused while inflating. A bad item fails only its own request. This is the first step of
every ensemble (``entry``): while the server drains it answers UNAVAILABLE, so new requests go to
another replica and those already past it finish.
"""

import os
import sys

# `cityserve serve` names where cityserve and its dependencies live (the stub ignores PYTHONPATH)
sys.path.extend(p for p in os.environ.get("CITYSERVE_PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path)

import numpy as np

from cityserve.serving import codec
from cityserve.serving.pb_model import PythonModel, decode_items, decoder_limits, label_png_decoder


class TritonPythonModel(PythonModel):
    entry = True

    def initialize(self, args):
        super().initialize(args)
        self.mode = self.params["mode"]
        self.input_name, self.output_name = self.inputs[0], self.outputs[0]
        if self.mode == "labels":
            self.decoder = label_png_decoder(self)
        elif self.mode == "photo":
            self.decoder = codec.PhotoDecoder(
                int(self.params["height"]), int(self.params["width"]), **decoder_limits(self)
            )
        else:
            raise ValueError(f"{self.name}: unknown mode {self.mode!r} (labels | photo)")

    def infer(self, request):
        return {self.output_name: np.stack(decode_items(request, self.input_name, self.decoder.decode))}

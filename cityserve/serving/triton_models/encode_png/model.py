"""Triton python-backend model: tensors -> PNG bytes.

``mode`` "image": RGB uint8 [H, W, 3] -> ``PNG`` (the rendered photo). ``mode`` "labels": label ids
[1, H, W] -> ``PNG`` (1-channel, the label set's file convention: lossless, what ``decode_png``
and the training data loaders read) and ``COLOR_PNG`` (palette colors, for people).
"""

import os
import sys

# `cityserve serve` names where cityserve and its dependencies live (the stub ignores PYTHONPATH)
sys.path.extend(p for p in os.environ.get("CITYSERVE_PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path)

import numpy as np

from cityserve.serving import codec
from cityserve.serving.pb_model import PythonModel, input_array


class TritonPythonModel(PythonModel):
    def initialize(self, args):
        super().initialize(args)
        self.mode = self.params["mode"]
        compression = int(self.params.get("compression", "1"))
        if self.mode == "image":
            self.encode = lambda image: (codec.encode_rgb_png(image, compression),)
            self.outputs = ["PNG"]
        elif self.mode == "labels":
            self.encode = codec.LabelPngEncoder(
                self.version_file("label_set_file", "label_set.json"), compression
            ).encode
            self.outputs = ["PNG", "COLOR_PNG"]
        else:
            raise ValueError(f"{self.name}: unknown mode {self.mode!r} (image | labels)")

    def infer(self, request):
        encoded = [self.encode(item) for item in input_array(request, self.inputs[0])]
        return {name: np.array([[e[j]] for e in encoded], dtype=np.object_) for j, name in enumerate(self.outputs)}

"""Triton python-backend model: depth float32 [1, H, W] metres -> ``PNG``, a 16-bit PNG in millimetres.

Clipped to 1..65535 mm (1 mm .. 65.535 m; farther, e.g. the synthetic sky's 1000 m, reads 65.535 m):
``cityserve.serving.depth_codec.encode_depth_png``, the convention of the training data's depth files.
"""

import os
import sys

# `cityserve serve` names where cityserve and its dependencies live (the stub ignores PYTHONPATH)
sys.path.extend(p for p in os.environ.get("CITYSERVE_PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path)

import numpy as np

from cityserve.serving.depth_codec import encode_depth_png
from cityserve.serving.pb_model import PythonModel, input_array


class TritonPythonModel(PythonModel):
    def initialize(self, args):
        super().initialize(args)
        self.compression = int(self.params.get("compression", "1"))

    def infer(self, request):
        depths = input_array(request, self.inputs[0])
        return {self.outputs[0]: np.array([[encode_depth_png(d, self.compression)] for d in depths], dtype=np.object_)}

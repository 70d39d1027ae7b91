"""Triton python-backend model: label ids -> the render graph's inputs.

Between a producer of label ids (``decode_png``, a segmenter) and a render graph that needs more than
ids: ``instances`` (one instance per class, so instance edges fall on class boundaries, as the local
``Renderer`` does without an instance map), a N(0, 1) style latent ``z`` for VAE generators, and a
nearest-neighbour resize when a segmenter of another size produced the ids.
"""

import os
import sys

# `cityserve serve` names where cityserve and its dependencies live (the stub ignores PYTHONPATH)
sys.path.extend(p for p in os.environ.get("CITYSERVE_PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path)

import numpy as np

from cityserve.serving.pb_model import PythonModel, input_array, render_inputs


class TritonPythonModel(PythonModel):
    def initialize(self, args):
        super().initialize(args)
        self.prepare = render_inputs(self).prepare

    def infer(self, request):
        prepared = [self.prepare(item) for item in input_array(request, "ids")]
        return {name: np.stack([p[name] for p in prepared]) for name in self.outputs}

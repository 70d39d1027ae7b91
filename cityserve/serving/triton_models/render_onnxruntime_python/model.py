"""Triton python-backend model (target ``cpu``): runs an exported cityserve graph with onnxruntime.

Used for both the render graph (label ids -> photo) and the segment graph (photo -> label ids); the
graph file is ``model.onnx`` in the version directory. Requests that the dynamic batcher groups are run
as ONE onnxruntime call (concatenated along the batch axis) and split again. Inputs listed in the
``label_inputs`` parameter are checked against ``num_classes`` first: an out-of-range id fails only
its own request, with a message naming the ids, and never reaches the graph.
"""

import os
import sys

# `cityserve serve` names where cityserve and its dependencies live (the stub ignores PYTHONPATH)
sys.path.extend(p for p in os.environ.get("CITYSERVE_PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path)

from cityserve.serving.graph_runners import graph_runner
from cityserve.serving.pb_model import BatchedPythonModel


class TritonPythonModel(BatchedPythonModel):
    engine = "onnxruntime"

    def initialize(self, args):
        super().initialize(args)
        # cityserve.serving.graph_runners: the same engine, loaded the same way, as the fused label2photo
        self.run, self.engine = graph_runner("onnxruntime", self, self.outputs)

    def finalize(self):
        self.run = None

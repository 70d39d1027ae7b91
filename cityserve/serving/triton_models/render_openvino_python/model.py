"""Triton python-backend model (target ``cpu``, ``--cpu-engine openvino``): runs an exported cityserve
graph with OpenVINO, BF16 where the CPU has it (the bundled server has no OpenVINO backend).

Used for both the render graph (label ids -> photo) and the segment graph (photo -> label ids); the
graph file is ``model.onnx`` in the version directory, compiled at load by
``cityserve.engines.openvino_engine.compile_onnx`` with the config's ``precision`` (auto | fp32 | bf16)
and ``intra_op_threads``. Requests that the dynamic batcher groups are run as ONE call (concatenated along
the batch axis) and split again; out-of-range label ids fail only their own request.
"""

import os
import sys

# `cityserve serve` names where cityserve and its dependencies live (the stub ignores PYTHONPATH)
sys.path.extend(p for p in os.environ.get("CITYSERVE_PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path)

from cityserve.serving.graph_runners import graph_runner
from cityserve.serving.pb_model import BatchedPythonModel


class TritonPythonModel(BatchedPythonModel):
    engine = "openvino"

    def initialize(self, args):
        super().initialize(args)
        # cityserve.serving.graph_runners: the same engine, loaded the same way, as the fused label2photo
        self.run, self.engine = graph_runner("openvino", self, self.outputs)

    def finalize(self):
        self.run = None

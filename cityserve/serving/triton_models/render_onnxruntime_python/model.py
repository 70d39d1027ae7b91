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

from cityserve.serving.pb_model import BatchedPythonModel


class TritonPythonModel(BatchedPythonModel):
    engine = "onnxruntime"

    def initialize(self, args):
        import onnxruntime as ort

        super().initialize(args)
        options = ort.SessionOptions()
        threads = int(self.params.get("intra_op_threads", "0") or 0)
        if threads > 0:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            self.version_file("onnx_file", "model.onnx"), options, providers=["CPUExecutionProvider"]
        )

    def run(self, feeds):
        return self.session.run(self.outputs, feeds)

    def finalize(self):
        self.session = None

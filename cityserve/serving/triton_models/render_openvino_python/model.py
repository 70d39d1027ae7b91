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

from cityserve.serving.pb_model import BatchedPythonModel


class TritonPythonModel(BatchedPythonModel):
    engine = "openvino"

    def initialize(self, args):
        from cityserve.engines.openvino_engine import compile_onnx

        super().initialize(args)
        # The server's environment sets OMP_NUM_THREADS=1 (several python stubs share the cores); OpenVINO
        # has its own thread pool: 0 here means every core this process may use.
        threads = int(self.params.get("intra_op_threads", "0") or 0) or len(os.sched_getaffinity(0))
        compiled, self.precision = compile_onnx(
            self.version_file("onnx_file", "model.onnx"),
            self.params.get("precision", "auto") or "auto",
            threads,
            what="the openvino render model",
        )
        self.compiled = compiled
        self.request = compiled.create_infer_request()

    def run(self, feeds):
        result = self.request.infer(feeds)
        return [result[self.compiled.output(name)].copy() for name in self.outputs]

    def finalize(self):
        self.request = None
        self.compiled = None

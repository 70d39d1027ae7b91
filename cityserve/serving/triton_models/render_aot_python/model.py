"""Triton python-backend model (target ``cpu``): runs a cityserve render package compiled ahead of
time with AOTInductor (``render.pt2``, BF16 where the CPU has it), loaded in seconds, no recompiling.

The version directory holds ``render.pt2`` and ``card.json`` (the AOT card: torch version and CPU
flags the package needs, its sha256). ``initialize`` refuses an incompatible or altered package with
a one-line reason, so the server reports the model as failed to load instead of crashing on an
illegal instruction. The package is native code: ``cityserve repo build`` copied it in only after
checking that it was compiled on this machine (or was trusted with ``--trust-aot``); a model
repository is code as a whole (these ``model.py`` files run too), so serve only repositories you built. Requests that the dynamic batcher groups run as ONE call (concatenated along the
batch axis) and are split again; out-of-range label ids fail only their own request.
"""

import os
import sys

# `cityserve serve` names where cityserve and its dependencies live (the stub ignores PYTHONPATH)
sys.path.extend(p for p in os.environ.get("CITYSERVE_PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path)

from cityserve.serving.graph_runners import graph_runner
from cityserve.serving.pb_model import BatchedPythonModel


class TritonPythonModel(BatchedPythonModel):
    engine = "aot"

    def initialize(self, args):
        super().initialize(args)
        # cityserve.serving.graph_runners: the same engine, loaded the same way, as the fused label2photo
        self.run, self.engine = graph_runner("aot", self, self.outputs)

    def finalize(self):
        self.run = None

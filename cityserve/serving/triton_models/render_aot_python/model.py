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

import json
import os
import sys

# `cityserve serve` names where cityserve and its dependencies live (the stub ignores PYTHONPATH)
sys.path.extend(p for p in os.environ.get("CITYSERVE_PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path)

from cityserve.serving.pb_model import BatchedPythonModel


class TritonPythonModel(BatchedPythonModel):
    engine = "AOT package"

    def initialize(self, args):
        import torch

        from cityserve.cards import ModelCard
        from cityserve.export.aot import AOTPackage, aot_artifact

        super().initialize(args)
        # The server's environment sets OMP_NUM_THREADS=1 (several python stubs share the cores), which
        # would leave torch on one thread: 0 here means every core this process may use.
        threads = int(self.params.get("intra_op_threads", "0") or 0) or len(os.sched_getaffinity(0))
        torch.set_num_threads(threads)
        with open(self.version_file("card_file", "card.json")) as f:
            aot = aot_artifact(ModelCard.from_dict(json.load(f)))
        # refuses, with a one-line reason, a package for missing CPU flags / another torch / altered bytes;
        # its origin was checked by the repository builder (this folder is a copy it made)
        self.package = AOTPackage(aot, self.version_dir, trust=True)

    def run(self, feeds):
        return [self.package(feeds)]

    def finalize(self):
        self.package = None

"""Triton python-backend model: a seed (and optionally a truncation) -> a street layout.

SEED int64 [1] (and TRUNCATION float32 [1], optional: the card's when absent) -> LAYOUT_IDS uint8
[1, H, W], INSTANCE_IDS int32 [1, H, W], LABELS_PNG (ids) and COLOR_PNG (palette colors). The seed
becomes z as ``cityserve generate`` draws it, so a seed names the same layout on every target
(``cityserve.serving.layout_sampler``). The layout graph (z, truncation -> argmax ids) is the
repository's model named by ``graph_model`` (onnxruntime in the python backend on cpu, a GPU or OpenVINO
backend elsewhere), called through business logic scripting. A bad seed or truncation fails only its
own request (INVALID_ARG).
"""

import os
import sys

# `cityserve serve` names where cityserve and its dependencies live (the stub ignores PYTHONPATH)
sys.path.extend(p for p in os.environ.get("CITYSERVE_PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path)

from cityserve.serving.layout_sampler import LayoutSampler
from cityserve.serving.pb_model import PythonModel, input_array, pb_utils


class TritonPythonModel(PythonModel):
    entry = True  # the first step of random2photo: refuses new work while the server drains

    def initialize(self, args):
        super().initialize(args)
        self.sampler = LayoutSampler(
            int(self.params["z_dim"]),
            self.version_file("label_set_file", "label_set.json"),
            float(self.params.get("truncation_psi", "1.0")),
            int(self.params.get("min_area", "0")),
            int(self.params.get("connectivity", "8")),
            int(self.params.get("compression", "1")),
        )
        self.graph_model = self.params["graph_model"]

    def run_graph(self, z, psi):
        """The repository's layout graph model, called through business logic scripting."""
        request = pb_utils.InferenceRequest(
            model_name=self.graph_model,
            requested_output_names=["layout_ids"],
            inputs=[pb_utils.Tensor("z", z), pb_utils.Tensor("truncation", psi)],
        )
        reply = request.exec()
        if reply.has_error():
            raise RuntimeError(f"{self.graph_model}: {reply.error().message()}")
        ids = pb_utils.get_output_tensor_by_name(reply, "layout_ids")
        if ids.is_cpu():
            return ids.as_numpy()
        from torch.utils.dlpack import from_dlpack  # a GPU backend's output

        return from_dlpack(ids.to_dlpack()).cpu().numpy()

    def infer(self, request):
        seeds = input_array(request, "SEED")
        truncation = pb_utils.get_input_tensor_by_name(request, "TRUNCATION")
        z, psi = self.sampler.latents(seeds, None if truncation is None else truncation.as_numpy())
        outputs = self.sampler.finish(self.run_graph(z, psi))
        return {name: outputs[name] for name in self.outputs}

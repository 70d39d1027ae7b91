"""Triton python-backend model: label ids -> the render graph's inputs.

Between a producer of label ids (``decode_png``, a segmenter) and a render graph that needs more than
ids: ``instances`` (one instance per class, so instance edges fall on class boundaries, as the local
``Renderer`` does without an instance map), a N(0, 1) style latent ``z`` for VAE generators, and a
nearest-neighbour resize when a segmenter of another size produced the ids.
"""
import json
import os
import sys

for _p in os.environ.get("CITYSERVE_PYTHONPATH", "").split(os.pathsep):
    if _p and _p not in sys.path:
        sys.path.append(_p)

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402


def _error(message):
    try:
        return pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG)
    except (AttributeError, TypeError):
        return pb_utils.TritonError(message)


class TritonPythonModel:
    def initialize(self, args):
        from cityserve.serving import codec

        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        self.name = config["name"]
        self.outputs = [o["name"] for o in config["output"]]
        self.prepare = codec.RenderInputs(
            int(params["height"]), int(params["width"]), int(params["num_classes"]),
            np.dtype(params.get("dtype", "uint8")), use_instance="instances" in self.outputs,
            z_dim=int(params.get("z_dim", "0")), seed=None).prepare

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                ids = pb_utils.get_input_tensor_by_name(request, "ids").as_numpy()
                prepared = [self.prepare(item) for item in ids]
                tensors = [pb_utils.Tensor(name, np.stack([p[name] for p in prepared])) for name in self.outputs]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            except Exception as e:  # noqa: BLE001
                responses.append(pb_utils.InferenceResponse(error=_error(f"{self.name}: {e}")))
        return responses

"""Triton python-backend model: tensors -> PNG bytes.

``mode`` "image": RGB uint8 [H, W, 3] -> ``PNG`` (the rendered photo). ``mode`` "labels": label ids
[1, H, W] -> ``PNG`` (1-channel, the label set's file convention: lossless, what ``decode_png``
and the training data loaders read) and ``COLOR_PNG`` (palette colors, for people).
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
        self.mode = params["mode"]
        self.input_name = config["input"][0]["name"]
        compression = int(params.get("compression", "1"))
        if self.mode == "image":
            self.encode = lambda image: (codec.encode_rgb_png(image, compression),)
            self.outputs = ["PNG"]
        elif self.mode == "labels":
            version_dir = os.path.join(args["model_repository"], args["model_version"])
            label_set = os.path.join(version_dir, params.get("label_set_file", "label_set.json"))
            self.encode = codec.LabelPngEncoder(label_set, compression).encode
            self.outputs = ["PNG", "COLOR_PNG"]
        else:
            raise ValueError(f"{self.name}: unknown mode {self.mode!r} (image | labels)")

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                batch = pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy()
                encoded = [self.encode(item) for item in batch]
                tensors = [pb_utils.Tensor(name, np.array([[e[j]] for e in encoded], dtype=np.object_))
                           for j, name in enumerate(self.outputs)]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            except Exception as e:  # noqa: BLE001
                responses.append(pb_utils.InferenceResponse(error=_error(f"{self.name}: {e}")))
        return responses

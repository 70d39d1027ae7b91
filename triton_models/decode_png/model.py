"""Triton python-backend model: PNG bytes -> tensors, with every check done before decoding.

``mode`` "labels": a label PNG (1-channel ids in the label set's file convention, or palette colors)
-> label ids [1, H, W] at exactly the generator's size; unknown colors, out-of-range ids, a wrong size
are errors. ``mode`` "photo": a photo PNG/JPEG -> RGB uint8 [H, W, 3], area-resized to the
segmenter's size. In both, the IHDR/frame header is read first and images over ``max_pixels`` (PNG
bombs) or ``max_bytes`` are refused without decoding. A bad item fails only its own request.
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

        self.codec = codec
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        self.name = config["name"]
        self.mode = params["mode"]
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        limits = dict(max_pixels=int(params.get("max_pixels", codec.DEFAULT_MAX_PIXELS)),
                      max_bytes=int(params.get("max_bytes", codec.DEFAULT_MAX_BYTES)))
        height, width = int(params["height"]), int(params["width"])
        if self.mode == "labels":
            version_dir = os.path.join(args["model_repository"], args["model_version"])
            label_set = os.path.join(version_dir, params.get("label_set_file", "label_set.json"))
            self.decoder = codec.LabelPngDecoder(
                label_set, height, width, int(params["num_classes"]), np.dtype(params.get("dtype", "uint8")),
                nearest=params.get("nearest", "false").lower() == "true", **limits)
        elif self.mode == "photo":
            self.decoder = codec.PhotoDecoder(height, width, **limits)
        else:
            raise ValueError(f"{self.name}: unknown mode {self.mode!r} (labels | photo)")

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                items = pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy().reshape(-1)
                decoded = []
                for k, item in enumerate(items):
                    try:
                        decoded.append(self.decoder.decode(self.codec.as_bytes(item)))
                    except Exception as e:  # noqa: BLE001
                        where = f" (batch item {k} of {len(items)})" if len(items) > 1 else ""
                        raise ValueError(f"{self.input_name}{where}: {e}") from None
                out = pb_utils.Tensor(self.output_name, np.stack(decoded))
                responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
            except Exception as e:  # noqa: BLE001 - every failure becomes this request's error
                responses.append(pb_utils.InferenceResponse(error=_error(f"{self.name}: {e}")))
        return responses

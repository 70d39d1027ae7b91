"""Triton python-backend model (target ``cpu``): runs an exported cityserve graph with onnxruntime.

Used for both the render graph (label ids -> photo) and the segment graph (photo -> label ids); the
graph file is ``model.onnx`` in the version directory. Requests that the dynamic batcher groups are run
as ONE onnxruntime call (concatenated along the batch axis) and split again. Inputs listed in the
``label_inputs`` parameter are checked against ``num_classes`` first: an out-of-range id fails only
its own request, with a message naming the ids, and never reaches the graph.
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


def _check_ids(name, ids, num_classes):
    if ids.size == 0 or (ids.min() >= 0 and ids.max() < num_classes):
        return
    bad = ids[(ids < 0) | (ids >= num_classes)]
    values, counts = np.unique(bad, return_counts=True)
    listed = ", ".join(f"{int(v)} ({int(c)} px)" for v, c in zip(values[:5], counts[:5]))
    raise ValueError(f"{name}: label id(s) {listed} out of range for a model with {num_classes} label "
                     f"channels (valid ids 0..{num_classes - 1})")


class TritonPythonModel:
    def initialize(self, args):
        import onnxruntime as ort

        self.config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in self.config.get("parameters", {}).items()}
        self.name = self.config["name"]
        path = os.path.join(args["model_repository"], args["model_version"], params.get("onnx_file", "model.onnx"))
        options = ort.SessionOptions()
        threads = int(params.get("intra_op_threads", "0") or 0)
        if threads > 0:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.inputs = [i["name"] for i in self.config["input"]]
        self.outputs = [o["name"] for o in self.config["output"]]
        self.label_inputs = [n for n in params.get("label_inputs", "").split(",") if n]
        self.num_classes = int(params.get("num_classes", "0") or 0)

    def execute(self, requests):
        responses = [None] * len(requests)
        ready = []  # (request index, feeds, batch size)
        for i, request in enumerate(requests):
            try:
                feeds = {}
                for name in self.inputs:
                    tensor = pb_utils.get_input_tensor_by_name(request, name)
                    if tensor is None:
                        raise ValueError(f"input {name!r} is missing")
                    feeds[name] = tensor.as_numpy()
                for name in self.label_inputs:
                    _check_ids(name, feeds[name], self.num_classes)
                ready.append((i, feeds, len(feeds[self.inputs[0]])))
            except Exception as e:  # noqa: BLE001 - every failure becomes this request's error
                responses[i] = pb_utils.InferenceResponse(error=_error(f"{self.name}: {e}"))
        if ready:
            try:
                if len(ready) == 1:
                    batch_feeds = ready[0][1]
                else:
                    batch_feeds = {n: np.concatenate([f[n] for _, f, _ in ready]) for n in self.inputs}
                results = self.session.run(self.outputs, batch_feeds)
                start = 0
                for i, _, n in ready:
                    tensors = [pb_utils.Tensor(name, np.ascontiguousarray(r[start:start + n]))
                               for name, r in zip(self.outputs, results)]
                    responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
                    start += n
            except Exception as e:  # noqa: BLE001
                for i, _, _ in ready:
                    responses[i] = pb_utils.InferenceResponse(
                        error=pb_utils.TritonError(f"{self.name}: onnxruntime failed: {e}"))
        return responses

    def finalize(self):
        self.session = None

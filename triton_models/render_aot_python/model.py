"""Triton python-backend model (target ``cpu``): runs a cityserve render package compiled ahead of
time with AOTInductor (``render.pt2``, BF16 where the CPU has it), loaded in seconds, no recompiling.

The version directory holds ``render.pt2`` and ``card.json`` (the AOT card: torch version and CPU
flags the package needs, its sha256). ``initialize`` refuses an incompatible or altered package with
a one-line reason, so the server reports the model as failed to load instead of crashing on an
illegal instruction. Requests that the dynamic batcher groups run as ONE call (concatenated along the
batch axis) and are split again; out-of-range label ids fail only their own request.
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
        import hashlib

        import torch

        from cityserve.export.aot import check_compatible

        self.config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in self.config.get("parameters", {}).items()}
        self.name = self.config["name"]
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        with open(os.path.join(version_dir, params.get("card_file", "card.json"))) as f:
            aot = json.load(f)["extra"]["aot"]
        check_compatible(aot)  # raises a one-line UnavailableError naming the missing CPU flags
        path = os.path.join(version_dir, aot["file"])
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        if digest.hexdigest() != aot["sha256"]:
            raise RuntimeError(f"{self.name}: {path} does not match the sha256 in its card")
        # The server's environment sets OMP_NUM_THREADS=1 (several python stubs share the cores), which
        # would leave torch on one thread: 0 here means every core this process may use.
        threads = int(params.get("intra_op_threads", "0") or 0) or len(os.sched_getaffinity(0))
        torch.set_num_threads(threads)
        from torch._inductor import aoti_load_package

        self.torch = torch
        self.fn = aoti_load_package(path)
        self.inputs = [i["name"] for i in self.config["input"]]
        self.package_inputs = list(aot["inputs"])  # positional order of the compiled graph
        self.outputs = [o["name"] for o in self.config["output"]]
        self.label_inputs = [n for n in params.get("label_inputs", "").split(",") if n]
        self.num_classes = int(params.get("num_classes", "0") or 0)

    def _run(self, feeds):
        torch = self.torch
        args = [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in self.package_inputs]
        if self.package_inputs == ["labels", "z"]:
            args.insert(1, None)
        with torch.inference_mode():
            out = self.fn(*args)
        if isinstance(out, (list, tuple)):
            out = out[0]
        return out.numpy()

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
                image = self._run(batch_feeds)
                start = 0
                for i, _, n in ready:
                    tensors = [pb_utils.Tensor(self.outputs[0], np.ascontiguousarray(image[start:start + n]))]
                    responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
                    start += n
            except Exception as e:  # noqa: BLE001
                for i, _, _ in ready:
                    responses[i] = pb_utils.InferenceResponse(
                        error=pb_utils.TritonError(f"{self.name}: AOT package failed: {e}"))
        return responses

    def finalize(self):
        self.fn = None

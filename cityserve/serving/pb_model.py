"""What cityserve's Triton python-backend models (``cityserve/serving/triton_models/*/model.py``) share.

Each ``model.py`` stays a short ``TritonPythonModel`` in the shape of Triton's own examples and keeps
only what is its own; the parts every one of them would repeat live here: reading ``args`` and the
model config, answering each request on its own (an exception fails only that request, as an
``INVALID_ARG`` error naming the model), marking the process busy while it executes (what a drain waits
for, ``cityserve.serving.drain``), and, for the graph runners, running the requests that the dynamic
batcher grouped as one call. An ``entry`` model (the first step of the ensembles) answers UNAVAILABLE
while its server drains.

Imported inside Triton's python backend stub, which puts ``triton_python_backend_utils`` on the path.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from ..contract import depth_values_problem
from ..errors import LabelError
from ..labels.labelmap import check_ids
from . import codec
from .drain import ModelState

try:
    import triton_python_backend_utils as pb_utils
except ImportError:  # outside the stub: the module imports, the models cannot run
    pb_utils = None


def error(message: str, invalid_arg: bool = True, code: str = "") -> Any:
    """A ``TritonError``: INVALID_ARG (bad input), or the named ``code`` (e.g. "UNAVAILABLE"), where this
    Triton's python backend has error codes."""
    code = code or ("INVALID_ARG" if invalid_arg else "")
    if code:
        try:
            return pb_utils.TritonError(message, getattr(pb_utils.TritonError, code))
        except (AttributeError, TypeError):
            pass
    return pb_utils.TritonError(message)


def error_response(message: str, invalid_arg: bool = True, code: str = "") -> Any:
    return pb_utils.InferenceResponse(error=error(message, invalid_arg, code))


def input_array(request: Any, name: str) -> np.ndarray:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        raise ValueError(f"input {name!r} is missing")
    return tensor.as_numpy()


def decode_items(request: Any, name: str, decode: Any) -> list[Any]:
    """``decode(bytes)`` of each item of the BYTES input ``name``; a bad item is a ValueError naming the
    input (and the item, in a batch) and the problem: the one-line message its request fails with."""
    items = input_array(request, name).reshape(-1)
    decoded = []
    for k, item in enumerate(items):
        try:
            decoded.append(decode(codec.as_bytes(item)))
        except Exception as e:
            where = f" (batch item {k} of {len(items)})" if len(items) > 1 else ""
            raise ValueError(f"{name}{where}: {e}") from None
    return decoded


def response(outputs: dict[str, np.ndarray]) -> Any:
    """An ``InferenceResponse`` with one output tensor per ``{name: array}`` item, in that order."""
    return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(n, a) for n, a in outputs.items()])


def label_png_decoder(model: PythonModel) -> codec.LabelPngDecoder:
    """The label PNG decoder a model's parameters describe (``decode_png`` in mode "labels", the fused
    ``label2photo``): label set file, size, channels, dtype, limits, nearest-color snapping."""
    p = model.params
    return codec.LabelPngDecoder(
        model.version_file("label_set_file", "label_set.json"),
        int(p["height"]),
        int(p["width"]),
        int(p["num_classes"]),
        np.dtype(p.get("dtype", "uint8")),
        nearest=p.get("nearest", "false").lower() == "true",
        **decoder_limits(model),
    )


def decoder_limits(model: PythonModel) -> dict[str, int]:
    """``max_pixels`` / ``max_bytes`` from a decoding model's parameters (the codec's defaults without)."""
    return dict(
        max_pixels=int(model.params.get("max_pixels", codec.DEFAULT_MAX_PIXELS)),
        max_bytes=int(model.params.get("max_bytes", codec.DEFAULT_MAX_BYTES)),
    )


def render_inputs(model: PythonModel) -> codec.RenderInputs:
    """Label ids -> a render graph's inputs, as a model's parameters describe them (``prepare_render``,
    the fused ``label2photo``): instances when the graph takes them (``use_instance``, or the model
    outputs ``instances``), a latent of ``z_dim`` (``latent`` random | zero)."""
    p = model.params
    return codec.RenderInputs(
        int(p["height"]),
        int(p["width"]),
        int(p["num_classes"]),
        np.dtype(p.get("dtype", "uint8")),
        use_instance=p.get("use_instance", "false") == "true" or "instances" in model.outputs,
        z_dim=int(p.get("z_dim", "0") or 0),
        seed=None,
        latent=p.get("latent", "random") or "random",
    )


class PythonModel:
    """Base of a ``TritonPythonModel``. ``initialize`` reads the config into ``config``, ``params`` (its
    string parameters), ``name``, ``inputs`` / ``outputs`` (tensor names) and ``version_dir``; subclasses
    call it first, then set up. ``execute`` answers each request with ``infer(request)``, a
    ``{output name: array}`` dict, or with the error it raised; with ``entry = True``, every request
    gets UNAVAILABLE while the server drains."""

    entry = False

    def initialize(self, args: dict[str, str]) -> None:
        self.config = json.loads(args["model_config"])
        self.params = {k: v.get("string_value", "") for k, v in self.config.get("parameters", {}).items()}
        self.name = self.config["name"]
        self.inputs = [i["name"] for i in self.config.get("input", [])]
        self.outputs = [o["name"] for o in self.config.get("output", [])]
        self.version_dir = os.path.join(args["model_repository"], args["model_version"])
        self.state = ModelState(self.name, entry=self.entry)

    def version_file(self, param: str, default: str) -> str:
        """The file in the version directory that parameter ``param`` names (``default`` without it);
        a name with a directory part is refused, so a config can only point inside its version directory."""
        name = self.params.get(param, default)
        if os.path.basename(name) != name or name in ("", ".", ".."):
            raise ValueError(f"{self.name}: parameter {param} must name a file in the version directory, not {name!r}")
        return os.path.join(self.version_dir, name)

    def infer(self, request: Any) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def refused_while_draining(self, requests: list[Any]) -> list[Any] | None:
        """UNAVAILABLE for every request when this is an entry model and the server drains, else None."""
        if self.entry and self.state.draining():
            message = f"{self.name}: the server is draining before it stops; retry on another replica or later"
            return [error_response(message, code="UNAVAILABLE") for _ in requests]
        return None

    def execute(self, requests: list[Any]) -> list[Any]:
        refused = self.refused_while_draining(requests)
        if refused is not None:
            return refused
        with self.state.busy():
            responses = []
            for request in requests:
                try:
                    responses.append(response(self.infer(request)))
                except Exception as e:
                    responses.append(error_response(f"{self.name}: {e}"))
            return responses


class BatchedPythonModel(PythonModel):
    """Base of a graph runner: the requests that the dynamic batcher groups run as ONE ``run(feeds)``
    call (concatenated along the batch axis) and are split again. Inputs listed in the ``label_inputs``
    parameter are checked against ``num_classes`` first: an out-of-range id fails only its own request,
    with a message naming the ids, and never reaches the graph. ``run`` returns the outputs' arrays in
    ``self.outputs`` order; if it fails, every request of the call gets the error, naming ``engine``."""

    engine = "graph"

    def initialize(self, args: dict[str, str]) -> None:
        super().initialize(args)
        self.label_inputs = [n for n in self.params.get("label_inputs", "").split(",") if n]
        self.num_classes = int(self.params.get("num_classes", "0") or 0)
        self.depth_inputs = [n for n in self.params.get("depth_inputs", "").split(",") if n]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    def feeds(self, request: Any) -> dict[str, np.ndarray]:
        feeds = {name: input_array(request, name) for name in self.inputs}
        for name in self.label_inputs:
            try:
                check_ids(feeds[name], self.num_classes)
            except LabelError as e:
                raise ValueError(f"{name}: {e}") from None
        for name in self.depth_inputs:
            problem = depth_values_problem(feeds[name])
            if problem:
                raise ValueError(f"{name}: {problem}")
        return feeds

    def execute(self, requests: list[Any]) -> list[Any]:
        refused = self.refused_while_draining(requests)
        if refused is not None:
            return refused
        with self.state.busy():
            return self._execute(requests)

    def outputs_of(self, results: list[np.ndarray]) -> list[np.ndarray]:
        """The arrays to answer with, in ``self.outputs`` order, from what ``run`` returned for a
        batch (the fused label2photo encodes its photos here)."""
        return results

    def _execute(self, requests: list[Any]) -> list[Any]:
        responses = [None] * len(requests)
        ready = []  # (request index, feeds, batch size)
        for i, request in enumerate(requests):
            try:
                feeds = self.feeds(request)
                ready.append((i, feeds, len(next(iter(feeds.values())))))
            except Exception as e:
                responses[i] = error_response(f"{self.name}: {e}")
        if ready:
            try:
                if len(ready) == 1:
                    batch_feeds = ready[0][1]
                else:
                    batch_feeds = {n: np.concatenate([f[n] for _, f, _ in ready]) for n in ready[0][1]}
                results = self.outputs_of(self.run(batch_feeds))
                start = 0
                for i, _, n in ready:
                    responses[i] = response(
                        {name: np.ascontiguousarray(r[start : start + n]) for name, r in zip(self.outputs, results)}
                    )
                    start += n
            except Exception as e:
                for i, _, _ in ready:
                    responses[i] = error_response(f"{self.name}: {self.engine} failed: {e}", invalid_arg=False)
        return responses

"""Triton python-backend model (target ``cpu``, ``pipeline: fused``, the default): the whole
``label2photo`` in ONE python model: label PNG bytes -> decode -> prepare -> render -> photo PNG bytes.

Why: on the cpu target every step of the ``label2photo`` ensemble is a python-backend model, and each
hop between them is a round trip through the python stub with shared-memory copies of its tensors.
Here the label PNG is decoded with the ``decode_png`` model's decoder (``codec.LabelPngDecoder``: every
header check before decoding), prepared as ``prepare_render`` does (``codec.RenderInputs``), rendered
by the engine the ``render`` model runs (``graph_runners.graph_runner``: OpenVINO / onnxruntime / AOT,
from the same files) and encoded as ``encode_png`` does (``codec.encode_rgb_png``), all in one process.
The contract is the ensemble's: ``LABELS_PNG`` BYTES [B, 1] in, ``PHOTO_PNG`` BYTES [B, 1] out; a bad
item fails only its own request with INVALID_ARG and the same message. Requests that the dynamic
batcher groups run as ONE engine call. It is the entry model: while the server drains it answers
UNAVAILABLE. With ``warmup`` it runs the engine once at each of batch 1 and ``max_batch_size`` at load
(Triton's own warm-up cannot feed a valid PNG).
"""

import os
import sys

# `cityserve serve` names where cityserve and its dependencies live (the stub ignores PYTHONPATH)
sys.path.extend(p for p in os.environ.get("CITYSERVE_PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path)

import numpy as np

from cityserve.serving import codec
from cityserve.serving.graph_runners import graph_runner
from cityserve.serving.pb_model import BatchedPythonModel, decode_items, label_png_decoder, render_inputs


class TritonPythonModel(BatchedPythonModel):
    entry = True

    def initialize(self, args):
        super().initialize(args)
        self.input_name = self.inputs[0]
        self.decoder = label_png_decoder(self)
        self.prepare = render_inputs(self).prepare
        render_outputs = [o for o in self.params.get("render_outputs", "image").split(",") if o]
        self.render, self.engine = graph_runner(self.params["engine"], self, render_outputs)
        self.compression = int(self.params.get("compression", "1"))
        if self.params.get("warmup", "true") == "true":
            zeros = np.zeros((1, self.decoder.height, self.decoder.width), self.decoder.dtype)
            for batch in sorted({1, max(1, int(self.config.get("max_batch_size", 1)))}):
                self.outputs_of(self.run(self.stack([self.prepare(zeros)] * batch)))

    @staticmethod
    def stack(prepared):
        return {name: np.stack([p[name] for p in prepared]) for name in prepared[0]}

    def feeds(self, request):
        ids = decode_items(request, self.input_name, self.decoder.decode)
        if not ids:
            raise ValueError(f"{self.input_name}: no label PNG in the request")
        return self.stack([self.prepare(i) for i in ids])

    def run(self, feeds):
        return self.render(feeds)

    def outputs_of(self, results):
        photos = [[codec.encode_rgb_png(image, self.compression)] for image in results[0]]
        return [np.array(photos, dtype=np.object_)]

    def finalize(self):
        self.render = None

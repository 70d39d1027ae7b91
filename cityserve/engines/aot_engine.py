"""The AOTInductor engine: runs a ``render.pt2`` package built by ``cityserve export aot``.

Given an AOT card (``extra.aot``) it loads that package. Given a plain generator card it compiles one
into a cache directory beside the card (``<card dir>/aot-<dtype>/``) on first use, so
``cityserve render --engine aot`` works in one step; a cached package built by another torch or for
another CPU is rebuilt rather than refused.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ..cards import ModelCard, load_card


class AOTEngine:
    def __init__(self, card: ModelCard, dtype: Optional[str] = None, threads: Optional[int] = None,
                 package_card: Optional[str] = None):
        from ..export.aot import aot_card_for, load_aot

        if threads:
            torch.set_num_threads(threads)
        card = load_card(package_card) if package_card is not None else aot_card_for(card, dtype)
        self.card = card
        self.input_names = list(card.extra["aot"]["inputs"])
        self._fn = load_aot(card)

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        args = [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in self.input_names]
        if self.input_names == ["labels", "z"]:
            args.insert(1, None)
        with torch.inference_mode():
            out = self._fn(*args)
        if isinstance(out, (list, tuple)):
            out = out[0]
        return out.numpy()

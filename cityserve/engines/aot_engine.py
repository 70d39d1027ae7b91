"""The AOTInductor engine: runs a ``render.pt2`` package built by ``cityserve export aot``.

Given a generator card without a package, it compiles one into a cache directory beside the card
(``<card dir>/aot-<dtype>/``) on first use, so ``cityserve render --engine aot`` works in one step.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ..cards import ModelCard, load_card


class AOTEngine:
    def __init__(self, card: ModelCard, dtype: Optional[str] = None, threads: Optional[int] = None,
                 package_card: Optional[str] = None):
        from ..export.aot import compile_aot, default_dtype, load_aot

        if threads:
            torch.set_num_threads(threads)
        if package_card is not None:
            card = load_card(package_card)
        elif "aot" not in card.extra:
            dtype = dtype or default_dtype()
            cached = card.directory / f"aot-{dtype}" / f"{card.name}.card.json"
            if cached.is_file() and load_card(cached).extra.get("aot", {}).get("torch") == torch.__version__:
                card = load_card(cached)
            else:
                card = load_card(compile_aot(card, cached.parent, dtype))
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

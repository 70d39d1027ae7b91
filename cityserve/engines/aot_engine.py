"""The AOTInductor engine: runs a ``render.pt2`` package built by ``cityserve export aot``.

Given an AOT card (``artifacts["aot"]``) it loads that package. Given a plain generator card it compiles one
into a cache directory beside the card (``<card dir>/aot-<dtype>/``) on first use, so
``cityserve render --engine aot`` works in one step; a cached package built by another torch or for
another CPU is rebuilt rather than refused.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ..cards import ModelCard, load_card
from ..export.aot import aot_card_for, load_aot


class AOTEngine:
    def __init__(
        self,
        card: ModelCard,
        dtype: Optional[str] = None,
        threads: Optional[int] = None,
        package_card: Optional[str] = None,
    ):
        if threads:
            torch.set_num_threads(threads)
        self.card = load_card(package_card) if package_card is not None else aot_card_for(card, dtype)
        self.package = load_aot(self.card)
        self.input_names = self.package.inputs

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self.package(feeds)

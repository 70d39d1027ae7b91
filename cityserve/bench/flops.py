"""FLOPs per image, counted from the model by running it once under ``torch.utils.flop_counter``.

The counter sees every convolution, matmul and (transposed) convolution the graph executes, with
the real shapes, so SPADE's per-layer resized label maps and the segmenters' upsampling heads are
counted as they run. One multiply-accumulate = 2 FLOPs. Element-wise work (norms, activations) is not
counted, as is customary for these figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode


def count_flops(module: torch.nn.Module, inputs: Sequence[Any]) -> int:
    """Total FLOPs of ``module(*inputs)`` (for the whole batch in ``inputs``)."""
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        module(*inputs)
    return int(counter.get_total_flops())


def conv2d_flops(cin: int, cout: int, kh: int, kw: int, hout: int, wout: int, groups: int = 1) -> int:
    """Hand formula for one Conv2d: 2 * Cout * Hout * Wout * (Cin / groups) * kh * kw."""
    return 2 * cout * hout * wout * (cin // groups) * kh * kw

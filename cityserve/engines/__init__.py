"""Engines that run a model's render graph; ``Renderer`` is the API in front of all of them.

The names below are imported on first use (PEP 562): ``engines.base`` pulls in torch, which a Triton
python model that only needs ``engines.openvino_engine`` should not pay for (tens of seconds of
start-up on a busy machine, and its memory in every stub process).
"""

from typing import Any

__all__ = ["ENGINES", "Renderer", "load_engine"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

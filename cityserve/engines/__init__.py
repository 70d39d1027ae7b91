"""Engines that run a model's render graph; ``Renderer`` is the API in front of all of them."""

from .base import ENGINES, Renderer, load_engine

__all__ = ["ENGINES", "Renderer", "load_engine"]

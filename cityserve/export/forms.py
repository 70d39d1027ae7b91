"""The inference forms of a SPADE generator an export can take, by name: one home for the choice.

``plain``: the model as built (spectral norm folded). ``fused``: shared convs merged
(``cityserve.export.fuse``). ``boundary``: gamma/beta convolutions only at label boundaries, a per-class
table elsewhere (``cityserve.export.boundary``). ``table``: 1x1-kernel SPADE norms as a per-image lookup of
pixel codes, OASIS noise included (``cityserve.export.table``). All compute the same image.
"""

from __future__ import annotations

from typing import Optional

from torch import nn

from ..card_sections import SPADE_FORMS
from ..errors import ConfigError

FORMS = SPADE_FORMS


def resolve_form(form: Optional[str], fused: bool = False) -> str:
    """The form asked for: ``form`` by name, else the older ``fused`` flag; both given must agree."""
    if form is None:
        return "fused" if fused else "plain"
    if form not in FORMS:
        raise ConfigError(f"form must be one of {', '.join(FORMS)}, not {form!r}")
    if fused and form != "fused":
        raise ConfigError(f"--fused and --form {form} contradict each other")
    return form


def apply_form(generator: nn.Module, form: str, what: str, arch: str) -> nn.Module:
    """``generator`` in ``form`` (``what``/``arch`` name the model in the error for non-SPADE models)."""
    if form == "plain":
        return generator
    if arch != "spade":
        raise ConfigError(f"--form {form} is a SPADE inference form; {what} is a {arch} model")
    if form == "fused":
        from .fuse import fuse_spade

        return fuse_spade(generator)
    if form == "table":
        from .table import table_spade

        return table_spade(generator)
    from .boundary import boundary_spade

    return boundary_spade(generator)

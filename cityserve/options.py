"""Options named once: each is a dataclass field (with its help text in the field's metadata), and
command lines are generated from the fields (the training entry points' flags are).

``option(default, "help")`` declares a field; ``add_options(group, Config)`` adds one flag per field
(``lambda_feat`` -> ``--lambda-feat``; a bool ``x`` -> ``--x`` / ``--no-x``, a bool ``no_x`` ->
``--no-x`` / ``--x``); ``given(args, Config)`` returns the fields the command line set, which override
a preset with ``dataclasses.replace``. Every flag defaults to "not given", so a preset's values stand
unless the user names the flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Optional, Union

CLI = "cli"  # metadata key: False keeps a field off the command line; a dict adds argparse keywords
HELP = "help"


def option(default: Any = dataclasses.MISSING, help: str = "", cli: bool | dict = True, **kw: Any) -> Any:
    """A dataclass field with its help text (and, in ``cli``, extra argparse keywords such as ``choices``
    or ``metavar``; ``cli=False`` for fields a run derives, never set by hand)."""
    meta = {HELP: help, CLI: cli}
    if "default_factory" in kw:
        return dataclasses.field(default_factory=kw.pop("default_factory"), metadata=meta, **kw)
    return dataclasses.field(default=default, metadata=meta, **kw)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _base_type(hint: Any) -> Any:
    """``Optional[int]`` / ``int | None`` -> int; other hints as they are."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return hint


def cli_fields(cls: type, include: Optional[tuple[str, ...]] = None) -> list[dataclasses.Field]:
    """The fields of ``cls`` that appear on the command line (all but ``cli=False``, or those in ``include``)."""
    fields = [f for f in dataclasses.fields(cls) if f.metadata.get(CLI, True) is not False]
    return [f for f in fields if include is None or f.name in include]


def add_options(group: Any, cls: type, include: Optional[tuple[str, ...]] = None) -> None:
    """One flag per command-line field of dataclass ``cls`` in ``group`` (a parser or argument group)."""
    hints = typing.get_type_hints(cls)
    for f in cli_fields(cls, include):
        extra = dict(f.metadata[CLI]) if isinstance(f.metadata.get(CLI), dict) else {}
        help_text = f.metadata.get(HELP, "")
        typ = _base_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else None
        if default is not None and default != "" and "%(default)" not in help_text and typ is not bool:
            help_text = f"{help_text} (default: {default})" if help_text else f"default: {default}"
        kw: dict[str, Any] = {"dest": f.name, "default": None, "help": help_text or None}
        if typ is bool:
            if f.name.startswith("no_"):  # no_instance: --no-instance sets it, --instance clears it
                group.add_argument(_flag(f.name), action="store_const", const=True, **kw)
                group.add_argument(
                    _flag(f.name[3:]),
                    dest=f.name,
                    action="store_const",
                    const=False,
                    default=None,
                    help=argparse.SUPPRESS,
                )
            else:
                group.add_argument(_flag(f.name), action=argparse.BooleanOptionalAction, **kw)
            continue
        if typ in (int, float, str):
            kw["type"] = typ
        elif typ is Path:
            kw["type"] = Path
        kw.update(extra)
        group.add_argument(_flag(f.name), **kw)


def given(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The command-line fields of ``cls`` that the user set (not None)."""
    return {f.name: getattr(args, f.name) for f in cli_fields(cls) if getattr(args, f.name, None) is not None}


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, paths and tuples as plain JSON values (for the config written beside a run)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj

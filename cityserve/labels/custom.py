"""A user's own label set from a JSON or YAML file (the format: ``cityserve.labels.schema``), validated
with errors that name the file and the class.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..errors import LabelError
from .labelset import LabelSet


def label_set_from_dict(d: Mapping[str, Any], source: str = "label set dict") -> LabelSet:
    """Validate ``d`` and build its LabelSet; every error starts with ``source``."""
    return LabelSet.from_dict(d, source)


def load_label_set_file(path: str | os.PathLike) -> LabelSet:
    """Read a label set from ``.json`` / ``.yaml`` / ``.yml`` (other suffixes: JSON, then YAML)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise LabelError(f"cannot read label set file {p}: {getattr(e, 'strerror', None) or e}") from None
    suffix = p.suffix.lower()
    data: Any = None
    if suffix != ".yaml" and suffix != ".yml":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            if suffix == ".json":
                raise LabelError(f"{p}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    if data is None:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            raise LabelError(f"{p}: not valid YAML{at}: {getattr(e, 'problem', None) or e}") from None
    return label_set_from_dict(data, str(p))

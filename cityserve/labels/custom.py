"""A user's own label set from a JSON or YAML file, validated with errors that name the file and class.

    {"name": "my-city",
     "classes": [{"id": 0, "name": "road", "color": [128, 64, 128], "train_id": 0}, ...],
     "dontcare_id": null}

Per class, ``id``, ``name`` and ``color`` ([r, g, b] 0..255, or "#rrggbb") are required; ``train_id``
(0..254, 255 = ignore: train ids are uint8) defaults to the id (255 for the dontcare class and for ids
>= 255), ``ignore_in_eval`` to ``train_id == 255``,
``category`` to "" and ``has_instances`` to false. Optional top-level keys: ``file_convention``
("identity" by default, see ``FILE_CONVENTIONS``) and ``allow_shared_colors`` (false: two classes with
one color are an error, since a painted color could not say which class it meant).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import LabelError
from .labelset import IGNORE, LabelClass, LabelSet

_CLASS_KEYS = {"id", "name", "color", "train_id", "ignore_in_eval", "category", "has_instances"}
MAX_CLASSES = 4096  # ids are a model's channels; COCO-Stuff, the largest built-in set, has 183
MAX_TEXT = 100  # characters of a set's or class's name / category
MAX_FILE_BYTES = 16 << 20
_TOP_KEYS = {"name", "classes", "dontcare_id", "file_convention", "allow_shared_colors", "description"}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _text(v: Any, what: str, limit: int = MAX_TEXT) -> str:
    if not isinstance(v, str) or not v.strip() or len(v) > limit:
        raise LabelError(f"{what} {v!r:.40} is not a non-empty string of at most {limit} characters")
    return v


def _color(v: Any, where: str) -> tuple[int, int, int]:
    if isinstance(v, str):
        h = v.lstrip("#")
        if len(h) == 6:
            try:
                return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)
            except ValueError:
                pass
        raise LabelError(f"{where}: color {v!r} is not [r, g, b] or '#rrggbb'")
    if isinstance(v, (list, tuple)) and len(v) == 3 and all(_is_int(x) and 0 <= x <= 255 for x in v):
        return int(v[0]), int(v[1]), int(v[2])
    raise LabelError(f"{where}: color {v!r} is not [r, g, b] with integers 0..255")


def label_set_from_dict(d: Mapping[str, Any], source: str = "label set dict") -> LabelSet:
    """Validate ``d`` and build its LabelSet; every error starts with ``source``."""
    if not isinstance(d, Mapping):
        raise LabelError(f"{source}: a label set is a mapping with 'name' and 'classes', not {type(d).__name__}")
    unknown = set(d) - _TOP_KEYS
    if unknown:
        raise LabelError(
            f"{source}: unknown key(s) {', '.join(sorted(map(str, unknown)))} (expected {', '.join(sorted(_TOP_KEYS))})"
        )
    classes = d.get("classes")
    if not isinstance(classes, list) or not classes:
        raise LabelError(f"{source}: 'classes' must be a non-empty list of {{id, name, color}} entries")
    if len(classes) > MAX_CLASSES:
        raise LabelError(f"{source}: {len(classes)} classes; a label set has at most {MAX_CLASSES}")
    name = d.get("name") or (Path(source).stem[:MAX_TEXT] if Path(source).suffix else "custom")
    _text(name, f"{source}: name")
    if "description" in d and not (isinstance(d["description"], str) and len(d["description"]) <= 10 * MAX_TEXT):
        raise LabelError(f"{source}: description must be a string of at most {10 * MAX_TEXT} characters")
    dontcare_id = d.get("dontcare_id")
    if dontcare_id is not None and not (_is_int(dontcare_id) and 0 <= dontcare_id < MAX_CLASSES):
        raise LabelError(f"{source}: dontcare_id must be an id 0..{MAX_CLASSES - 1} or null, not {dontcare_id!r:.40}")

    by_id: dict[int, LabelClass] = {}
    for n, c in enumerate(classes):
        where = f"{source}: classes[{n}]"
        if not isinstance(c, Mapping):
            raise LabelError(f"{where} must be a mapping with id, name and color, not {c!r}")
        extra = set(c) - _CLASS_KEYS
        if extra:
            raise LabelError(f"{where}: unknown key(s) {', '.join(sorted(map(str, extra)))}")
        missing = [k for k in ("id", "name", "color") if k not in c]
        if missing:
            raise LabelError(f"{where} lacks {', '.join(missing)}")
        cid, cname = c["id"], c["name"]
        if not _is_int(cid) or not 0 <= cid < MAX_CLASSES:
            raise LabelError(f"{where}: id {cid!r:.40} is not an integer 0..{MAX_CLASSES - 1}")
        _text(cname, f"{where}: name")
        where = f"{source}: class {cid} {cname!r}"
        if cid in by_id:
            raise LabelError(f"{source}: duplicate id {cid} ('{by_id[cid].name}' and '{cname}')")
        train_id = c.get("train_id", IGNORE if cid == dontcare_id or cid >= IGNORE else cid)
        if train_id == -1:
            train_id = IGNORE  # cityscapesscripts writes -1 for license plate
        if not _is_int(train_id) or not 0 <= train_id <= IGNORE:
            raise LabelError(f"{where}: train_id {train_id!r} is not an integer 0..255 (255 = ignore)")
        ignore = c.get("ignore_in_eval", train_id == IGNORE)
        has_inst = c.get("has_instances", False)
        if not isinstance(ignore, bool) or not isinstance(has_inst, bool):
            raise LabelError(f"{where}: ignore_in_eval and has_instances must be true or false")
        by_id[cid] = LabelClass(
            id=cid,
            name=cname,
            color=_color(c["color"], where),
            train_id=int(train_id),
            ignore_in_eval=ignore,
            category=_text(c["category"], f"{where}: category") if c.get("category") else "",
            has_instances=has_inst,
        )

    top = max(by_id)
    if top >= len(by_id):  # ids are bounded above, and only the first few gaps are listed
        missing_ids = [i for i in range(top + 1) if i not in by_id][:6]
        shown = ", ".join(map(str, missing_ids[:5])) + (" ..." if len(missing_ids) > 5 else "")
        raise LabelError(
            f"{source}: ids must run 0..{max(by_id)} without gaps (they are the model's channels); missing {shown}"
        )
    if dontcare_id is not None and dontcare_id not in by_id:
        raise LabelError(f"{source}: dontcare_id {dontcare_id} is not one of the class ids 0..{max(by_id)}")
    shared = d.get("allow_shared_colors", False)
    if not isinstance(shared, bool):
        raise LabelError(f"{source}: allow_shared_colors must be true or false")
    convention = d.get("file_convention", "identity")
    try:
        return LabelSet(
            name=str(name),
            classes=tuple(by_id[i] for i in range(len(by_id))),
            dontcare_id=dontcare_id,
            file_convention=convention,
            allow_shared_colors=shared,
        )
    except LabelError as e:
        raise LabelError(f"{source}: {e}") from None


def load_label_set_file(path: str | os.PathLike) -> LabelSet:
    """Read a label set from ``.json`` / ``.yaml`` / ``.yml`` (other suffixes: JSON, then YAML)."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_FILE_BYTES:
            raise LabelError(f"label set file {p} is over {MAX_FILE_BYTES >> 20} MiB: not a label set")
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise LabelError(f"cannot read label set file {p}: {getattr(e, 'strerror', None) or e}") from None
    try:
        return label_set_from_dict(_parse(p, text), str(p))
    except RecursionError:
        raise LabelError(f"{p}: nested too deeply to be a label set") from None


def _parse(p: Path, text: str) -> Any:
    suffix = p.suffix.lower()
    data: Any = None
    if suffix != ".yaml" and suffix != ".yml":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            if suffix == ".json":
                raise LabelError(f"{p}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    if data is None:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            raise LabelError(f"{p}: not valid YAML{at}: {getattr(e, 'problem', None) or e}") from None
    return data

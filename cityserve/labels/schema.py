"""The label-set schema: one class (``LabelClass``), the train id that means "ignore", how annotation
files store ids, and the validation of a label-set mapping (a user's JSON/YAML file, or
``LabelSet.to_dict``'s form) with errors that name the source and the class.

    {"name": "my-city",
     "classes": [{"id": 0, "name": "road", "color": [128, 64, 128], "train_id": 0}, ...],
     "dontcare_id": null}

Per class, ``id``, ``name`` and ``color`` ([r, g, b] 0..255, or "#rrggbb") are required; ``train_id``
(0..254, 255 = ignore: train ids are uint8) defaults to the id (255 for the dontcare class and for ids
>= 255), ``ignore_in_eval`` to ``train_id == 255``, ``category`` to "" and ``has_instances`` to false.
Optional top-level keys: ``file_convention`` ("identity" by default, see ``FILE_CONVENTIONS``) and
``allow_shared_colors`` (false: two classes with one color are an error, since a painted color could
not say which class it meant).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..errors import LabelError

IGNORE = 255  # train id of classes left out of training / evaluation

# How annotation files store ids. Each entry: (shift, dontcare_value): id = value - shift, except
# ``dontcare_value`` which stands for the set's dontcare id.
FILE_CONVENTIONS: dict[str, tuple[int, Optional[int]]] = {
    "identity": (0, None),  # Cityscapes *_labelIds.png, user sets: the file value is the id
    "ade20k": (1, 0),  # ADEChallenge annotations: 0 = other (dontcare), k = class k-1
    "coco-stuff": (0, 255),  # stuffthingmaps: 0..181 as they are, 255 = unknown (dontcare)
}


@dataclass(frozen=True)
class LabelClass:
    """One class. ``train_id`` 255 means ignored in training/evaluation (Cityscapes' convention)."""

    id: int
    name: str
    color: tuple[int, int, int]
    train_id: int = IGNORE
    ignore_in_eval: bool = False
    category: str = ""
    has_instances: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "color": list(self.color),
            "train_id": self.train_id,
            "ignore_in_eval": self.ignore_in_eval,
            "category": self.category,
            "has_instances": self.has_instances,
        }


_CLASS_KEYS = {"id", "name", "color", "train_id", "ignore_in_eval", "category", "has_instances"}
_TOP_KEYS = {"name", "classes", "dontcare_id", "file_convention", "allow_shared_colors", "description"}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


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


def parse_label_set(d: Mapping[str, Any], source: str = "label set dict") -> dict[str, Any]:
    """Validate ``d`` (see the module docstring) -> the LabelSet fields; every error starts with ``source``."""
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
    name = d.get("name") or (Path(source).stem if Path(source).suffix else "custom")
    dontcare_id = d.get("dontcare_id")
    if dontcare_id is not None and not _is_int(dontcare_id):
        raise LabelError(f"{source}: dontcare_id must be an integer id or null, not {dontcare_id!r}")

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
        if not _is_int(cid) or cid < 0:
            raise LabelError(f"{where}: id {cid!r} is not a non-negative integer")
        if not isinstance(cname, str) or not cname.strip():
            raise LabelError(f"{where}: name {cname!r} is not a non-empty string")
        where = f"{source}: class {cid} '{cname}'"
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
            category=str(c.get("category", "")),
            has_instances=has_inst,
        )

    missing_ids = sorted(set(range(max(by_id) + 1)) - set(by_id))
    if missing_ids:
        shown = ", ".join(map(str, missing_ids[:5])) + (" ..." if len(missing_ids) > 5 else "")
        raise LabelError(
            f"{source}: ids must run 0..{max(by_id)} without gaps (they are the model's channels); missing {shown}"
        )
    if dontcare_id is not None and dontcare_id not in by_id:
        raise LabelError(f"{source}: dontcare_id {dontcare_id} is not one of the class ids 0..{max(by_id)}")
    shared = d.get("allow_shared_colors", False)
    if not isinstance(shared, bool):
        raise LabelError(f"{source}: allow_shared_colors must be true or false")
    return {
        "name": str(name),
        "classes": tuple(by_id[i] for i in range(len(by_id))),
        "dontcare_id": dontcare_id,
        "file_convention": d.get("file_convention", "identity"),
        "allow_shared_colors": shared,
    }

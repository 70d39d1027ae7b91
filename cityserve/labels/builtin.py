"""The built-in label sets (Cityscapes, ADE20K, COCO-Stuff) and ``get_label_set``, the one way in.

- ``cityscapes``: ids 0..33 from cityscapesscripts' own table (imported, not copied); license plate
  (id -1, the color of car) is left out of the id space. No dontcare class; train ids as the table's
  (19 classes, 255 = ignore). Shared colors read back as the lowest id: black -> 0 'unlabeled',
  (153, 153, 153) -> 17 'pole'. Official SPADE Cityscapes models have 35 channels, so a map may carry
  id 34; ``check_ids(ids, num_channels=35)`` accepts it, the set's own checks do not.
- ``ade20k``: ids 0..149 are the SceneParsing-150 classes with the standard palette (assets/ade20k.json,
  as in MMSegmentation's ADE20KDataset); 150 = 'other' (dontcare, black, train id 255). Files store 0 for
  other and k+1 for class k. The palette gives road and skyscraper the same gray: it reads back as road.
- ``coco-stuff``: ids 0..181 as SPADE and the stuffthingmaps files use them (id k is line k+1 of
  cocostuff's labels.txt: 0..90 the 91 COCO thing ids, 11 of them unused, then 91..181 stuff);
  182 = 'unknown' (dontcare, train id 255), stored as 255 in files. Colors: SPADE's visualizer
  colormap, ``util.labelcolormap``: the PASCAL VOC bit-interleaving colormap of id+1 (all distinct).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, Union

from cityscapesscripts.helpers.labels import labels as table

from ..errors import LabelError
from .custom import label_set_from_dict, load_label_set_file
from .labelset import LabelSet
from .schema import IGNORE, LabelClass

ASSETS = Path(__file__).resolve().parents[1] / "assets"

BUILTIN_NAMES = ("cityscapes", "ade20k", "coco-stuff")
_ALIASES = {
    "cityscapes": "cityscapes",
    "ade20k": "ade20k",
    "ade": "ade20k",
    "ade20k-150": "ade20k",
    "coco-stuff": "coco-stuff",
    "cocostuff": "coco-stuff",
    "coco": "coco-stuff",
}


def bit_interleave_color(n: int) -> tuple[int, int, int]:
    """The PASCAL VOC / SPADE ``labelcolormap`` color of index n (bits of n spread over r, g, b)."""
    r = g = b = 0
    for j in range(8):
        r |= ((n >> 0) & 1) << (7 - j)
        g |= ((n >> 1) & 1) << (7 - j)
        b |= ((n >> 2) & 1) << (7 - j)
        n >>= 3
    return r, g, b


def _asset(name: str) -> dict[str, Any]:
    with open(ASSETS / name, encoding="utf-8") as f:
        return json.load(f)


@cache
def cityscapes() -> LabelSet:
    classes = [
        LabelClass(
            id=l.id,
            name=l.name,
            color=tuple(l.color),
            train_id=IGNORE if l.trainId < 0 else l.trainId,
            ignore_in_eval=bool(l.ignoreInEval),
            category=l.category,
            has_instances=bool(l.hasInstances),
        )
        for l in sorted(table, key=lambda l: l.id)
        if l.id >= 0
    ]
    return LabelSet(
        "cityscapes", tuple(classes), dontcare_id=None, file_convention="identity", allow_shared_colors=True
    )


@cache
def ade20k() -> LabelSet:
    entries = _asset("ade20k.json")["classes"]
    classes = [LabelClass(id=i, name=e["name"], color=tuple(e["color"]), train_id=i) for i, e in enumerate(entries)]
    classes.append(
        LabelClass(
            id=len(classes), name="other", color=(0, 0, 0), train_id=IGNORE, ignore_in_eval=True, category="void"
        )
    )
    return LabelSet(
        "ade20k", tuple(classes), dontcare_id=len(classes) - 1, file_convention="ade20k", allow_shared_colors=True
    )


@cache
def coco_stuff() -> LabelSet:
    names = _asset("coco_stuff.json")["classes"]
    classes = [
        LabelClass(
            id=i,
            name=n,
            color=bit_interleave_color(i + 1),
            train_id=i,
            category="thing" if i < 91 else "stuff",
            has_instances=i < 91,
        )
        for i, n in enumerate(names)
    ]
    unknown = len(classes)
    classes.append(
        LabelClass(
            id=unknown,
            name="unknown",
            color=bit_interleave_color(unknown + 1),
            train_id=IGNORE,
            ignore_in_eval=True,
            category="void",
        )
    )
    return LabelSet("coco-stuff", tuple(classes), dontcare_id=unknown, file_convention="coco-stuff")


_BUILDERS = {"cityscapes": cityscapes, "ade20k": ade20k, "coco-stuff": coco_stuff}

LabelSetSpec = Union[LabelSet, str, "os.PathLike[str]", Mapping[str, Any]]


def get_label_set(spec: LabelSetSpec) -> LabelSet:
    """A LabelSet from a LabelSet, a built-in name ("cityscapes", "ade20k", "coco-stuff"), a path to a
    JSON/YAML label-set file, or a dict (``LabelSet.to_dict()`` form, as model cards store it)."""
    if isinstance(spec, LabelSet):
        return spec
    if isinstance(spec, Mapping):
        return label_set_from_dict(spec, "label set dict")
    if isinstance(spec, (str, os.PathLike)):
        text = os.fspath(spec)
        key = text.strip().lower().replace("_", "-")
        if key in _ALIASES:
            return _BUILDERS[_ALIASES[key]]()
        if Path(text).is_file():
            return load_label_set_file(text)
        raise LabelError(
            f"unknown label set {text!r}: not a built-in ({', '.join(BUILTIN_NAMES)}) nor an existing JSON/YAML file"
        )
    raise LabelError(f"a label set is a name, a file path or a dict, not {type(spec).__name__}")

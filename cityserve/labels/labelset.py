"""LabelSet: the classes of one label map vocabulary and every conversion between its representations.

Ids are the generator's channel indices (see the team's label-ids convention): a label map travels as
integer ids, and this module converts them from and to what sits in files (annotation values, which
differ from the ids for ADE20K and COCO-Stuff), colors (what people paint) and train ids (what
segmenters predict). Every conversion rejects values it does not know with a one-line ``LabelError``
naming the value, how many pixels carry it, and the label set; nothing is silently mapped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from ..errors import LabelError
from .colors import PaletteIndex
from .labelmap import as_int_array, check_ids, count_values, describe_values
from .schema import FILE_CONVENTIONS, IGNORE, LabelClass, parse_label_set


def _lookup(lut: np.ndarray, arr: np.ndarray) -> np.ndarray:
    """lut[arr] where arr indexes lut, -1 elsewhere (negative or too large values)."""
    inside = (arr >= 0) & (arr < len(lut))
    return np.where(inside, lut[np.clip(arr, 0, len(lut) - 1)], -1)


@dataclass(frozen=True, eq=False)
class LabelSet:
    """A label vocabulary: ``classes`` cover ids 0..num_ids-1 exactly once each.

    ``dontcare_id`` is the id of the "other / unknown" class (ADE20K 150, COCO-Stuff 182) or None.
    ``file_convention`` names how annotation files store ids (see ``FILE_CONVENTIONS``).
    Several classes may share one color (Cityscapes: ids 0-4 are black, pole/polegroup share gray);
    a color then reads back as the lowest id carrying it, so color -> ids is deterministic.
    """

    name: str
    classes: tuple[LabelClass, ...]
    dontcare_id: Optional[int] = None
    file_convention: str = "identity"
    allow_shared_colors: bool = False
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        ids = [c.id for c in self.classes]
        if ids != list(range(len(ids))):
            raise LabelError(f"label set {self.name!r}: classes must have ids 0..{len(ids) - 1} in order")
        if self.dontcare_id is not None and not 0 <= self.dontcare_id < len(ids):
            raise LabelError(f"label set {self.name!r}: dontcare_id {self.dontcare_id} is not one of its ids")
        if self.file_convention not in FILE_CONVENTIONS:
            raise LabelError(
                f"label set {self.name!r}: unknown file_convention {self.file_convention!r} "
                f"(one of {', '.join(FILE_CONVENTIONS)})"
            )
        shift, dc_value = FILE_CONVENTIONS[self.file_convention]
        if dc_value is not None and self.dontcare_id is None:
            raise LabelError(f"label set {self.name!r}: file_convention {self.file_convention!r} needs a dontcare_id")
        for c in self.classes:
            if len(c.color) != 3 or not all(isinstance(v, (int, np.integer)) and 0 <= v <= 255 for v in c.color):
                raise LabelError(
                    f"label set {self.name!r}: class {c.id} '{c.name}' has color {c.color!r}, "
                    f"not (r, g, b) integers 0..255"
                )
            if not 0 <= c.train_id <= IGNORE:
                raise LabelError(
                    f"label set {self.name!r}: class {c.id} '{c.name}' has train_id {c.train_id} (0..254, 255 = ignore)"
                )
        if not self.allow_shared_colors:
            seen: dict[tuple[int, ...], LabelClass] = {}
            for c in self.classes:
                other = seen.setdefault(tuple(c.color), c)
                if other is not c:
                    raise LabelError(
                        f"label set {self.name!r}: classes {other.id} '{other.name}' and {c.id} "
                        f"'{c.name}' share color {tuple(c.color)} (set allow_shared_colors to accept "
                        f"that; the color then reads back as the lower id)"
                    )

    # ------------------------------------------------------------------ basic tables
    @property
    def num_ids(self) -> int:
        """Number of ids (= generator channels this set needs, dontcare included)."""
        return len(self.classes)

    @property
    def id_dtype(self) -> np.dtype:
        """uint8 where the ids fit (DESIGN: label maps travel as uint8), else int32."""
        return np.dtype(np.uint8 if self.num_ids <= 256 else np.int32)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def palette(self) -> np.ndarray:
        """uint8 [num_ids, 3] RGB color of each id (read-only)."""
        if "palette" not in self._cache:
            p = np.array([c.color for c in self.classes], dtype=np.uint8).reshape(-1, 3)
            p.setflags(write=False)
            self._cache["palette"] = p
        return self._cache["palette"]

    @property
    def num_train_ids(self) -> int:
        """Number of train classes (Cityscapes: 19); train id 255 is ignore and not counted."""
        used = [c.train_id for c in self.classes if c.train_id != IGNORE]
        return max(used) + 1 if used else 0

    def __getitem__(self, key: int | str) -> LabelClass:
        """A class by id or by name."""
        if isinstance(key, str):
            for c in self.classes:
                if c.name == key:
                    return c
            raise LabelError(f"no class named {key!r} in label set {self.name!r}")
        if not 0 <= int(key) < self.num_ids:
            raise LabelError(f"id {key} is out of range for label set {self.name!r} (ids 0..{self.num_ids - 1})")
        return self.classes[int(key)]

    def __len__(self) -> int:
        return self.num_ids

    def __repr__(self) -> str:
        return f"LabelSet({self.name!r}, {self.num_ids} ids, dontcare_id={self.dontcare_id})"

    # ------------------------------------------------------------------ ids
    def check_ids(self, ids: Any, num_channels: Optional[int] = None) -> np.ndarray:
        """Return ``ids`` as an array after checking every value is in 0..limit-1, where limit is
        ``num_channels`` (a model's channel count, e.g. 35 for official SPADE Cityscapes) or num_ids."""
        if num_channels is None:
            return check_ids(ids, self.num_ids, f"label set {self.name!r}", f"label ids for label set {self.name!r}")
        scope = f"a {int(num_channels)}-channel model of label set {self.name!r}"
        return check_ids(ids, num_channels, scope, f"label ids for label set {self.name!r}")

    def ids_to_colors(self, ids: Any) -> np.ndarray:
        """ids [...] -> uint8 RGB [..., 3] (a color label image)."""
        arr = self.check_ids(ids)
        return self.palette[arr]

    def to_train_ids(self, ids: Any) -> np.ndarray:
        """Label ids -> train ids (uint8; 255 where the class is ignored), as cityscapesscripts' id2label."""
        arr = self.check_ids(ids)
        if "train_lut" not in self._cache:
            self._cache["train_lut"] = np.array([c.train_id for c in self.classes], dtype=np.uint8)
        return self._cache["train_lut"][arr]

    def from_train_ids(self, train_ids: Any) -> np.ndarray:
        """Train ids -> label ids. Each train id maps to the lowest id carrying it, as
        cityscapesscripts' trainId2label does (so 255 -> Cityscapes 0 'unlabeled', ADE20K 150 'other')."""
        arr = as_int_array(train_ids, f"train ids for label set {self.name!r}")
        if "from_train_lut" not in self._cache:
            lut = np.full(256, -1, dtype=np.int64)
            for c in reversed(self.classes):
                lut[c.train_id] = c.id
            self._cache["from_train_lut"] = lut
        mapped = _lookup(self._cache["from_train_lut"], arr)
        valid = mapped >= 0
        if not valid.all():
            top, more = count_values(arr[~valid])
            ignore = ", 255 = ignore" if any(c.train_id == IGNORE for c in self.classes) else ""
            raise LabelError(
                f"{describe_values('train id', top, more)} not a train id of label set {self.name!r} "
                f"(train ids 0..{self.num_train_ids - 1}{ignore})"
            )
        return mapped.astype(self.id_dtype)

    # ------------------------------------------------------------------ files
    @property
    def max_file_value(self) -> int:
        """The largest value a file of this set holds (ADE20K 150, COCO-Stuff 255, Cityscapes 33)."""
        shift, dc_value = FILE_CONVENTIONS[self.file_convention]
        values = [c.id + shift for c in self.classes if dc_value is None or c.id != self.dontcare_id]
        return max(values + ([dc_value] if dc_value is not None else []))

    @property
    def file_dtype(self) -> np.dtype:
        """uint8 where every file value fits, else uint16 (16-bit PNG)."""
        return np.dtype(np.uint8 if self.max_file_value <= 255 else np.uint16)

    def _file_lut(self) -> np.ndarray:
        """file value -> id, -1 where the value means nothing in this set."""
        if "file_lut" not in self._cache:
            shift, dc_value = FILE_CONVENTIONS[self.file_convention]
            lut = np.full(self.max_file_value + 1, -1, dtype=np.int64)
            for c in self.classes:
                if c.id != self.dontcare_id or dc_value is None:
                    lut[c.id + shift] = c.id
            if dc_value is not None:
                lut[dc_value] = self.dontcare_id
            self._cache["file_lut"] = lut
        return self._cache["file_lut"]

    def file_to_ids(self, values: Any) -> np.ndarray:
        """Annotation file values -> ids (ADE20K: 0 -> 150, k -> k-1; COCO-Stuff: 255 -> 182)."""
        arr = as_int_array(values, f"label file values for label set {self.name!r}")
        mapped = _lookup(self._file_lut(), arr)
        valid = mapped >= 0
        if not valid.all():
            top, more = count_values(arr[~valid])
            raise LabelError(
                f"{describe_values('file value', top, more)} not valid in label set {self.name!r} ({self._file_rule()})"
            )
        return mapped.astype(self.id_dtype)

    def ids_to_file(self, ids: Any) -> np.ndarray:
        """ids -> the values annotation files store (the inverse of ``file_to_ids``), ``file_dtype``."""
        arr = self.check_ids(ids)
        shift, dc_value = FILE_CONVENTIONS[self.file_convention]
        out = arr.astype(np.int64) + shift
        if dc_value is not None:
            out[arr == self.dontcare_id] = dc_value
        return out.astype(self.file_dtype)

    def _file_rule(self) -> str:
        shift, dc_value = FILE_CONVENTIONS[self.file_convention]
        if self.file_convention == "identity":
            return f"its files hold the ids 0..{self.num_ids - 1}"
        if shift:
            return (
                f"its files hold {dc_value} for '{self[self.dontcare_id].name}' and k+{shift} for id k, "
                f"up to {self.max_file_value}"
            )
        return f"its files hold 0..{self.num_ids - 2} and {dc_value} for '{self[self.dontcare_id].name}'"

    # ------------------------------------------------------------------ colors
    def _palette_index(self) -> PaletteIndex:
        if "colors" not in self._cache:
            self._cache["colors"] = PaletteIndex(self.palette, self.name, self.id_dtype)
        return self._cache["colors"]

    def color_to_id(self) -> dict[tuple[int, int, int], int]:
        """The canonical id of each palette color (the lowest id where colors are shared)."""
        return self._palette_index().color_to_id()

    def colors_to_ids(self, rgb: Any, nearest: bool = False) -> np.ndarray:
        """RGB [..., 3] (or RGBA, alpha dropped) -> ids [...]: exact palette colors, or with
        ``nearest=True`` the nearest palette color, blended edges resolved from solid neighbours
        (see ``cityserve.labels.colors``)."""
        return self._palette_index().to_ids(rgb, nearest)

    # ------------------------------------------------------------------ serialization
    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict that ``from_dict`` (and ``get_label_set``) read back to an equal set."""
        return {
            "name": self.name,
            "classes": [c.to_dict() for c in self.classes],
            "dontcare_id": self.dontcare_id,
            "file_convention": self.file_convention,
            "allow_shared_colors": self.allow_shared_colors,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "label set dict") -> LabelSet:
        """Validate and build a set from ``to_dict``'s form or a user's file (see ``load_label_set_file``);
        errors name ``source`` (the file) and the offending class."""
        fields = parse_label_set(d, source)
        try:
            return cls(**fields)
        except LabelError as e:
            raise LabelError(f"{source}: {e}") from None

    def _value_key(self) -> str:
        """The set's full definition as one canonical string (cached: sets are frozen)."""
        if "value_key" not in self._cache:
            self._cache["value_key"] = json.dumps(self.to_dict(), sort_keys=True)
        return self._cache["value_key"]

    def __eq__(self, other: object) -> bool:
        """Equal by value (two loads of one file are one set), and hashed the same way."""
        return isinstance(other, LabelSet) and self._value_key() == other._value_key()

    def __hash__(self) -> int:
        return hash(self._value_key())

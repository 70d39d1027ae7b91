"""Model cards: the JSON file beside every checkpoint, and the single source of a model's options.

A card says what the weights are (architecture + options, label set, resolution), where they came from
(the command that trained them or the official file they were imported from), the sha256 of the weights
file, and measured metrics. Export and the Triton repository builder read the card, so nobody passes
architecture options by hand twice.

Layout on disk: ``NAME.pt`` (a plain state dict, loadable with ``weights_only=True``) and
``NAME.card.json`` beside it. Anything that takes a CARD accepts the card, the weights file, or a
directory holding exactly one card.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

from .errors import CheckpointError
from .files import atomic_write_bytes

CARD_FORMAT = "cityserve-card/1"
CARD_SUFFIX = ".card.json"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def command_line() -> str:
    """The command that is running, as a user could paste it again."""
    import shlex

    argv = list(sys.argv)
    if argv and argv[0].endswith(("cityserve", "__main__.py")):
        argv[0] = "cityserve"
    return " ".join(shlex.quote(a) for a in argv)


def environment() -> dict[str, Any]:
    """Versions and hardware, recorded in provenance and benchmark results."""
    import torch

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


@dataclasses.dataclass
class ModelCard:
    """Everything needed to rebuild, verify and serve one checkpoint.

    ``arch`` picks the model family ("spade", "pix2pix", "fchardnet", "deeplabv3plus"); ``config`` is
    that family's config dataclass as a dict; ``label_set`` is a built-in name ("cityscapes", "ade20k",
    "coco-stuff") or a full label-set dict (a user's own set travels inside the card).
    """

    name: str
    kind: str  # "generator" | "segmenter"
    arch: str
    config: dict[str, Any]
    label_set: str | dict[str, Any]
    height: int
    width: int
    weights: str = ""  # file name relative to the card's directory
    sha256: str = ""
    provenance: dict[str, Any] = dataclasses.field(default_factory=dict)
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    format: str = CARD_FORMAT
    path: Path | None = dataclasses.field(default=None, compare=False, repr=False)

    # ---- paths ---------------------------------------------------------------------------------
    @property
    def directory(self) -> Path:
        if self.path is None:
            raise CheckpointError(f"card {self.name!r} has not been saved or loaded from a file")
        return self.path.parent

    @property
    def weights_path(self) -> Path:
        return self.directory / self.weights

    # ---- (de)serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("path")
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, d: dict[str, Any], path: Path | None = None) -> ModelCard:
        fields = {f.name for f in dataclasses.fields(cls)} - {"path"}
        missing = [k for k in ("name", "kind", "arch", "config", "label_set", "height", "width") if k not in d]
        if missing:
            raise CheckpointError(f"model card {path or '<dict>'} lacks field(s) {', '.join(missing)}")
        unknown = set(d) - fields
        if unknown:
            raise CheckpointError(f"model card {path or '<dict>'} has unknown field(s) {', '.join(sorted(unknown))}")
        return cls(**d, path=path)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the card atomically (temp file + rename) and remember where it lives."""
        path = Path(path)
        if not path.name.endswith(CARD_SUFFIX):
            raise CheckpointError(f"card file names end with {CARD_SUFFIX}: {path}")
        atomic_write_bytes(path, self.to_json().encode())
        self.path = path.resolve()
        return self.path

    def verify(self) -> None:
        """Check that the weights file exists and has the sha256 the card records."""
        wp = self.weights_path
        if not wp.is_file():
            raise CheckpointError(f"weights file {wp} named by card {self.path} does not exist")
        if self.sha256:
            actual = sha256_file(wp)
            if actual != self.sha256:
                raise CheckpointError(
                    f"weights file {wp} has sha256 {actual[:12]}…, card {self.path.name} says "
                    f"{self.sha256[:12]}…: the file was changed or truncated"
                )


def find_card(path: str | os.PathLike) -> Path:
    """Resolve what a user passed as CARD: the card, its weights file, or a directory with one card."""
    p = Path(path)
    if p.is_dir():
        cards = sorted(p.glob("*" + CARD_SUFFIX))
        if len(cards) != 1:
            raise CheckpointError(f"{p} holds {len(cards)} model cards (*{CARD_SUFFIX}); name one")
        return cards[0]
    if p.name.endswith(CARD_SUFFIX):
        if not p.is_file():
            raise CheckpointError(f"model card {p} does not exist")
        return p
    if p.suffix in (".pt", ".pth"):
        candidate = p.with_name(p.stem + CARD_SUFFIX)
        if candidate.is_file():
            return candidate
        raise CheckpointError(f"{p} has no model card beside it ({candidate.name}); import it with `cityserve import`")
    if not p.exists():
        raise CheckpointError(f"{p} does not exist")
    raise CheckpointError(f"{p} is not a model card (*{CARD_SUFFIX}), weights file or directory")


def load_card(path: str | os.PathLike) -> ModelCard:
    p = find_card(path)
    try:
        d = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"model card {p} is not valid JSON: {e}") from None
    if not isinstance(d, dict):
        raise CheckpointError(f"model card {p} is not a JSON object")
    return ModelCard.from_dict(d, path=p.resolve())


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()

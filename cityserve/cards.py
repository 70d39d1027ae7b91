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

import copy
import dataclasses
import datetime as _dt
import hashlib
import json
import os
import platform
import re
import sys
from pathlib import Path
from typing import Any, Optional

from .card_sections import (
    ARTIFACT_KINDS,
    Artifact,
    LayoutSection,
    ServingOptions,
    artifact_from_dict,
    check_int,
    check_relative_file,
    check_sha256,
    serving_to_dict,
)
from .errors import CheckpointError, ConfigError
from .files import atomic_write_bytes

CARD_FORMAT = "cityserve-card/2"
CARD_FORMATS = ("cityserve-card/1", CARD_FORMAT)  # /1 kept its sections in an untyped ``extra`` mapping
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


def portable_path(path: str | os.PathLike[str]) -> str:
    """``path`` relative to the working directory when it lies under it, else as given: what a card or a
    result file records, so that it means the same in every clone."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


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


# layout: an unconditional label-map generator; photo-gan: an unconditional photo generator (the two-stage
# comparison's baseline, cityserve.models.photo_gan): no serving path takes it
KINDS = ("generator", "segmenter", "layout", "photo-gan")
MAX_SIDE = 16384  # pixels: a card's height / width
MAX_CARD_BYTES = 32 << 20  # a card with a 4096-class label set is well under 1 MiB


def file_stem(name: str) -> str:
    """A card name made safe as a file or folder name (the name itself is data and may hold anything)."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", str(name))[:64].lstrip(".")
    return stem or "model"


def _check_text(value: Any, what: str, limit: int = 200) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise CheckpointError(f"{what} must be a non-empty string of at most {limit} characters, not {value!r:.60}")
    return value


@dataclasses.dataclass
class ModelCard:
    """Everything needed to rebuild, verify and serve one checkpoint.

    ``arch`` picks the model family ("spade", "pix2pix", "fchardnet", "deeplabv3plus"); ``config`` is
    that family's config dataclass as a dict (checked with bounds by ``models.registry``);
    ``label_set`` is a built-in name ("cityscapes", "ade20k", "coco-stuff") or a full label-set dict
    (a user's own set travels inside the card). ``weights`` is a file in the card's folder; a card
    made from another (an exported graph, an AOT package, an engine) names none and points at that
    card instead (``source_card``), whose weights must have the same ``sha256``. ``artifacts`` are the
    files made from the weights ("onnx", "aot", "tensorrt"), ``serving`` how the model is served,
    ``encoder`` the VAE encoder stored with the weights, ``training`` the options that trained it,
    ``depth`` the stage of a depth-aware SPADE and its depth normalisation (``cityserve.data.depth``),
    ``notes`` other recorded facts nothing reads.
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
    source_card: str = ""  # derived cards: the card (*.card.json, relative to this one's folder) with the weights
    provenance: dict[str, Any] = dataclasses.field(default_factory=dict)
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    artifacts: dict[str, Artifact] = dataclasses.field(default_factory=dict)
    serving: Optional[ServingOptions] = None
    encoder: Optional[dict[str, Any]] = None
    layout: Optional[LayoutSection] = None  # kind "layout": how a seed becomes a label map
    training: dict[str, Any] = dataclasses.field(default_factory=dict)
    notes: dict[str, Any] = dataclasses.field(default_factory=dict)
    depth: Optional[dict[str, Any]] = None  # depth-aware stages only (absent from other cards' JSON)
    format: str = CARD_FORMAT
    path: Path | None = dataclasses.field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Every field's type and bounds; a CheckpointError naming the card and the field."""
        where = f"model card {self.path or repr(self.name)[:60]}"
        try:
            _check_text(self.name, "name")
            if self.kind not in KINDS:
                raise CheckpointError(f"kind must be {' or '.join(KINDS)}, not {self.kind!r:.40}")
            _check_text(self.arch, "arch", 64)
            for side in ("height", "width"):
                check_int(getattr(self, side), side, 1, MAX_SIDE)
            if isinstance(self.label_set, str):
                _check_text(self.label_set, "label_set", 100)
            elif not isinstance(self.label_set, dict):
                raise CheckpointError(
                    f"label_set must be a built-in name or a label-set mapping, not {self.label_set!r:.40}"
                )
            for name in ("config", "provenance", "metrics", "training", "notes", "artifacts"):
                if not isinstance(getattr(self, name), dict):
                    raise CheckpointError(f"{name} must be a mapping")
            if self.weights:
                check_relative_file(self.weights, "weights")
            check_sha256(self.sha256, "sha256", required=bool(self.weights))
            if self.source_card and (
                not isinstance(self.source_card, str) or not self.source_card.endswith(CARD_SUFFIX)
            ):
                raise CheckpointError(f"source_card must name a *{CARD_SUFFIX} file, not {self.source_card!r:.60}")
            if self.source_card and self.weights:
                raise CheckpointError("a card names its weights or its source_card, not both")
            for kind, artifact in self.artifacts.items():
                if not isinstance(artifact, Artifact):
                    raise CheckpointError(f"artifacts[{kind!r}] is not an Artifact")
            if self.serving is not None and not isinstance(self.serving, ServingOptions):
                raise CheckpointError("serving must be ServingOptions")
            if self.encoder is not None and not isinstance(self.encoder, dict):
                raise CheckpointError("encoder must be a mapping")
            if self.depth is not None and not isinstance(self.depth, dict):
                raise CheckpointError("depth must be a mapping")
            if self.layout is not None and not isinstance(self.layout, LayoutSection):
                raise CheckpointError("layout must be a LayoutSection")
            if (self.kind == "layout") != (self.layout is not None):
                raise CheckpointError("a layout section belongs to (and only to) cards of kind 'layout'")
        except (CheckpointError, ConfigError) as e:
            raise CheckpointError(f"{where}: {e}") from None

    # ---- paths ---------------------------------------------------------------------------------
    @property
    def directory(self) -> Path:
        if self.path is None:
            raise CheckpointError(f"card {self.name!r} has not been saved or loaded from a file")
        return self.path.parent

    def source(self) -> ModelCard:
        """The card whose weights this derived card stands for (same sha256)."""
        src = load_card(self.directory / self.source_card)
        if src.sha256 != self.sha256:
            raise CheckpointError(
                f"card {self.path} stands for the weights of {src.path}, but their sha256 differ "
                f"({self.sha256[:12]}… vs {src.sha256[:12]}…): re-export it"
            )
        return src

    @property
    def weights_path(self) -> Path:
        """The weights file: in the card's folder, or, for a derived card, its source card's."""
        if self.weights:
            return self.directory / self.weights
        if self.source_card:
            return self.source().weights_path
        raise CheckpointError(f"card {self.path or self.name!r} names no weights file (it describes a graph only)")

    def derived(self, new_dir: str | os.PathLike) -> ModelCard:
        """A copy to be saved in ``new_dir`` beside a file made from these weights: it names no weights
        and points at the card that holds them (this one, or this one's source)."""
        if self.path is None:
            raise CheckpointError(f"card {self.name!r} has not been saved: save it before deriving from it")
        holder = self.path if self.weights else (self.directory / self.source_card).resolve()
        new = ModelCard.from_dict(self.to_dict())
        new.weights = ""
        try:
            new.source_card = os.path.relpath(holder.resolve(), Path(new_dir).resolve())
        except ValueError:  # another drive (Windows)
            new.source_card = str(holder.resolve())
        return new

    # ---- (de)serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "path"}
        d = copy.deepcopy(d)
        d["artifacts"] = {k: a.to_dict() for k, a in self.artifacts.items()}
        d["serving"] = serving_to_dict(self.serving) if self.serving is not None else None
        if self.layout is None:
            d.pop("layout")  # cards of other kinds read as before
        else:
            d["layout"] = self.layout.to_dict()
        d["format"] = CARD_FORMAT
        if d["depth"] is None:
            del d["depth"]  # cards of other models read as they did before depth-aware stages
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, d: dict[str, Any], path: Path | None = None) -> ModelCard:
        """A card from its JSON form; cards of format cityserve-card/1 (an ``extra`` bag) still load."""
        where = f"model card {path or '<dict>'}"
        if not isinstance(d, dict):
            raise CheckpointError(f"{where} is not a JSON object")
        d = dict(d)
        fields = {f.name for f in dataclasses.fields(cls)} - {"path"}
        missing = [k for k in ("name", "kind", "arch", "config", "label_set", "height", "width") if k not in d]
        if missing:
            raise CheckpointError(f"{where} lacks field(s) {', '.join(missing)}")
        if d.get("format", CARD_FORMAT) not in CARD_FORMATS:
            raise CheckpointError(f"{where}: format {d.get('format')!r:.40} is not one of {', '.join(CARD_FORMATS)}")
        d["format"] = CARD_FORMAT  # read into the current form
        if "extra" in d:
            _migrate_extra(d, d.pop("extra"), where)
        unknown = set(d) - fields
        if unknown:
            raise CheckpointError(f"{where} has unknown field(s) {', '.join(sorted(map(str, unknown)))[:200]}")
        try:
            artifacts = d.get("artifacts") or {}
            if not isinstance(artifacts, dict):
                raise ConfigError("artifacts must be a mapping of kind to artifact")
            d["artifacts"] = {str(k): artifact_from_dict(str(k), v, "artifacts") for k, v in artifacts.items()}
            if d.get("serving") is not None:
                d["serving"] = ServingOptions.from_sources(d["serving"], where="serving")
            if d.get("layout") is not None:
                d["layout"] = LayoutSection.from_dict(d["layout"], where="layout")
        except ConfigError as e:
            raise CheckpointError(f"{where}: {e}") from None
        try:
            return cls(**d, path=path)
        except TypeError as e:
            raise CheckpointError(f"{where}: {e}") from None

    def save(self, path: str | os.PathLike) -> Path:
        """Write the card atomically (temp file + rename) and remember where it lives."""
        path = Path(path)
        if not path.name.endswith(CARD_SUFFIX):
            raise CheckpointError(f"card file names end with {CARD_SUFFIX}: {path}")
        self.check()
        atomic_write_bytes(path, self.to_json().encode())
        self.path = path.resolve()
        return self.path

    def verify(self) -> None:
        """Check that the weights file exists and has the sha256 the card records (always required)."""
        wp = self.weights_path
        if not wp.is_file():
            raise CheckpointError(f"weights file {wp} named by card {self.path} does not exist")
        check_sha256(self.sha256, f"card {self.path}: sha256", required=True)
        actual = sha256_file(wp)
        if actual != self.sha256:
            raise CheckpointError(
                f"weights file {wp} has sha256 {actual[:12]}…, card {self.path.name} says "
                f"{self.sha256[:12]}…: the file was changed or truncated"
            )


def _migrate_extra(d: dict[str, Any], extra: Any, where: str) -> None:
    """A cityserve-card/1 ``extra`` bag -> the typed sections (in place)."""
    if not isinstance(extra, dict):
        raise CheckpointError(f"{where}: extra must be a mapping")
    extra = dict(extra)
    artifacts = {k: extra.pop(k) for k in ARTIFACT_KINDS if k in extra}
    serving = dict(extra.pop("serving", None) or {})
    if "max_batch_size" in extra:  # the oldest cards kept it at the top of extra
        serving.setdefault("max_batch_size", extra.pop("max_batch_size"))
    encoder = extra.pop("encoder", None)
    d.setdefault("artifacts", artifacts)
    d.setdefault("serving", serving or None)
    d.setdefault("encoder", {} if encoder is True else (encoder or None))
    d.setdefault("training", extra.pop("training", None) or {})
    d.setdefault("notes", extra)
    weights = d.get("weights") or ""
    source = (artifacts.get("onnx") or {}).get("source_card") if isinstance(artifacts.get("onnx"), dict) else None
    if weights and (weights.startswith("/") or ".." in weights.split("/")) and isinstance(source, str):
        # an export written before derived cards named their source: point at the source card instead
        if source.endswith(CARD_SUFFIX):
            d["weights"], d["source_card"] = "", source


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
        if p.stat().st_size > MAX_CARD_BYTES:
            raise CheckpointError(f"model card {p} is over {MAX_CARD_BYTES >> 20} MiB: not a model card")
        d = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"model card {p} is not valid JSON: {e}") from None
    except RecursionError:
        raise CheckpointError(f"model card {p} is nested too deeply to be a model card") from None
    if not isinstance(d, dict):
        raise CheckpointError(f"model card {p} is not a JSON object")
    return ModelCard.from_dict(d, path=p.resolve())


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()

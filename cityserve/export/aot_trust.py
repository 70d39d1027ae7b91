"""Which AOT packages may be loaded: those compiled on this machine into the folder they sit in.

A ``render.pt2`` is not weights: it is a shared library, and loading it runs its native code with
the user's rights. The sha256 in the card beside it proves that the bytes match the card, not where
the two came from (whoever wrote one wrote the other). So ``compile_aot`` records every package it
writes (its sha256 and the folder it was built into) in a registry in the user's configuration
folder (``$CITYSERVE_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/cityserve``, else ``~/.config/cityserve``),
and packages are loaded only when the registry lists them for their folder: one that was downloaded,
copied in, or altered is refused unless the user passes ``--trust`` (``trust=True``), having checked
where it came from. The weights-only checkpoints need no such step: they are data.

A Triton model repository is code too (its ``model.py`` files run in the server): the repository
builder checks a package before copying it in, and the server runs what the repository holds.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path

from ..cards import now_iso
from ..errors import CheckpointError

REGISTRY = "aot-built.json"


def config_dir() -> Path:
    if os.environ.get("CITYSERVE_CONFIG_DIR"):
        return Path(os.environ["CITYSERVE_CONFIG_DIR"])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "cityserve"


@contextlib.contextmanager
def _locked_registry():
    folder = config_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / (REGISTRY + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = folder / REGISTRY
        try:
            entries = json.loads(path.read_text()) if path.is_file() else []
        except (OSError, ValueError):
            entries = []
        yield path, entries if isinstance(entries, list) else []


def _key(sha256: str, folder: Path) -> tuple[str, str]:
    return sha256, str(Path(folder).resolve())


def record_built(sha256: str, folder: Path) -> None:
    """Remember that this user compiled the package with ``sha256`` into ``folder``."""
    key = _key(sha256, folder)
    with _locked_registry() as (path, entries):
        kept = [e for e in entries if isinstance(e, dict) and str(Path(e.get("folder", "")).resolve()) != key[1]]
        kept.append({"sha256": key[0], "folder": key[1], "built": now_iso()})
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(kept, indent=1) + "\n")
        os.replace(tmp, path)


def is_trusted(sha256: str, folder: Path) -> bool:
    key = _key(sha256, folder)
    with _locked_registry() as (_, entries):
        return any(isinstance(e, dict) and (e.get("sha256"), e.get("folder")) == key for e in entries)


def check_trusted(sha256: str, folder: Path, trust: bool = False) -> None:
    """Refuse, with a one-line reason, a package this user did not compile into ``folder``."""
    if trust or is_trusted(sha256, folder):
        return
    raise CheckpointError(
        f"AOT package in {folder} was not compiled into that folder on this machine; it is native code "
        f"(a shared library) that would run with your rights, and the sha256 in its card cannot say "
        f"where it came from. Rebuild it from the weights with `cityserve export aot CARD`, or pass "
        f"--trust if you know its origin"
    )

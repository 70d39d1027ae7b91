"""What a crashed server leaves behind, and removing it: only our own, only once its owner is dead.

Triton's python backend keeps one ``/dev/shm`` region per model instance (about 1 MB each, more for
big tensors) and removes them when it stops. Killed with SIGKILL (the OOM killer, ``kill -9`` of the
process group, a container stop that does not wait), it cannot, and the regions stay until reboot;
a container's default 64 MB ``/dev/shm`` fills after a few crashes and new servers fail to start.
The launcher's temporary folders (backend copy, logs, a repository built on the fly) stay too.

So every server cityserve starts gets a region prefix of its own (``cityserve_<token>_``, given to
the python backend as ``shm-region-prefix-name``), and each of its folders holds an owner record
(``cityserve-owner.json``: the prefix and the pid and start time of the launcher and of the server).
``clean_leftovers`` removes the regions and folders of records whose every process is gone, that
belong to this user; regions of any other prefix (other programs, other Tritons) and folders without
a record are never touched. ``remove_regions`` is what a launcher runs for its own prefix at stop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Optional

import psutil

OWNER_FILE = "cityserve-owner.json"
SHM_DIR = Path("/dev/shm")
FOLDER_PREFIXES = ("cityserve-triton-", "cityserve-serve-")


def new_shm_prefix() -> str:
    return f"cityserve_{secrets.token_hex(6)}_"


def _process_id(pid: int) -> Optional[dict]:
    try:
        return {"pid": pid, "started": psutil.Process(pid).create_time()}
    except psutil.Error:
        return None


def write_owner(folder: Path, shm_prefix: str = "", pids: tuple[int, ...] = ()) -> None:
    """Record who owns ``folder`` (this process and ``pids``) and which region prefix it used."""
    procs = [p for p in (_process_id(os.getpid()), *(_process_id(pid) for pid in pids)) if p]
    record = {"shm_prefix": shm_prefix, "processes": procs, "uid": os.getuid()}
    tmp = folder / (OWNER_FILE + ".tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, folder / OWNER_FILE)


def _alive(proc: dict) -> bool:
    try:
        return abs(psutil.Process(int(proc["pid"])).create_time() - float(proc["started"])) < 0.01
    except (psutil.Error, KeyError, TypeError, ValueError):
        return False


def remove_regions(prefix: str, shm_dir: Path = SHM_DIR) -> tuple[int, int]:
    """Remove this user's ``shm_dir`` entries named ``prefix*``. Returns (count, bytes)."""
    if not prefix.startswith("cityserve_") or not shm_dir.is_dir():
        return 0, 0
    count = size = 0
    for entry in shm_dir.iterdir():
        if not entry.name.startswith(prefix):
            continue
        with contextlib.suppress(OSError):
            st = entry.lstat()
            if st.st_uid != os.getuid():
                continue
            entry.unlink()
            count, size = count + 1, size + st.st_size
    return count, size


@dataclasses.dataclass
class Cleaned:
    regions: int = 0
    bytes: int = 0
    folders: int = 0

    def __bool__(self) -> bool:
        return bool(self.regions or self.folders)

    def describe(self) -> str:
        return (
            f"removed {self.regions} shared-memory region(s) ({self.bytes / 1e6:.1f} MB) and "
            f"{self.folders} folder(s) left by cityserve servers that are no longer running"
        )


def clean_leftovers(tmp_root: Optional[Path] = None, shm_dir: Path = SHM_DIR) -> Cleaned:
    """Remove the regions and folders of cityserve servers whose owner processes are all gone."""
    root = Path(tmp_root or tempfile.gettempdir())
    done = Cleaned()
    for folder in root.iterdir() if root.is_dir() else ():
        if not folder.name.startswith(FOLDER_PREFIXES) or not (folder / OWNER_FILE).is_file():
            continue
        try:
            record = json.loads((folder / OWNER_FILE).read_text())
            if int(record.get("uid", -1)) != os.getuid() or any(_alive(p) for p in record.get("processes", [])):
                continue
        except (OSError, ValueError, TypeError, AttributeError):
            continue
        n, size = remove_regions(str(record.get("shm_prefix", "")), shm_dir)
        shutil.rmtree(folder, ignore_errors=True)
        done.regions, done.bytes, done.folders = done.regions + n, done.bytes + size, done.folders + 1
    return done

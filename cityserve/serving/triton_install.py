"""Where a usable ``tritonserver`` lives, and the environment it needs to run cityserve's models.

Why this module exists: the nvidia-pytriton wheel ships the server binary, its shared libraries and a
python backend, but not in a layout Triton can use as it is. The backend directory must hold
``python/`` with ``libtriton_python.so``, ``triton_python_backend_utils.py`` and the
``triton_python_backend_stub`` built for *this* Python (``python_backend_stubs/3.X/``). The stub embeds
libpython and ignores ``PYTHONPATH``; it finds its prefix (a venv's ``pyvenv.cfg`` included) through
the ``python3`` first on ``PATH``, so this interpreter's directory goes first on ``PATH`` and its
LIBDIR on ``LD_LIBRARY_PATH``. That gives the models this environment's packages (numpy<2,
onnxruntime, opencv, cityserve); ``CITYSERVE_PYTHONPATH`` lists the same directories for installs
outside a venv. NGC containers have a system install with its own backends.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
import site
import sys
import sysconfig
from pathlib import Path
from typing import Optional

import cityserve

from ..errors import UnavailableError


@dataclasses.dataclass(frozen=True)
class TritonInstall:
    """Where a usable tritonserver lives.

    ``bundled`` installs (the nvidia-pytriton wheel) need ``lib_dir`` on LD_LIBRARY_PATH and an
    assembled backend directory; a system install (NGC container) uses its own backends.
    """

    binary: Path
    lib_dir: Optional[Path] = None  # nvidia_pytriton.libs
    python_backend: Optional[Path] = None  # dir with libtriton_python.so + triton_python_backend_utils.py
    stub: Optional[Path] = None  # triton_python_backend_stub for this Python
    bundled: bool = False


def python_version_tag() -> str:
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def find_tritonserver(prefer: str = "auto") -> TritonInstall:
    """The bundled server of the nvidia-pytriton wheel, else ``tritonserver`` on PATH (NGC containers).

    ``prefer`` is "auto", "bundled" or "path". Raises UnavailableError naming what is missing.
    """
    errors = []
    if prefer in ("auto", "bundled"):
        try:
            return _bundled_install()
        except UnavailableError as e:
            errors.append(str(e))
    if prefer in ("auto", "path"):
        found = shutil.which("tritonserver")
        if found:
            return TritonInstall(binary=Path(found))
        for candidate in (Path("/opt/tritonserver/bin/tritonserver"),):
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return TritonInstall(binary=candidate)
        errors.append("no `tritonserver` on PATH or in /opt/tritonserver/bin")
    raise UnavailableError(
        "cannot find tritonserver: "
        + "; ".join(errors)
        + " (install the nvidia-pytriton wheel: pip install nvidia-pytriton)"
    )


def _bundled_install() -> TritonInstall:
    spec = importlib.util.find_spec("pytriton")  # found, not imported: only its files are needed
    if spec is None or spec.origin is None:
        raise UnavailableError("the nvidia-pytriton wheel is not installed")
    root = Path(spec.origin).resolve().parent / "tritonserver"
    binary = root / "bin" / "tritonserver"
    lib_dir = root.parents[1] / "nvidia_pytriton.libs"
    backend = root / "backends" / "python"
    stub = root / "python_backend_stubs" / python_version_tag() / "triton_python_backend_stub"
    for p, what in (
        (binary, "server binary"),
        (lib_dir, "server libraries"),
        (backend / "libtriton_python.so", "python backend"),
        (stub, f"python {python_version_tag()} stub"),
    ):
        if not p.exists():
            raise UnavailableError(f"the nvidia-pytriton wheel lacks its {what} ({p})")
    return TritonInstall(binary=binary, lib_dir=lib_dir, python_backend=backend, stub=stub, bundled=True)


def assemble_backend_dir(install: TritonInstall, dest: Path) -> Path:
    """``dest/python/`` = the wheel's python backend + the stub for this Python. Returns ``dest``."""
    py = dest / "python"
    py.mkdir(parents=True, exist_ok=True)
    for f in ("libtriton_python.so", "triton_python_backend_utils.py"):
        shutil.copy2(install.python_backend / f, py / f)
    shutil.copy2(install.stub, py / "triton_python_backend_stub")
    os.chmod(py / "triton_python_backend_stub", 0o755)
    return dest


def python_paths() -> list[str]:
    """What the backend stub needs on sys.path: this environment's site-packages and cityserve's parent
    (an editable install is found through a .pth file, which PYTHONPATH entries do not process)."""
    paths = [str(Path(cityserve.__file__).resolve().parents[1])]
    for p in site.getsitepackages() + [site.getusersitepackages()]:
        if p and Path(p).is_dir() and p not in paths:
            paths.append(p)
    return paths


def server_environment(install: TritonInstall) -> dict[str, str]:
    env = dict(os.environ)
    lib_paths = []
    if install.lib_dir is not None:
        lib_paths.append(str(install.lib_dir))
    # The stub links libpython3.X.so.1.0: prefer this interpreter's copy so stdlib and extensions match.
    libdir = sysconfig.get_config_var("LIBDIR")
    ldlib = sysconfig.get_config_var("INSTSONAME") or sysconfig.get_config_var("LDLIBRARY") or ""
    if libdir and ldlib and (Path(libdir) / ldlib).exists():
        lib_paths.append(libdir)
    if env.get("LD_LIBRARY_PATH"):
        lib_paths.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = ":".join(lib_paths)
    # The stub's embedded interpreter ignores PYTHONPATH; it finds its prefix (and a venv's
    # pyvenv.cfg) through the `python3` it sees first on PATH, as pytriton arranges too.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    # ... and the python-backend models put these on sys.path themselves (non-venv installs).
    env["CITYSERVE_PYTHONPATH"] = os.pathsep.join(python_paths())
    env.setdefault("OMP_NUM_THREADS", "1")
    env.pop("PYTHONSTARTUP", None)
    return env

"""Start and stop a real ``tritonserver``: the one bundled in the nvidia-pytriton wheel, or one on PATH.

Why this module exists: the wheel ships the server binary, its shared libraries and a python backend,
but not in a layout Triton can use as it is. The backend directory must hold ``python/`` with
``libtriton_python.so``, ``triton_python_backend_utils.py`` and the ``triton_python_backend_stub``
built for *this* Python (``python_backend_stubs/3.X/``). The stub embeds libpython and ignores
``PYTHONPATH``; it finds its prefix (a venv's ``pyvenv.cfg`` included) through the ``python3`` first
on ``PATH``, so this interpreter's directory goes first on ``PATH`` and its LIBDIR on
``LD_LIBRARY_PATH``. That gives the models this environment's packages (numpy<2, onnxruntime, opencv,
cityserve); ``CITYSERVE_PYTHONPATH`` lists the same directories for installs outside a venv.

The server binds to 127.0.0.1 on free ports by default, runs with model control mode ``none`` (clients
cannot load or unload models), and is stopped with SIGTERM, then SIGKILL of its whole process group
(the python backend's stub processes included), so no process outlives ``stop()``.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import dataclasses
import importlib.util
import os
import shutil
import signal
import site
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Optional

import psutil
import tritonclient.grpc as grpcclient

import cityserve

from ..errors import CityserveError, UnavailableError


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


def free_port(host: str = "127.0.0.1") -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _set_pdeathsig() -> None:  # runs in the child before exec: die with the process that started us
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    os.setsid()


class TritonServer:
    """A tritonserver process serving one model repository.

    >>> with TritonServer("repo/") as server:
    ...     print(server.grpc_url)      # 127.0.0.1:PORT
    """

    def __init__(
        self,
        repository: str | os.PathLike,
        host: str = "127.0.0.1",
        grpc_port: int = 0,
        http_port: int = 0,
        metrics_port: int = 0,
        install: Optional[TritonInstall] = None,
        log_verbose: int = 0,
        startup_timeout: float = 180.0,
        extra_args: tuple[str, ...] = (),
    ):
        self.repository = Path(repository).resolve()
        if not (self.repository.is_dir()):
            raise CityserveError(f"model repository {self.repository} does not exist")
        self.host = host
        self.grpc_port = grpc_port or free_port()
        self.http_port = http_port or free_port()
        self.metrics_port = metrics_port or free_port()
        self.install = install or find_tritonserver()
        self.log_verbose = log_verbose
        self.startup_timeout = startup_timeout
        self.extra_args = tuple(extra_args)
        self.workdir = Path(tempfile.mkdtemp(prefix="cityserve-triton-"))
        self.log_path = self.workdir / "tritonserver.log"
        self.process: Optional[subprocess.Popen] = None
        self._log_file = None

    # ---- endpoints -----------------------------------------------------------------------------
    @property
    def client_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host

    @property
    def grpc_url(self) -> str:
        return f"{self.client_host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"{self.client_host}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.client_host}:{self.metrics_port}/metrics"

    def command(self) -> list[str]:
        cmd = [
            str(self.install.binary),
            "--model-repository",
            str(self.repository),
            "--model-control-mode",
            "none",
            "--strict-readiness",
            "true",
            "--exit-on-error",
            "true",
            "--disable-auto-complete-config",
            "--grpc-address",
            self.host,
            "--grpc-port",
            str(self.grpc_port),
            "--http-address",
            self.host,
            "--http-port",
            str(self.http_port),
            "--metrics-address",
            self.host,
            "--metrics-port",
            str(self.metrics_port),
            "--allow-gpu-metrics",
            "false",
            "--exit-timeout-secs",
            "10",
            "--log-verbose",
            str(self.log_verbose),
        ]
        if self.install.bundled:
            backends = assemble_backend_dir(self.install, self.workdir / "backends")
            cmd += ["--backend-directory", str(backends)]
            caches = self.install.binary.parents[1] / "caches"
            if caches.is_dir():
                cmd += ["--cache-directory", str(caches)]
        return cmd + list(self.extra_args)

    # ---- lifecycle -----------------------------------------------------------------------------
    def start(self, wait: bool = True) -> TritonServer:
        if self.process is not None:
            return self
        cmd = self.command()
        self._log_file = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            cmd,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=server_environment(self.install),
            cwd=self.workdir,
            preexec_fn=_set_pdeathsig,
        )
        _RUNNING.add(self)
        if wait:
            try:
                self.wait_ready()
            except BaseException:
                self.stop()
                raise
        return self

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, timeout: Optional[float] = None) -> None:
        """Block until the server and all its models are ready (strict readiness); raise with the log
        tail when the process exits or the timeout passes."""
        deadline = time.monotonic() + (timeout or self.startup_timeout)
        client = grpcclient.InferenceServerClient(self.grpc_url)
        try:
            while True:
                if self.process.poll() is not None:
                    raise CityserveError(
                        f"tritonserver exited with code {self.process.returncode} while "
                        f"starting; log {self.log_path}:\n{self.log_tail()}"
                    )
                with contextlib.suppress(Exception):
                    if client.is_server_ready():
                        return
                if time.monotonic() > deadline:
                    raise CityserveError(
                        f"tritonserver was not ready after {timeout or self.startup_timeout:.0f} s; "
                        f"log {self.log_path}:\n{self.log_tail()}"
                    )
                time.sleep(0.2)
        finally:
            with contextlib.suppress(Exception):
                client.close()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def descendants(self) -> list:
        """The server's descendant processes (the python backend stubs), as psutil.Process objects."""
        if self.process is None:
            return []
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def stop(self, timeout: float = 20.0) -> Optional[int]:
        """SIGTERM (Triton unloads models and ends its stubs), then SIGKILL whatever is left of the
        process group. Returns the server's exit code."""
        if self.process is None:
            return None
        proc, self.process = self.process, None
        children = []
        with contextlib.suppress(psutil.Error):
            children = psutil.Process(proc.pid).children(recursive=True)
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        # Stubs notice their parent's death on their own, but never leave it to chance.
        _, alive = psutil.wait_procs(children, timeout=5)
        for child in alive:
            with contextlib.suppress(psutil.Error):
                child.kill()
        psutil.wait_procs(alive, timeout=5)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        _RUNNING.discard(self)
        return proc.returncode

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()


_RUNNING: set[TritonServer] = set()


def _stop_all() -> None:
    for server in list(_RUNNING):
        with contextlib.suppress(Exception):
            server.stop(timeout=5)


atexit.register(_stop_all)

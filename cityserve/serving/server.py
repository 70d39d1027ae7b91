"""Start, drain and stop a real ``tritonserver`` (the nvidia-pytriton wheel's, or one on PATH).

Defaults that keep a server safe to expose: it binds to 127.0.0.1 on free ports, runs with model
control mode ``none`` (clients cannot load or unload models), and the admin APIs are restricted
(``--grpc-restricted-protocol`` / ``--http-restricted-api`` for shared memory, model repository,
trace and logging, behind a header key that is random per start and never printed): a client that
could register the python stubs' own ``/dev/shm`` regions could have outputs written over them and
abort the server. ``admin_api=True`` lifts the restriction. (The key is in the server's command
line, which local users with access to ``/proc`` can read; the restriction guards against clients
over the network.) Health, metadata, model configuration, statistics and inference stay open.

``stop()`` first drains (``cityserve.serving.drain``: new ensemble requests get UNAVAILABLE, those in
flight finish), then sends SIGTERM, then SIGKILL to whatever is left of the process group (the python
backend's stub processes included), so no process outlives it; then it removes the ``/dev/shm``
regions of its own prefix that a killed server could not (``cityserve.serving.leftovers``).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

import psutil
import tritonclient.grpc as grpcclient

from ..errors import CityserveError
from .drain import STATE_ENV, drain, ensemble_names
from .leftovers import new_shm_prefix, remove_regions, write_owner
from .triton_install import (  # noqa: F401  (re-exported: where callers have always found them)
    TritonInstall,
    assemble_backend_dir,
    find_tritonserver,
    python_paths,
    python_version_tag,
    server_environment,
)

ADMIN_APIS = ("shared-memory", "model-repository", "trace", "logging")
ADMIN_HEADER = "cityserve-admin-key"


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct free ports: every socket stays bound until all are chosen (one after another, the
    kernel may hand the same ephemeral port out twice, e.g. the HTTP and the metrics port of one server)."""
    with contextlib.ExitStack() as stack:
        socks = [
            stack.enter_context(contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM))) for _ in range(n)
        ]
        for s in socks:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in socks]


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)[0]


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
        admin_api: bool = False,
        gpu_metrics: bool = False,
        drain_timeout: float = 30.0,
    ):
        self.repository = Path(repository).resolve()
        if not (self.repository.is_dir()):
            raise CityserveError(f"model repository {self.repository} does not exist")
        self.host = host
        spare = iter(free_ports(3))
        self.grpc_port = grpc_port or next(spare)
        self.http_port = http_port or next(spare)
        self.metrics_port = metrics_port or next(spare)
        self.install = install or find_tritonserver()
        self.log_verbose = log_verbose
        self.startup_timeout = startup_timeout
        self.extra_args = tuple(extra_args)
        self.admin_api = bool(admin_api)
        self.gpu_metrics = bool(gpu_metrics)
        self.drain_timeout = float(drain_timeout)
        self.workdir = Path(tempfile.mkdtemp(prefix="cityserve-triton-"))
        self.shm_prefix = new_shm_prefix()
        write_owner(self.workdir, self.shm_prefix)
        self.state_dir = self.workdir / "state"
        self.log_path = self.workdir / "tritonserver.log"
        self.process: Optional[subprocess.Popen] = None
        self.last_drain: Optional[tuple[bool, float]] = None  # (drained in time, seconds) of the last stop
        self._admin_key = secrets.token_urlsafe(24)
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
            "true" if self.gpu_metrics else "false",
            "--exit-timeout-secs",
            "10",
            "--log-verbose",
            str(self.log_verbose),
            "--backend-config",
            f"python,shm-region-prefix-name={self.shm_prefix}",
        ]
        if not self.admin_api:
            restricted = f"{','.join(ADMIN_APIS)}:{ADMIN_HEADER}={self._admin_key}"
            cmd += ["--grpc-restricted-protocol", restricted, "--http-restricted-api", restricted]
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
        shutil.rmtree(self.state_dir, ignore_errors=True)  # a restart of this object starts undrained
        self.state_dir.mkdir()
        env = dict(server_environment(self.install), **{STATE_ENV: str(self.state_dir)})
        self.process = subprocess.Popen(
            cmd,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=self.workdir,
            preexec_fn=_set_pdeathsig,
        )
        write_owner(self.workdir, self.shm_prefix, (self.process.pid,))
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

    def stop(self, timeout: float = 20.0, drain: bool = True) -> Optional[int]:
        """Drain (up to ``drain_timeout``; ``drain=False`` skips it), SIGTERM (Triton finishes direct
        requests, unloads models and ends its stubs), then SIGKILL whatever is left of the process
        group, and remove this server's shared-memory regions. Returns the server's exit code."""
        if self.process is None:
            return None
        if drain and self.drain_timeout > 0 and self.process.poll() is None:
            self.last_drain = self.drain()
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
        remove_regions(self.shm_prefix)  # what a killed server could not remove itself
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        _RUNNING.discard(self)
        return proc.returncode

    def drain(self, timeout: Optional[float] = None) -> tuple[bool, float]:
        """Refuse new ensemble requests (UNAVAILABLE) and wait for those in flight; the server keeps
        running. Returns (drained before the timeout, seconds)."""
        timeout = self.drain_timeout if timeout is None else timeout
        return drain(self.metrics_url, self.state_dir, timeout, ignore=ensemble_names(self.repository))

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
            server.stop(timeout=5, drain=False)


atexit.register(_stop_all)

"""``cityserve serve`` as a child process, the way an operator runs it: for the reliability benchmark and
the failover tests, which signal it (SIGTERM, SIGKILL of its tritonserver) and restart it on the same
ports.

``ServeProcess(repo).start()`` returns once the command prints its endpoints; its output is drained
into ``lines`` by a thread so it never blocks on a full pipe.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import psutil


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct free ports (all bound at once while chosen, so none is handed out twice)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(n)]
        for s in socks:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in socks]


class ServeProcess:
    def __init__(self, repo: str | os.PathLike, *flags: str, ports: Optional[tuple[int, int, int]] = None):
        self.repo = Path(repo)
        self.flags = tuple(flags)
        self.ports = ports or tuple(free_ports(3))
        self.proc: Optional[subprocess.Popen] = None
        self.lines: list[str] = []

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.ports[0]}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports[2]}/metrics"

    def start(self, timeout: float = 180.0) -> ServeProcess:
        grpc, http, metrics = self.ports
        cmd = [sys.executable, "-m", "cityserve", "serve", "--repo", str(self.repo)]
        cmd += ["--grpc-port", str(grpc), "--http-port", str(http), "--metrics-port", str(metrics), *self.flags]
        self.lines = []
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            if "Ctrl-C or SIGTERM" in line:
                threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True).start()
                return self
        self.kill()
        raise RuntimeError("cityserve serve did not become ready:\n" + "".join(self.lines[-30:]))

    def tree(self) -> list:
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            return []

    def tritonserver(self):
        return next((p for p in self.tree() if "tritonserver" in p.name()), None)

    def shm_prefix(self) -> str:
        triton = self.tritonserver()
        args = triton.cmdline() if triton else []
        return next((a.split("=", 1)[1] for a in args if "shm-region-prefix-name=" in a), "")

    def crash(self) -> None:
        """SIGKILL tritonserver and its stubs at once (what the OOM killer does): nothing of it can clean up."""
        triton = self.tritonserver()
        if triton is not None:
            os.killpg(triton.pid, signal.SIGKILL)

    def terminate(self, timeout: float = 120.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def wait(self, timeout: float = 120.0) -> int:
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            tree = self.tree()
            self.proc.kill()
            for p in tree:
                try:
                    p.kill()
                except Exception:
                    pass
            self.proc.wait(30)


def start_all(servers: list[ServeProcess], timeout: float = 300.0) -> None:
    """Start several servers at once; raise with each failure's output if any did not come up."""
    failures: list[str] = []

    def start(s: ServeProcess) -> None:
        try:
            s.start(timeout)
        except Exception as e:
            failures.append(str(e))

    threads = [threading.Thread(target=start, args=(s,)) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        for s in servers:
            s.kill()
        raise RuntimeError("\n---\n".join(failures))

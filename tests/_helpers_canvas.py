"""The canvas tests' tiny model and the ``cityserve canvas`` process they talk to.

The generator is the serving tests' tiny SPADE (64x128, Cityscapes, random weights) with OASIS 3D
noise (``noise_dim`` 4), so the served render model takes a style latent and ``?seed=`` matters.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import torch
from _helpers_serving import SPADE_CONFIG, H, W

from cityserve.card_sections import ServingOptions
from cityserve.cards import ModelCard, load_card
from cityserve.checkpoints import save_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[1]
NOISE_CONFIG = dict(SPADE_CONFIG, noise_dim=4, norm_G="spectralspadeinstance3x3")
LIMITS = dict(max_bytes=300_000, max_pixels=200_000)  # small, so the limit tests send little


def tiny_noise_spade_card(out_dir: Path, name: str = "spade-demo") -> ModelCard:
    """A saved SPADE card (64x128, 35 channels, noise_dim 4, seeded random weights) with small limits."""
    from cityserve.models.registry import family

    fam = family("spade")
    torch.manual_seed(0)
    model = fam.build(fam.config_cls(**NOISE_CONFIG)).eval()
    card = ModelCard(
        name=name,
        kind="generator",
        arch="spade",
        config=dict(NOISE_CONFIG),
        label_set="cityscapes",
        height=H,
        width=W,
        provenance={"source": "random weights, canvas tests"},
        serving=ServingOptions(max_batch_size=4, intra_op_threads=1, **LIMITS),
    )
    return load_card(save_checkpoint(card, model.state_dict(), out_dir, name))


class CanvasProcess:
    """``python -m cityserve canvas --port 0 ARGS`` until ``stop``; ``url`` is the one it prints."""

    def __init__(self, args: list[str], env: dict | None = None, timeout: float = 600):
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cityserve", "canvas", "--port", "0", *args],
            cwd=REPO_ROOT,
            env=dict(os.environ if env is None else env, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.url = ""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            m = re.match(r"canvas: (http://\S+?)/?\s", line)
            if m:
                self.url = m.group(1)
                break
        threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True).start()
        if not self.url:
            self.stop()
            raise RuntimeError("cityserve canvas did not start:\n" + "".join(self.lines))
        self.wait_listening()

    def wait_listening(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url + "/static/canvas.css", timeout=2).read()
                return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        raise RuntimeError(f"{self.url} does not answer:\n" + "".join(self.lines))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def http(
    method: str, url: str, body: bytes | None = None, timeout: float = 30, content_type: str = "image/png"
) -> tuple[int, dict, bytes]:
    """(status, headers, body) of one request; error statuses are answers too."""
    req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()

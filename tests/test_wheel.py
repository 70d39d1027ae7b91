"""The wheel works on its own: built from the checkout, installed into a fresh virtual environment in a
temporary folder outside the checkout, it finds its Triton templates, demo models and example label
maps as package data (importlib.resources), builds a cpu repository from the shipped demo card and
serves it with a real tritonserver.

The new environment gets cityserve from the wheel only (``--no-deps``); its dependencies come from
this environment's site-packages through one plain path line in a ``.pth`` file. A plain path line
does not process the ``.pth`` files of that directory, so the checkout's editable install stays out
and the wheel's cityserve is the one imported (checked through ``cityserve.__file__``).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.triton]


def _run(cmd, cwd, timeout=300, env=None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory, repo_root):
    """(venv dir, its site-packages, a clean environment for its commands), cityserve from the wheel."""
    tmp = tmp_path_factory.mktemp("wheel")
    assert repo_root not in tmp.parents
    dist = tmp / "dist"
    _run(
        [sys.executable, "-m", "pip", "wheel", str(repo_root), "--no-deps", "--no-build-isolation", "-q", "-w", dist],
        cwd=tmp,
    )
    (wheel,) = dist.glob("cityserve-*.whl")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp)
    py = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)], cwd=tmp)
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp).stdout.strip())
    (site / "project_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CITYSERVE_DEMO_MODEL")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    return venv, site, env, tmp


def test_the_wheel_is_the_cityserve_imported_and_knows_its_version(wheel_venv):
    venv, site, env, tmp = wheel_venv
    where = _run([venv / "bin" / "python", "-c", "import cityserve; print(cityserve.__file__)"], tmp, env=env)
    assert Path(where.stdout.strip()).is_relative_to(site), where.stdout
    version = _run([venv / "bin" / "cityserve", "--version"], tmp, env=env)
    import cityserve

    assert version.stdout.strip() == f"cityserve {cityserve.__version__}"
    for data in (
        "py.typed",
        "assets/demo/spade-demo.pt",
        "assets/demo/segmenter-demo.card.json",
        "assets/examples/street_01.png",
        "serving/triton_models/render_onnxruntime_python/model.py",
        "serving/triton_models/decode_png/model.py",
    ):
        assert (site / "cityserve" / data).is_file(), data
        assert not (site / "cityserve" / data).is_symlink(), data


def test_repo_build_and_serve_the_shipped_demo_card_from_the_wheel(wheel_venv, repo_root):
    venv, site, env, tmp = wheel_venv
    card = site / "cityserve" / "assets" / "demo" / "spade-demo.card.json"
    repo = tmp / "repo"
    _run([venv / "bin" / "cityserve", "repo", "build", "--target", "cpu", "--model", card, "--out", repo], tmp, env=env)
    assert (repo / "render" / "config.pbtxt").is_file() and (repo / "label2photo" / "config.pbtxt").is_file()

    cmd = [venv / "bin" / "cityserve", "serve", "--repo", repo]
    cmd += ["--grpc-port", "0", "--http-port", "0", "--metrics-port", "0"]
    proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        grpc = None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            m = re.match(r"\s+gRPC\s+(\S+)", line)
            grpc = m.group(1) if m else grpc
            if "Ctrl-C or SIGTERM" in line:
                break
        assert grpc, "cityserve serve (from the wheel) did not become ready:\n" + "".join(lines)
        threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()

        from cityserve.client import CityserveClient
        from cityserve.data.synthetic import generate_scene
        from cityserve.engines import Renderer

        shipped = repo_root / "models" / "demo" / "spade-demo.card.json"
        local = Renderer.from_card(str(shipped), engine="torch")
        ids = generate_scene(10000, local.height, local.width).labels.astype(np.uint8)
        from cityserve.cards import load_card
        from cityserve.models.registry import render_io

        z_dim = render_io(load_card(shipped)).z_dim  # the OASIS demo generator takes a noise vector
        z = np.random.default_rng(0).standard_normal((1, z_dim)).astype(np.float32) if z_dim else None
        with CityserveClient(grpc, timeout=120) as client:
            served = client.render(ids, z=z)  # raw uint8 ids -> the `render` model, no PNG on the way
        expected = local.render(ids, z=z)
        assert served.shape == expected.shape == (1, local.height, local.width, 3) and served.dtype == np.uint8
        # the trained demo weights (not a placeholder): onnxruntime in Triton vs torch here
        assert np.abs(served.astype(int) - expected.astype(int)).mean() < 1.0
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    assert proc.returncode == 0, "".join(lines[-30:])

"""Every example in every ``--help`` runs as written: the ``cityserve`` subcommands and the ``train/``
entry points, parsed from their epilogs and run in a temporary folder that holds the files the examples
name (the official-format fixtures, tiny demo models, small label maps, videos and datasets).

What the test changes, and only that: counts and lengths shrink (``SHRINK``: fewer seeds, one training
step), servers listen on free loopback ports, and ``render --server`` talks to the server the test
started. Examples that need a GPU or TensorRT are listed in ``NOT_RUN`` with the reason, and so is
AOT compilation (minutes per package; ``tests/test_aot.py`` runs ``cityserve export aot`` itself).
Every other example must exit 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from _helpers_serving import tiny_spade_card
from _helpers_training import write_paired

from cityserve.cli import build_parser
from cityserve.cli import main as cityserve_main

pytestmark = [pytest.mark.slow, pytest.mark.triton]

REPO = Path(__file__).resolve().parents[1]
TRAIN_SCRIPTS = [
    "train/spade.py",
    "train/pix2pix.py",
    "train/segmenter.py",
    "train/build_dataset.py",
    "train/layouts.py",
]

NOT_RUN = {  # a piece of the example -> why this test does not run it
    "export tensorrt exported/demo/render.onnx --out exported/demo/render.plan": "needs TensorRT 10 and a GPU",
    "--timing-cache": "needs TensorRT 10 and a GPU",
    "--plan render=": "needs a TensorRT plan, built on a GPU",
    "--cache /engines": "builds TensorRT engines: needs TensorRT 10 and a GPU",
    "--host 0.0.0.0": "an NGC container on a GPU (and this test listens on loopback only)",
    "torchrun ": "several GPUs",
    "...the same options...": "stands for the command above it, with --resume",
    "--form boundary --verify": "the boundary form's check runs onnxruntime's gather-heavy graph at full size (a minute "
    "here); tests/test_boundary.py runs `cityserve export onnx --form boundary --verify` on a small card",
    "export aot": "AOTInductor compiles for minutes per package; tests/test_aot.py runs `cityserve export aot`",
    "--preset hongkong": "a full-size preset: one step takes 15-50 s here; tests/test_training.py runs train/spade.py",
    "--preset citygan": "a full-size preset: one step takes 10-30 s here; tests/test_training.py runs train/pix2pix.py",
    "--preset deeplab": "a full-size preset; tests/test_training.py runs train/segmenter.py",
    "--preset oasis": "a full-size preset; tests/test_training.py runs train/spade.py",
    "--init-D runs/demo128/state/step_00004000.pt": "needs the state of the 4000-step run above it",
    "import deeplab best_deeplabv3plus_": "a VainF DeepLabV3+ checkpoint; tests/test_import_deeplab.py imports files of that format",
    "--root /data/cityscapes": "a Cityscapes folder; tests/test_evaluation.py evaluates on dataset folders",
    "drive.mp4": "a dashcam video; tests/test_build_dataset.py builds datasets from generated videos",
    "--depth-aware runs/depth/": "needs the depth-aware cards of the train/spade.py examples; tests/test_depth.py",
    "--server 127.0.0.1:8001 --depth": "a server with a depth-aware pair (the sandbox's tiny demo models have none); "
    "tests/test_depth_serving.py renders through one",
    "--depth my_depth.npy": "a user's depth map and the depth-aware cards; tests/test_depth.py renders with both",
    "eval depth runs/": "needs the depth card of the train/spade.py examples; tests/test_depth.py runs it",
    "eval generator models/demo/depth2photo-demo": "the shipped depth-aware pair, which the sandbox's tiny demo "
    "models lack; tests/test_demo_models.py runs both evaluations on the shipped cards",
    "export depth runs/": "needs the depth-aware cards of the train/spade.py examples, which run after the exports; "
    "tests/test_depth.py runs `cityserve export depth`",
    "cityserve canvas": "serves until Ctrl-C; tests/test_canvas_api.py and tests/test_canvas_browser.py run it",
    "--server 10.0.0.1:8001,10.0.0.2:8001": "a cluster's replicas; tests/test_replicas.py runs several URLs against real servers",
}
SHRINK = [  # (as the example says, what the test runs): counts only
    (r"--seeds (\d+)-(\d+)", lambda m: f"--seeds {m[1]}-{min(int(m[2]), int(m[1]) + 3)}"),  # 4 scenes
    (r"--max-steps \d+", "--max-steps 1"),
    (r"--save-every \d+", "--save-every 1"),
    (r"--workers \d+", "--workers 1"),
]
TRAIN_TAIL = ["--max-steps", "1", "--batch-size", "2", "--no-progress", "--threads", "1"]


def example_lines(epilog: str | None) -> list[str]:
    """The commands of an epilog's ``examples:`` section (continuation lines joined)."""
    out, on, buf = [], False, ""
    for line in (epilog or "").splitlines():
        if line.strip().lower().startswith("examples:"):
            on = True
            continue
        if not on:
            continue
        if line and not line.startswith(" "):
            on = False
            continue
        s = line.strip()
        if buf:
            buf += " " + s
        elif re.match(r"(cityserve|python|torchrun) ", s):
            buf = s
        else:
            continue
        if buf.endswith("\\"):
            buf = buf[:-1].rstrip()
            continue
        out.append(buf)
        buf = ""
    return out


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(f"entry_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _walk(parser: argparse.ArgumentParser, name: str):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _walk(sub, f"{name} {sub_name}")


def all_examples() -> list[tuple[str, str]]:
    found = [(name, ex) for name, p in _walk(build_parser(), "cityserve") for ex in example_lines(p.epilog)]
    for script in TRAIN_SCRIPTS:
        module = _load(REPO / script)
        parser = module.build_parser() if hasattr(module, "build_parser") else None
        found += [(script, ex) for ex in example_lines(parser.epilog if parser else module.EPILOG)]
    return found


def phase(argv: list[str]) -> int:
    """Examples run in the order their files come into being: import, export, repo, the rest; synth last
    (its demo layout rewrites examples/ at 256x512, the real demo's size, not the tiny one's here)."""
    order = ["import", "export", "repo", "render", "eval", "python", "demo", "serve", "synth"]
    key = argv[0] if argv[0] == "python" else argv[1]
    return order.index(key) if key in order else len(order) - 1


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory, fixtures_dir):
    """A folder holding every file the examples name (tiny stand-ins for users' files)."""
    from cityserve.checkpoints import save_checkpoint
    from cityserve.data.synthetic import generate_scene
    from cityserve.labels import get_label_set
    from cityserve.models.deeplab import MobileNetV2Backbone
    from cityserve.models.inception import load_fid_inception
    from cityserve.models.registry import family

    d = tmp_path_factory.mktemp("help_examples")
    (d / "examples").mkdir()
    for png in sorted((REPO / "examples").glob("street_0?.png")):  # at the tiny demo model's size
        small = cv2.resize(cv2.imread(str(png)), (128, 64), interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(str(d / "examples" / png.name), small)
    tiny_spade_card(d / "models" / "demo", name="spade-demo")
    seg = family("deeplabv3plus")
    torch.manual_seed(0)
    from cityserve.cards import ModelCard

    seg_config = dict(backbone="mobilenetv2", output_stride=16)
    for out, name in ((d / "models" / "demo", "segmenter-demo"), (d / "runs" / "fchardnet", "best")):
        card = ModelCard(
            name=name,
            kind="segmenter",
            arch="deeplabv3plus",
            config=seg_config,
            label_set="cityscapes",
            height=64,
            width=128,
            provenance={"source": "random weights, help examples"},
        )
        save_checkpoint(card, seg.build(seg.config_cls(**seg_config)).eval().state_dict(), out, name)
    links = {
        "latest_net_G.pth": "spade/cityscapes_ngf2_netG.pth",
        "checkpoints/cityscapes_pretrained/latest_net_G.pth": "spade/cityscapes_ngf2_netG.pth",
        "ade20k/latest_net_G.pth": "spade/ade20k_ngf2_netG.pth",
        "mine/latest_net_G.pth": "spade/ade20k_ngf2_netG.pth",
        "vae/latest_net_G.pth": "spade/ade20k_more_vae_ngf2_netG.pth",
        "vae/latest_net_E.pth": "spade/ade20k_more_vae_ngf2_netE.pth",
        "checkpoints/cityscapes_label2photo/latest_net_G.pth": "pix2pix/unet256_ngf16_latest_net_G.pth",
        "runs/hardnet/cityscapes/hardnet_cityscapes_best_model.pkl": "fchardnet/fchardnet70_state.pth",
        "best_model.pkl": "fchardnet/fchardnet70_state.pth",
    }
    for name, fixture in links.items():
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).symlink_to(fixtures_dir / fixture)
    # a user's own label set: 150 classes, as the ADE20K-sized fixture expects (+ dontcare)
    import json

    import yaml

    classes = [{"id": i, "name": f"class{i}", "color": [i, (i * 7) % 256, (i * 13) % 256]} for i in range(150)]
    (d / "my_labels.json").write_text(json.dumps({"name": "mine", "classes": classes}))
    (d / "my_labels.yaml").write_text(yaml.safe_dump({"name": "mine", "classes": classes}))
    scene = generate_scene(0, 256, 512)
    cv2.imwrite(str(d / "street_gtFine_labelIds.png"), scene.labels)
    cv2.imwrite(str(d / "street_gtFine_instanceIds.png"), scene.instances.astype(np.uint16))
    ade = get_label_set("ade20k")
    ids = np.repeat(np.repeat(np.random.default_rng(0).integers(1, 150, (8, 8)), 32, 0), 32, 1)
    cv2.imwrite(str(d / "painted.png"), ade.ids_to_colors(ids.astype(np.int64))[..., ::-1])
    cv2.imwrite(str(d / "beach.jpg"), np.random.default_rng(1).integers(0, 255, (256, 256, 3), dtype=np.uint8))
    np.save(d / "saved_latent.npy", np.random.default_rng(2).standard_normal((1, 256)).astype(np.float32))
    (d / "my_streets").mkdir()
    shutil.copy(d / "examples" / "street_01.png", d / "my_streets")
    for folder, seed in (("generated", 3), ("real", 4)):
        (d / folder).mkdir()
        for i in range(2):
            img = np.random.default_rng(seed * 10 + i).integers(0, 255, (64, 64, 3), dtype=np.uint8)
            cv2.imwrite(str(d / folder / f"{i}.png"), img)
    torch.save(load_fid_inception(None, seed=0).state_dict(), d / "pt_inception-2015-12-05-6726825d.pth")
    torch.save(MobileNetV2Backbone().state_dict(), d / "mobilenet_v2.pth")
    write_paired(d / "my_city", n=4, h=256, w=512)
    for video in ("hk_drive_01.mp4", "hk_drive_02.mp4", "drive.mp4"):
        writer = cv2.VideoWriter(str(d / video), cv2.VideoWriter_fourcc(*"mp4v"), 4, (320, 160))
        for i in range(12):
            writer.write(cv2.resize(generate_scene(i // 4, 64, 128).photo[..., ::-1], (320, 160)))
        writer.release()
    cwd = os.getcwd()
    os.chdir(d)
    try:
        assert cityserve_main(["synth", "--seeds", "0-3", "--size", "256x512", "--out", "data/cityscapes"]) == 0
    finally:
        os.chdir(cwd)
    return d


def _run_in_process(argv: list[str], cwd: Path) -> int:
    old = os.getcwd()
    os.chdir(cwd)
    try:
        if argv[0] == "python":
            module = _load(REPO / argv[1])
            return int(module.main(argv[2:]) or 0)
        return cityserve_main(argv[1:])
    except SystemExit as e:  # argparse: a usage error in the example itself
        return int(e.code or 0)
    finally:
        os.chdir(old)


class Server:
    """``cityserve serve ...`` as a process on free loopback ports, until ``stop``."""

    def __init__(self, argv: list[str], cwd: Path, env: dict):
        argv = argv + ["--grpc-port", "0", "--http-port", "0", "--metrics-port", "0"]
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", *argv],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.grpc = None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            m = re.match(r"\s+gRPC\s+(\S+)", line)
            self.grpc = m.group(1) if m else self.grpc
            if "Ctrl-C or SIGTERM" in line:
                break
        threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True).start()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)
        return self.proc.returncode


def run_example(where: str, line: str, argv: list[str], sandbox: Path) -> list[str]:
    trains = argv[0] == "python" and argv[1].startswith("train/") and argv[1] != "train/build_dataset.py"
    if trains and "--preset tiny" not in line:  # the tiny preset's examples run as they are
        argv = argv + TRAIN_TAIL
    started = time.perf_counter()
    code = _run_in_process(argv, sandbox)
    return [f"[{where}] {line}\n  exit {code} after {time.perf_counter() - started:.1f} s"] if code else []


def serve_examples(examples, sandbox: Path, env: dict) -> list[str]:
    """Each ``serve`` example starts, becomes ready and stops cleanly on SIGTERM; the ``render --server``
    examples run against the first one."""
    failures = []
    renders = [e for e in examples if e[2][1] != "serve"]
    for where, line, argv in [e for e in examples if e[2][1] == "serve"]:
        server = Server(argv, sandbox, env)
        try:
            if server.grpc is None:
                failures.append(f"[{where}] {line}\n  not ready:\n" + "".join(server.lines[-20:]))
                continue
            for r_where, r_line, r_argv in renders:
                r_argv = [server.grpc if a == "127.0.0.1:8001" else a for a in r_argv]
                if _run_in_process(r_argv, sandbox) != 0:
                    failures.append(f"[{r_where}] {r_line}\n  failed against {server.grpc}")
            renders = []
        finally:
            code = server.stop()
        if code != 0:
            failures.append(f"[{where}] {line}\n  exit {code} on SIGTERM:\n" + "".join(server.lines[-20:]))
    if renders:
        failures.append("no server example ran for the render --server examples")
    return failures


def test_help_examples_run_as_written(sandbox, monkeypatch):
    examples = all_examples()
    assert len(examples) > 40, examples  # the parser found them all
    runs = []
    for where, line in examples:
        skipped = next((why for piece, why in NOT_RUN.items() if piece in line), None)
        command = line
        for pattern, repl in SHRINK if "--preset tiny" not in line else []:
            command = re.sub(pattern, repl, command)
        argv = shlex.split(command, comments=True)
        if argv[0] == "python" and argv[1] not in TRAIN_SCRIPTS:
            skipped = skipped or f"not an entry point this test knows: {argv[1]}"
        runs.append((phase(argv) if not skipped else -1, where, line, argv, skipped))
    monkeypatch.setenv("CITYSERVE_DEMO_MODEL", str(sandbox / "models" / "demo"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(sandbox / ".cache"))
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")

    failures, ran = [], 0
    todo = sorted((r for r in runs if not r[4]), key=lambda r: r[0])
    served = [(w, line, a) for _, w, line, a, _ in todo if "--server" in a or a[1] == "serve"]
    local = [(w, line, a) for _, w, line, a, _ in todo if (w, line, a) not in served]
    for where, line, argv in [e for e in local if e[2][1] != "synth"]:
        failures += run_example(where, line, argv, sandbox)
    failures += serve_examples(served, sandbox, env)
    for where, line, argv in [e for e in local if e[2][1] == "synth"]:
        failures += run_example(where, line, argv, sandbox)
    ran = len(local) + len(served)
    assert not failures, "\n".join(failures)
    assert ran >= 30
    assert (sandbox / "photo.png").is_file() and (sandbox / "demo_output" / "montage.png").is_file()

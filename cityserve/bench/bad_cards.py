"""Hostile model cards and label sets (issue #13 points 1, 6, 7), for ``benchmarks/reliability.py``.

Each is a copy of a valid card (with its real weights) with one field made hostile. What is expected
of ``cityserve repo build`` on it: exit 2 with a one-line ``error:`` and no traceback, or, for the
config-injection card, a repository whose configs carry the value as inert data. ``run_cli`` runs the
command in a child process with a memory cap, so a card that makes it allocate gigabytes cannot hurt
a shared machine.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

INJECTED = 'x"\ndefault_model_filename: "../../../elsewhere/evil.py'
DEEP = "<a label set nested 100 000 levels deep>"


def _copy(card: Path, out: Path, name: str, change) -> Path:
    folder = out / name
    folder.mkdir(parents=True)
    d = json.loads(card.read_text())
    shutil.copy(card.parent / d["weights"], folder / d["weights"])
    change(d, folder)
    path = folder / f"{name}.card.json"
    text = json.dumps(d)
    if d.get("label_set") == DEEP:  # 100 000 levels: written by hand (json.dumps would recurse too)
        text = text.replace(json.dumps(DEEP), '{"n": ' * 100_000 + "{}" + "}" * 100_000)
    path.write_text(text)
    return path


def card_cases(card: Path, out: Path) -> list[tuple[str, str, Path]]:
    """(case name, issue point, card path) for every hostile card made from ``card``."""

    def field(key, value):
        def change(d, folder):
            d[key] = value

        return change

    def config(key, value):
        def change(d, folder):
            d["config"][key] = value

        return change

    def label_set(value):
        def change(d, folder):
            d["label_set"] = value

        return change

    def serving(key, value):
        def change(d, folder):
            d.setdefault("extra", {}).setdefault("serving", {})[key] = value

        return change

    def deep(d, folder):
        d["label_set"] = DEEP

    def huge_id(d, folder):
        d["label_set"] = {"name": "huge", "classes": [{"id": 2**40, "name": "a", "color": [1, 2, 3]}]}

    cases = [
        ("card-name-injection", "13.1", field("name", INJECTED)),
        (
            "labelset-name-injection",
            "13.1",
            label_set(
                {"name": INJECTED, "classes": [{"id": i, "name": f"c{i}", "color": [i, i, i]} for i in range(35)]}
            ),
        ),
        ("labelset-id-2**40", "13.6", huge_id),
        ("labelset-100k-deep-json", "13.6", deep),
        ("card-height-negative", "13.6", field("height", -256)),
        ("card-height-fraction", "13.6", field("height", 256.5)),
        ("card-ngf-1e7", "13.6", config("ngf", 10_000_000)),
        ("card-label_nc-1e9", "13.6", config("label_nc", 1_000_000_000)),
        ("card-max_batch_size-1e9", "13.6", serving("max_batch_size", 1_000_000_000)),
        ("card-sha256-empty", "13.7", field("sha256", "")),
        ("card-weights-absolute", "13.7", field("weights", "/etc/hostname")),
        ("card-weights-dotdot", "13.7", field("weights", "../../../../etc/hostname")),
    ]
    return [(name, issue, _copy(card, out, name, change)) for name, issue, change in cases]


def _cap_memory() -> None:  # child: 3 GiB of address space at most
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))


def run_cli(args: list[str], timeout: float = 120.0) -> dict:
    """``python -m cityserve ARGS`` in a child: exit code, stderr's lines, seconds, traceback or not."""
    started = time.perf_counter()
    try:
        res = subprocess.run(
            [sys.executable, "-m", "cityserve", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=_cap_memory,
        )
        rc, err = res.returncode, res.stderr
    except subprocess.TimeoutExpired:
        rc, err = None, f"timed out after {timeout:g} s"
    lines = [
        line
        for line in err.strip().splitlines()
        if line.strip() and not line.startswith(("note:", "warning:", " ")) and "Warning:" not in line
    ]
    return {
        "exit": rc,
        "stderr": lines[-1][:240] if lines else "",
        "stderr_lines": len(lines),
        "traceback": "Traceback" in err,
        "seconds": round(time.perf_counter() - started, 2),
    }

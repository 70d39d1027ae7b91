"""What a training run saves, and how it comes back exactly: ``OUT/state/step_N.pt`` (modules, optimizers,
scalers, every global RNG state in types ``torch.load(weights_only=True)`` reads), the exported cards
``OUT/checkpoints/NAME_stepN.*`` + ``OUT/NAME.*``, and the identity check that refuses to resume a run
with other options."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ..cards import atomic_write_bytes, command_line, environment, now_iso
from ..checkpoints import safe_load, save_checkpoint
from ..errors import CheckpointError, ConfigError

log = logging.getLogger("cityserve.training")

STATE_FORMAT = "cityserve-train-state/1"
STATE_DIR = "state"
CKPT_DIR = "checkpoints"
_STATE_RE = re.compile(r"^step_(\d+)\.pt$")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def capture_rng() -> dict[str, Any]:
    """All global RNG states, in types ``torch.load(weights_only=True)`` reads back."""
    version, pystate, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    st: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": {"version": version, "state": torch.tensor(pystate, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def restore_rng(st: dict[str, Any]) -> None:
    torch.set_rng_state(st["torch"])
    py = st["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    n = st["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def state_files(out: str | os.PathLike) -> list[tuple[int, Path]]:
    """The training states under ``OUT/state``, oldest first, as (step, path)."""
    d = Path(out) / STATE_DIR
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _STATE_RE.match(p.name))]
    return sorted(found)


# ---- saving, pruning, reading and restoring ----------------------------------------------------------
def save_training_state(trainer: Any, out: Path, step: int, epoch: int, seed: int, keep: int) -> Path:
    """``OUT/state/step_N.pt``: modules, optimizers, grad scalers, step, epoch and every RNG state, written
    atomically (temp file + fsync + rename); older states beyond ``keep`` are removed."""
    state = {
        "format": STATE_FORMAT,
        "step": step,
        "epoch": epoch,
        "seed": seed,
        "identity": json.dumps(trainer.identity(), sort_keys=True, default=str),
        "modules": {k: m.state_dict() for k, m in trainer.modules().items()},
        "optimizers": {k: o.state_dict() for k, o in trainer.optimizers().items()},
        "scalers": {k: s.state_dict() for k, s in trainer.scalers().items()},
        "rng": capture_rng(),
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    path = out / STATE_DIR / f"step_{step:08d}.pt"
    atomic_write_bytes(path, buf.getvalue())
    prune(state_files(out), keep, lambda p: [p])
    return path


def export_checkpoint(trainer: Any, cfg: Any, world_size: int, step: int, epoch: int, losses: dict[str, float]) -> Path:
    """The trainer's model as a card + weights: ``OUT/checkpoints/NAME_stepN.*`` and the newest as
    ``OUT/NAME.*``, with the provenance (command, step, environment) and the last tick's losses."""
    card, sd = trainer.export()
    card.provenance.update(
        {
            "source": "trained",
            "command": command_line(),
            "step": step,
            "epoch": epoch,
            "seed": cfg.seed,
            "world_size": world_size,
            "batch_size_per_process": cfg.batch_size,
            "created": now_iso(),
            "environment": environment(),
        }
    )
    card.metrics.update({f"train/{k}": round(v, 6) for k, v in losses.items()})
    ckdir = cfg.out / CKPT_DIR
    stem = f"{cfg.name}_step{step:08d}"
    save_checkpoint(
        dataclasses.replace(card, provenance=dict(card.provenance), metrics=dict(card.metrics)), sd, ckdir, stem=stem
    )
    top = save_checkpoint(card, sd, cfg.out, stem=cfg.name)
    exported = sorted(
        (int(m.group(1)), p)
        for p in ckdir.glob(f"{cfg.name}_step*.card.json")
        if (m := re.search(r"_step(\d+)\.card\.json$", p.name))
    )
    prune(exported, cfg.keep, lambda p: [p, p.with_name(p.name[: -len(".card.json")] + ".pt")])
    return top


def prune(items: Sequence[tuple[int, Path]], keep: int, files: Callable[[Path], list[Path]]) -> None:
    if keep > 0:
        for _, p in list(items)[:-keep]:
            for f in files(p):
                f.unlink(missing_ok=True)


def read_training_state(p: Path) -> dict[str, Any]:
    st = safe_load(p)
    if not isinstance(st, dict) or st.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{p} is not a cityserve training state ({STATE_FORMAT})")
    return st


def find_training_state(out: Path, named: Optional[Path] = None) -> tuple[dict[str, Any], Path]:
    """The state to resume from: the ``named`` file, or the newest readable one under ``OUT/state``."""
    if named is not None:
        return read_training_state(named), named
    found = state_files(out)
    if not found:
        raise CheckpointError(f"--resume: no training state under {out / STATE_DIR} (nothing to resume)")
    errors = []
    for _, p in reversed(found):
        try:
            return read_training_state(p), p
        except CheckpointError as e:  # cannot happen with atomic writes, but a disk can still lie
            log.warning("skipping unreadable training state %s: %s", p, e)
            errors.append(str(e))
    raise CheckpointError(f"--resume: no readable training state under {out / STATE_DIR}: {errors[0]}")


def restore_training_state(trainer: Any, st: dict[str, Any], path: Path, seed: int, rank: int) -> int:
    """Load ``st`` into the trainer after checking it was made by the same options; returns its step."""
    mine = json.loads(json.dumps(trainer.identity(), sort_keys=True, default=str))
    theirs = json.loads(st["identity"])
    diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    if diff:
        k = diff[0]
        raise ConfigError(
            f"--resume: {path} was trained with {k}={theirs.get(k)!r}, this run has "
            f"{k}={mine.get(k)!r}; resume with the same options or use a new --out"
        )
    for k, m in trainer.modules().items():
        m.load_state_dict(st["modules"][k])
    for k, o in trainer.optimizers().items():
        o.load_state_dict(st["optimizers"][k])
    for k, sc in trainer.scalers().items():
        if k in st["scalers"] and st["scalers"][k]:
            sc.load_state_dict(st["scalers"][k])
    if rank == 0:
        restore_rng(st["rng"])
    else:  # other ranks: a seed derived from (seed, step, rank), different per rank, reproducible
        seed_everything(seed * 1_000_003 + int(st["step"]) * 101 + rank)
    return int(st["step"])

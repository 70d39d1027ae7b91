"""Reading and writing weights safely.

Checkpoints are untrusted input (pickles): everything goes through ``torch.load(weights_only=True)``,
and a truncated or foreign file becomes a one-line ``CheckpointError`` naming the file. Writes are
atomic: a run killed mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickletools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .cards import ModelCard, atomic_write_bytes, now_iso, sha256_file
from .errors import CheckpointError


def unsafe_globals(path: str | os.PathLike) -> list[str]:
    """The Python globals a checkpoint's pickle would import beyond what ``weights_only`` allows,
    read from its opcodes without running any (a torch.save zip or a bare pickle)."""
    with contextlib.suppress(Exception):
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    names: list[str] = []
    strings: list[str] = []
    with contextlib.suppress(Exception), open(path, "rb") as f:
        for op, arg, _ in pickletools.genops(f):
            if isinstance(arg, str) and op.name != "GLOBAL" and op.name != "INST":
                strings.append(arg)
            elif op.name in ("GLOBAL", "INST"):
                names.append(".".join(str(arg).split(" ", 1)))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                names.append(f"{strings[-2]}.{strings[-1]}")
    try:
        allowed = set(torch._weights_only_unpickler._get_allowed_globals())
    except Exception:  # private API moved: report them all
        allowed = set()
    return [n for n in dict.fromkeys(names) if n not in allowed]


def safe_load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` with ``weights_only=True`` and errors that name the file and the problem (a
    refused pickle names the globals it wanted, and never repeats torch's advice to switch the
    protection off)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} does not exist")
    if p.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {p} is empty (0 bytes)")
    try:
        return torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError, zipfile errors …
        text = str(e).strip()
        msg = text.splitlines()[0] if text else type(e).__name__
        blocked = unsafe_globals(p) if "Weights only load failed" in text else []
        if not blocked and "GLOBAL" in text:
            blocked = re.findall(r"GLOBAL (\S+)", text)
        if blocked:
            raise CheckpointError(
                f"checkpoint {p} is refused: its pickle would import {', '.join(blocked[:3])}, which can run "
                f"code; checkpoints are read as tensors only (weights_only=True)"
            ) from None
        if "central directory" in msg or "EOF" in msg or "truncated" in msg.lower() or isinstance(e, EOFError):
            why = "truncated or corrupt"
        elif "WeightsUnpickler error" in text or "Weights only load failed" in text:
            found = re.search(r"WeightsUnpickler error:\s*(.+)", text)
            msg = found.group(1).strip() if found else "not a checkpoint of tensors"
            why = "not a readable PyTorch checkpoint (corrupt, or not a checkpoint)"
        else:
            why = "not a readable PyTorch checkpoint"
            msg = msg if len(msg) > 3 else f"{type(e).__name__} {msg}"
        raise CheckpointError(f"checkpoint {p} is {why}: {msg[:200]}") from None


def state_dict_from(obj: Any, path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Find the state dict in what an official script saved: a bare dict, or {"model_state": ...} /
    {"state_dict": ...} wrappers; strips DataParallel's ``module.`` prefix."""
    for key in ("model_state", "state_dict", "model", "netG"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"checkpoint {path} does not hold a state dict of tensors")
    sd = dict(obj)
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def save_weights(state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike) -> str:
    """Atomically write a state dict; returns its sha256."""
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, buf)
    atomic_write_bytes(path, buf.getvalue())
    return sha256_file(path)


def save_checkpoint(
    card: ModelCard, state_dict: Mapping[str, torch.Tensor], out_dir: str | os.PathLike, stem: str | None = None
) -> Path:
    """Write ``stem.pt`` and ``stem.card.json`` into ``out_dir`` (weights first, then the card that
    vouches for them), filling in the card's weights name and sha256. Returns the card path."""
    out = Path(out_dir)
    stem = stem or card.name
    weights = out / f"{stem}.pt"
    card.weights = weights.name
    card.sha256 = save_weights(state_dict, weights)
    card.provenance.setdefault("created", now_iso())
    return card.save(out / f"{stem}.card.json")


def load_weights(card: ModelCard, verify: bool = True) -> dict[str, torch.Tensor]:
    """The card's state dict, after checking the sha256 the card records."""
    if verify:
        card.verify()
    return state_dict_from(safe_load(card.weights_path), card.weights_path)


def load_strict(module: torch.nn.Module, sd: Mapping[str, torch.Tensor], path, what: str) -> None:
    """``module.load_state_dict(sd, strict=True)``, but a mismatch is a one-line CheckpointError naming
    the file and the first missing, unexpected and misshapen keys instead of torch's multi-line dump.
    (torch loads first, so modules that drop keys of their own, like SPADE's ``netE.*``, still work.)"""
    try:
        module.load_state_dict(sd, strict=True)
        return
    except RuntimeError as e:
        first_line = str(e).strip().splitlines()[0][:200]
    own = module.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    wrong = [
        f"{k} {list(sd[k].shape)} (expected {list(own[k].shape)})"
        for k in own
        if k in sd and sd[k].shape != own[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing[:3])}{' …' if len(missing) > 3 else ''}")
    if unexpected:
        problems.append(f"unexpected {', '.join(unexpected[:3])}{' …' if len(unexpected) > 3 else ''}")
    if wrong:
        problems.append(f"shape {', '.join(wrong[:2])}{' …' if len(wrong) > 2 else ''}")
    raise CheckpointError(f"checkpoint {path} does not fit {what}: {'; '.join(problems) or first_line}") from None


def check_finite(sd: Mapping[str, torch.Tensor], path: str | os.PathLike) -> None:
    """A weights file with NaN or Inf would render garbage silently: refuse it, naming the tensor."""
    for k, v in sd.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise CheckpointError(f"checkpoint {path}: tensor {k} holds NaN or Inf values")

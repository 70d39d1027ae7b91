"""Depth maps: reading and checking users' depth files, and the normalised log-depth the depth-aware SPADE
stages train on.

A depth map is float32 [H,W] metres (camera Z, as the synthetic scenes draw it). Users bring their own,
written by whatever depth estimator they ran, in a ``depth/`` folder beside the images: 16-bit PNGs in
millimetres (the KITTI / NYU convention) or float ``.npy`` files in metres. They are checked like label
maps, before training: a missing file, another size than its photo, another dtype, NaN / inf, zero or
negative values each give a one-line ``DatasetError`` naming the file.

The generators see depth as normalised log-depth in [-1, 1] (``LogDepth``): log spacing gives the near
metres, where the geometry is, as much range as the far hundreds, and tanh outputs fit [-1, 1]. Its two
numbers (near, far) are data: they travel in the card's ``depth`` section, so an exported graph turns
its output back into metres exactly as the training normalised it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from ..contract import DEPTH_PNG_SCALE, depth_values_problem
from ..errors import ConfigError
from .synthetic_render import SKY_DEPTH
from .validate import DatasetError, Problem

DEPTH_EXTS = (".png", ".npy")
PNG_SCALE = DEPTH_PNG_SCALE  # 16-bit depth PNGs hold millimetres
STAGES = ("depth", "photo-from-depth")


@dataclass(frozen=True)
class LogDepth:
    """``n = 2 * (log d - log near) / (log far - log near) - 1``, clipped to [-1, 1]; ``metres(n)`` inverts it.

    Defaults: 1 m (closer than the road's first visible row from a 1.5 m camera) to the synthetic sky's
    ``SKY_DEPTH`` (1000 m), so every synthetic pixel is in range and the sky is exactly +1.
    """

    near: float = 1.0
    far: float = float(SKY_DEPTH)
    kind: str = "log"

    def __post_init__(self) -> None:
        if self.kind != "log":
            raise ConfigError(f"depth normalisation kind must be 'log', not {self.kind!r:.40}")
        for name in ("near", "far"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
                raise ConfigError(f"depth normalisation {name} must be a positive number, not {v!r:.40}")
        if not self.far > self.near:
            raise ConfigError(f"depth normalisation far ({self.far}) must exceed near ({self.near})")

    @property
    def log_near(self) -> float:
        return math.log(self.near)

    @property
    def log_span(self) -> float:
        return math.log(self.far) - math.log(self.near)

    def normalise(self, depth: Any) -> Any:
        """Metres (numpy array or tensor) -> normalised log-depth in [-1, 1], same type."""
        if isinstance(depth, torch.Tensor):
            d = depth.float().clamp(self.near, self.far)
            return 2.0 * (torch.log(d) - self.log_near) / self.log_span - 1.0
        d = np.clip(np.asarray(depth, dtype=np.float32), self.near, self.far)
        return (2.0 * (np.log(d) - self.log_near) / self.log_span - 1.0).astype(np.float32)

    def metres(self, n: Any) -> Any:
        """Normalised log-depth (numpy array or tensor) -> metres, same type; values outside [-1, 1] clip."""
        if isinstance(n, torch.Tensor):
            return torch.exp(self.log_near + (n.float().clamp(-1.0, 1.0) + 1.0) * 0.5 * self.log_span)
        n = np.clip(np.asarray(n, dtype=np.float32), -1.0, 1.0)
        return np.exp(self.log_near + (n + 1.0) * 0.5 * self.log_span).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> LogDepth:
        if not isinstance(d, dict) or set(d) - {"near", "far", "kind"}:
            raise ConfigError(f"depth normalisation must be a mapping of near, far, kind, not {d!r:.60}")
        return cls(**d)


def depth_section(stage: str, norm: LogDepth, **facts: Any) -> dict[str, Any]:
    """A card's ``depth`` section: which stage the model is and the normalisation it was trained with."""
    if stage not in STAGES:
        raise ConfigError(f"depth stage must be one of {', '.join(STAGES)}, not {stage!r:.40}")
    return {"stage": stage, "normalisation": norm.to_dict(), **facts}


def card_depth(card) -> tuple[str, LogDepth]:
    """(stage, normalisation) of a depth-aware card; a ``ConfigError`` naming the card otherwise."""
    sec = getattr(card, "depth", None)
    if not isinstance(sec, dict) or sec.get("stage") not in STAGES:
        raise ConfigError(f"model card {card.path or card.name} is not a depth-aware SPADE stage (no depth section)")
    return sec["stage"], LogDepth.from_dict(sec.get("normalisation"))


# ---- files --------------------------------------------------------------------------------------------
def read_depth(path: str | Path) -> np.ndarray:
    """A depth file as float32 [H,W] metres: a 16-bit PNG (millimetres) or a float ``.npy`` (metres).

    Raises ``DatasetError`` naming the file for an unreadable file, another dtype, NaN / inf, or values
    that are zero or negative.
    """
    p = Path(path)
    ext = p.suffix.lower()
    if ext == ".png":
        raw = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise DatasetError(f"{p}: not a readable PNG depth map")
        if raw.dtype != np.uint16 or raw.ndim != 2:
            what = f"{raw.shape[2] if raw.ndim == 3 else 1}-channel {raw.dtype}"
            raise DatasetError(f"{p}: a depth PNG must be single-channel 16-bit (millimetres), not {what}")
        depth = raw.astype(np.float32) / PNG_SCALE
    elif ext == ".npy":
        try:
            raw = np.load(p, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DatasetError(f"{p}: not a readable .npy depth map ({str(e)[:80]})") from None
        if raw.dtype.kind != "f":
            raise DatasetError(f"{p}: a .npy depth map must hold floats (metres), not {raw.dtype}")
        if raw.ndim == 3 and raw.shape[0] == 1:
            raw = raw[0]
        if raw.ndim != 2:
            raise DatasetError(f"{p}: a depth map must be [H,W], not shape {list(raw.shape)}")
        depth = raw.astype(np.float32)
    else:
        raise DatasetError(f"{p}: depth maps are 16-bit .png (millimetres) or .npy (metres), not {ext or 'no suffix'}")
    problem = depth_values_problem(depth)
    if problem:
        raise DatasetError(f"{p}: {problem}")
    return depth


def check_depth_file(path: Path, shape: tuple[int, int]) -> list[Problem]:
    """Problems of one depth file against its photo's (H, W): unreadable, bad values, another size."""
    try:
        depth = read_depth(path)
    except DatasetError as e:
        return [Problem(str(path), str(e).split(": ", 1)[1])]
    if depth.shape != tuple(shape):
        return [
            Problem(
                str(path),
                f"depth map is {depth.shape[0]}x{depth.shape[1]} (HxW) but its photo is {shape[0]}x{shape[1]}",
            )
        ]
    return []


def depth_files(folder: Path) -> dict[str, Path]:
    """stem -> depth file in ``folder`` (``.png`` or ``.npy``); with both, the ``.npy`` (metres, no rounding)."""
    out: dict[str, Path] = {}
    if not folder.is_dir():
        return out
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in DEPTH_EXTS and not p.name.startswith("."):
            if p.stem not in out or p.suffix.lower() == ".npy":
                out[p.stem] = p
    return out


def write_depth_png(path: str | Path, depth: np.ndarray) -> Path:
    """Metres -> a 16-bit PNG in millimetres (clipped to 1..65535 mm: 0 would read as invalid)."""
    mm = np.clip(np.round(np.asarray(depth, dtype=np.float64) * PNG_SCALE), 1, 65535).astype(np.uint16)
    if not cv2.imwrite(str(path), mm):
        raise DatasetError(f"could not write {path}")
    return Path(path)

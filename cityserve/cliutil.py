"""Small parsers shared by the CLI and the train/ entry points: sizes and seed ranges."""
from __future__ import annotations

import argparse


def parse_size(text: str) -> tuple[int, int]:
    """'256x512' -> (256, 512) as (H, W)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HxW, e.g. 256x512, not {text!r}") from None
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return h, w


def parse_seeds(text: str) -> list[int]:
    """'0-9' -> [0..9]; '1,5,7' -> [1, 5, 7]; '3' -> [3]; mixed: '0-3,10'."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            if "-" in part.strip()[1:]:
                a, b = part.split("-", 1)
                lo, hi = int(a), int(b)
                if hi < lo:
                    raise ValueError
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must look like 0-99 or 1,5,7, not {text!r}") from None
    return seeds

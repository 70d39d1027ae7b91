"""Small parsers shared by the CLI and the train/ entry points: sizes and seed ranges.

Their error is both a ``ConfigError`` (one line, exit code 2 when raised in a command) and an
``argparse.ArgumentTypeError`` (argparse shows the message itself when used as ``type=``).
"""

from __future__ import annotations

import argparse
import re

from .errors import ConfigError


class ArgumentError(ConfigError, argparse.ArgumentTypeError):
    """A malformed option value."""


def parse_size(text: str) -> tuple[int, int]:
    """'256x512' -> (256, 512) as (H, W)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if not m or int(m.group(1)) <= 0 or int(m.group(2)) <= 0:
        raise ArgumentError(f"size must be HxW with positive sides, e.g. 256x512, not {text!r}")
    return int(m.group(1)), int(m.group(2))


def parse_seeds(text: str) -> list[int]:
    """'0-9' -> [0..9]; '1,5,7' -> [1, 5, 7]; '3' -> [3]; mixed: '0-3,10' (ranges inclusive)."""
    seeds: list[int] = []
    for part in str(text).split(","):
        m = re.fullmatch(r"\s*(\d+)(?:\s*-\s*(\d+))?\s*", part)
        if not m or int(m.group(2) or m.group(1)) < int(m.group(1)):
            raise ArgumentError(f"seeds must look like 0-99 or 1,5,7 (ranges run upwards), not {text!r}")
        seeds.extend(range(int(m.group(1)), int(m.group(2) or m.group(1)) + 1))
    return seeds

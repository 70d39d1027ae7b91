"""Shared test fixtures: where the official-checkpoint fixtures live, and a quiet, 1-thread torch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(
            f"checkpoint fixtures not found at {FIXTURES} (the official-format checkpoint fixtures; see tests/fixtures/README.md)"
        )
    return FIXTURES


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO

"""Shared test fixtures: where the official-checkpoint fixtures live, a quiet, 1-thread torch, and a
configuration folder of the session's own (the AOT packages it compiles are recorded there, not in
the user's ~/.config/cityserve)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"

torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def own_config_dir(tmp_path_factory):
    before = os.environ.get("CITYSERVE_CONFIG_DIR")
    os.environ["CITYSERVE_CONFIG_DIR"] = str(tmp_path_factory.mktemp("cityserve-config"))
    yield Path(os.environ["CITYSERVE_CONFIG_DIR"])
    if before is None:
        os.environ.pop("CITYSERVE_CONFIG_DIR", None)
    else:
        os.environ["CITYSERVE_CONFIG_DIR"] = before


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

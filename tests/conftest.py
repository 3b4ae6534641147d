"""Shared fixtures: the data folder that CI keeps beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """`../shared/data` beside the checkout, or `$REST_MCTS_SHARED_DATA`."""
    return Path(os.environ.get("REST_MCTS_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.fail(f"test data folder {path} is missing; CI keeps ../shared/data beside the checkout")
    return path

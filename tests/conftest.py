"""Shared fixtures: the data folder that CI keeps beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """`../shared/data` beside the checkout, or `$REST_MCTS_SHARED_DATA`."""
    return Path(os.environ.get("REST_MCTS_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session", autouse=True)
def single_torch_thread():
    """The test models are tiny: one thread avoids oversubscription, which made them
    up to 100x slower whenever anything else ran on the two cores."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.fail(f"test data folder {path} is missing; CI keeps ../shared/data beside the checkout")
    return path

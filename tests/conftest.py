"""Shared fixtures: the data folder that CI keeps beside the checkout."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


def load_benchmark(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Import ``benchmarks/<name>.py`` (a script, not a package module) for the duration of one test.

    It is registered in ``sys.modules`` while it runs, since dataclasses with postponed
    annotations look their module up there; `monkeypatch` removes it afterwards.
    """
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


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


@pytest.fixture(scope="session", autouse=True)
def wandb_offline(tmp_path_factory):
    """W&B never goes online in tests (the CLI logs by default): without the developer's
    W&B variables the library's rule (`agents.integrations.wandb_logging.resolve_mode`)
    picks offline; caches and staging go to a temporary folder, and runs to each
    command's own folder (no WANDB_DIR). WANDB_MODE is unset rather than set to
    offline, which would make transformers print a line on import."""
    home = tmp_path_factory.mktemp("wandb-home")
    with pytest.MonkeyPatch.context() as patch:
        for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_SWEEP_ID", "WANDB_DIR", "WANDB_DISABLED", "WANDB_PROJECT",
                     "WANDB_ENTITY"):  # fmt: skip
            patch.delenv(name, raising=False)
        for name in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
            patch.setenv(name, str(home / name.lower()))
        yield


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory) -> tuple[str, str]:
    """(policy, PRM) folders of a random-initialised tiny Llama pair saved with
    `save_pretrained`, for tests that load models from disk as a user would."""
    from agents.models.tiny import TinyModelConfig, build_char_tokenizer, build_policy_model, build_value_model

    small = TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_positions=512)
    folder = tmp_path_factory.mktemp("models")
    tokenizer = build_char_tokenizer()
    torch.manual_seed(0)
    for name, build in (("policy", build_policy_model), ("value", build_value_model)):
        build(small, tokenizer).save_pretrained(folder / name)
        tokenizer.save_pretrained(folder / name)
    return str(folder / "policy"), str(folder / "value")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.fail(f"test data folder {path} is missing; CI keeps ../shared/data beside the checkout")
    return path

"""The bootstrap of Algorithm 1: train pi_0 (policy) and V_0 (PRM) from scratch, offline.

    problems  = synthetic training split with reference steps
    pi_0      = SFT of a tiny Llama on D_S0 (solutions + arithmetic drills)   [TRL SFTTrainer]
    V_0       = pi_0's backbone + a scalar head, soft-target regression on D_V0   [transformers Trainer]

Both models are cached under ``$REST_MCTS_HOME`` in folders keyed by a hash of the
config that shapes them (see `agents.artifacts`): a second call reuses them, a
changed config builds anew, and an interrupted build leaves nothing that loads.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import set_seed

from agents.artifacts import artifact_dir, build_atomically, read_manifest
from agents.config import to_dict
from agents.models.hf_policy import HFPolicy
from agents.models.hf_value import HFValueModel
from agents.models.loading import load_value_backbone
from agents.models.tiny import TinyModelConfig, build_policy_model, build_tokenizer
from agents.training.bootstrap_data import policy_dataset, value_dataset
from agents.training.policy_sft import SFTSettings, train_policy
from agents.training.value_training import ValueSettings, train_value_model
from reasoning_gym import ProblemSet, make_source, render_state

FORMAT_VERSION = 3  # bump when a change to the code alters what a config builds


@dataclass(frozen=True)
class BootstrapConfig:
    """Everything that shapes pi_0 and V_0.

    Attributes:
        seed: seeds problem generation, initialisation and training.
        difficulty: synthetic difficulty of the training problems: a preset name
            (see `reasoning_gym.sources.synthetic.DIFFICULTIES`) or a mapping of
            `SyntheticConfig` fields.
        train_problems: size of the synthetic training split used.
        drill_fraction: share of bare arithmetic drills in D_S0.
        model: shape of both tiny models.
        policy: SFT hyperparameters of pi_0.
        value: regression hyperparameters of V_0.
    """

    seed: int = 0
    difficulty: str | dict[str, Any] = "basic"
    train_problems: int = 20000
    drill_fraction: float = 0.3
    model: TinyModelConfig = field(default_factory=TinyModelConfig)
    policy: SFTSettings = field(default_factory=lambda: SFTSettings(max_steps=900, batch_size=32, learning_rate=3e-3))
    value: ValueSettings = field(default_factory=lambda: ValueSettings(max_steps=300, batch_size=32))

    def __post_init__(self) -> None:
        if not 0 <= self.drill_fraction < 1:
            raise ValueError(f"BootstrapConfig.drill_fraction must be in [0, 1), got {self.drill_fraction}")
        if self.train_problems < 1:
            raise ValueError(f"BootstrapConfig.train_problems must be >= 1, got {self.train_problems}")
        self.model.validate()

    def data_config(self) -> dict[str, Any]:
        return {"seed": self.seed, "difficulty": self.difficulty, "train_problems": self.train_problems}

    def policy_key(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            **self.data_config(),
            "drill_fraction": self.drill_fraction,
            "model": to_dict(self.model),
            "policy": to_dict(self.policy),
        }

    def value_key(self) -> dict[str, Any]:
        # V_0 starts from pi_0's backbone, so it depends on everything pi_0 does.
        return {**self.policy_key(), "value": to_dict(self.value)}


@dataclass(frozen=True)
class BootstrapResult:
    """Where pi_0 and V_0 live, and what their manifests say."""

    policy_dir: Path
    value_dir: Path
    policy_manifest: dict[str, Any]
    value_manifest: dict[str, Any]

    def load(self, device: str | None = None) -> tuple[HFPolicy, HFValueModel]:
        """Load both models (plain prompt format, as they were trained)."""
        policy = HFPolicy.from_pretrained(str(self.policy_dir), device=device, prompt_format="plain")
        return policy, HFValueModel.from_pretrained(str(self.value_dir), device=device)


def training_problems(config: BootstrapConfig) -> ProblemSet:
    return make_source(
        "synthetic", split="train", size=config.train_problems, seed=config.seed, difficulty=config.difficulty
    )


def bootstrap(config: BootstrapConfig | None = None, home: Path | None = None, show_progress: bool = True) -> BootstrapResult:
    """Build (or reuse) pi_0 and V_0 for `config`; returns their folders and manifests."""
    config = config or BootstrapConfig()
    policy_dir = artifact_dir("policy", config.policy_key(), home)
    value_dir = artifact_dir("value", config.value_key(), home)
    problems: ProblemSet | None = None

    def problems_once() -> ProblemSet:
        nonlocal problems
        problems = problems or training_problems(config)
        return problems

    def build_policy(out: Path) -> dict[str, Any]:
        set_seed(config.seed)
        corpus = (render_state(p.question, p.steps) for p in problems_once())
        tokenizer = build_tokenizer(config.model, corpus)
        model = build_policy_model(config.model, tokenizer)
        data = policy_dataset(problems_once().problems, tokenizer.eos_token, config.drill_fraction, config.seed)
        started = time.time()
        train_policy(model, tokenizer, data, config.policy, str(out / "trainer"), config.seed, show_progress)
        _save(model, tokenizer, out)
        return {"parameters": model.num_parameters(), "train_seconds": round(time.time() - started, 1), "examples": len(data)}

    def build_value(out: Path) -> dict[str, Any]:
        set_seed(config.seed)
        # The PRM starts from pi_0's backbone (it already reads problems and does
        # arithmetic) with a fresh scalar head, which learns far faster than from scratch.
        model, tokenizer = load_value_backbone(str(policy_dir))
        data = value_dataset(problems_once().problems, config.seed)
        started = time.time()
        train_value_model(model, tokenizer, data, config.value, str(out / "trainer"), config.seed, show_progress)
        _save(model, tokenizer, out)
        return {"parameters": model.num_parameters(), "train_seconds": round(time.time() - started, 1), "examples": len(data)}

    policy_manifest = build_atomically(policy_dir, config.policy_key(), build_policy)
    value_manifest = build_atomically(value_dir, config.value_key(), build_value)
    return BootstrapResult(policy_dir, value_dir, policy_manifest, value_manifest)


def _save(model: torch.nn.Module, tokenizer, out: Path) -> None:
    """Save weights and tokenizer, dropping the trainer's scratch folder."""
    shutil.rmtree(out / "trainer", ignore_errors=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def cached_result(config: BootstrapConfig | None = None, home: Path | None = None) -> BootstrapResult | None:
    """The bootstrap result for `config` if both models are already built, else None."""
    config = config or BootstrapConfig()
    policy_dir = artifact_dir("policy", config.policy_key(), home)
    value_dir = artifact_dir("value", config.value_key(), home)
    if (policy_dir / "manifest.json").is_file() and (value_dir / "manifest.json").is_file():
        return BootstrapResult(policy_dir, value_dir, read_manifest(policy_dir), read_manifest(value_dir))
    return None


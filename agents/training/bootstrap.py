"""The bootstrap of Algorithm 1: train pi_0 (policy) and V_0 (PRM) from scratch, offline.

    problems  = the training split of a source with reference steps
    pi_0      = SFT of a tiny Llama on D_S0                                   [TRL SFTTrainer]
    V_0       = pi_0's backbone + a scalar head, soft-target regression on D_V0   [transformers Trainer]

What D_S0 and D_V0 hold depends on the task of the problems (`TASK_DATA`):

- answer tasks (synthetic word problems): reference solutions plus arithmetic
  drills; reference prefixes and corrupted steps (`bootstrap_data`);
- planning tasks (Countdown, Game of 24): several random solver solutions per
  puzzle; the states of pi_0's own samples labelled from exact distances to a
  solution (`planning_data`).

Both models are cached under ``$REST_MCTS_HOME`` in folders keyed by a hash of the
config that shapes them (see `agents.artifacts`): a second call reuses them, a
changed config builds anew, and an interrupted build leaves nothing that loads.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import set_seed

from agents.artifacts import artifact_dir, build_atomically, is_complete, read_manifest
from agents.config import to_dict
from agents.models.hf_policy import HFPolicy
from agents.models.hf_value import HFValueModel
from agents.models.loading import load_value_backbone
from agents.models.tiny import TinyModelConfig, build_policy_model, build_tokenizer
from agents.training import bootstrap_data, planning_data
from agents.training.policy_sft import SFTSettings, train_policy
from agents.training.value_training import ValueSettings, train_value_model
from agents.models.base import SamplingConfig
from reasoning_gym import ProblemSet, make_source, render_state
from reasoning_gym.sources.base import source_kwargs
from reasoning_gym.sources.puzzles import excluded_keys, in_split, resolve_countdown

FORMAT_VERSION = 5  # bump when a change to the code alters what a config builds
VALUE_FORMAT_VERSION = 4  # bump when a change alters V_0 alone (what the PRM reads, its data); pi_0 stays cached

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlanningDataSettings:
    """How D_S0 and D_V0 are built for planning tasks (ignored for word problems).

    Attributes:
        solutions: random solver solutions per training puzzle in D_S0.
        value_problems: training puzzles pi_0 samples on for D_V0.
        value_samples: pi_0 samples per puzzle; every state of each is labelled.
        value_temperature: pi_0's sampling temperature for D_V0.
        value_walks: random legal-move walks per training puzzle (all of them)
            whose states are added to D_V0 (0: none).
        value_all_states: add every state that legal moves reach from each
            training puzzle (three numbers: about 40 per puzzle; four: thousands,
            so walks suit larger puzzles). It is what taught V_0 to judge final
            states: each puzzle brings all of its solutions.
        value_target_variants: per training puzzle, this many puzzles with the same
            numbers and another target of the level (Countdown), solvable or not,
            whose open states are added to D_V0 (0: none; see
            `planning_data.target_variant_rows`). Variants another split holds, or
            `BootstrapConfig.exclude` lists, are skipped.
        value_one_row_per_board: D_V0 keeps one row per distinct board the PRM
            reads (`value_text`), labelled with the mean label of its states. With one
            row per state most rows are finished states, whose verdict the engine
            states; per board, the open boards search has to rank are most of them.
        value_balance: at each depth, repeat the rows still on a path to a correct
            answer until they weigh as much as the dead ones
            (`value_training.live_repeats`): few open boards of a deep level
            can still make the target, and without it the PRM learns the base rate.
        value_finished_fraction: share of the rows of finished states (an answer
            stated) D_V0 keeps, drawn at random (1.0: all). The engine states its
            verdict on a finished expression, so a few of them teach the PRM to
            read it; the steps the rest would take go to the open boards.
        max_new_tokens: cap per sampled solution.
    """

    solutions: int = 3
    value_problems: int = 2000
    value_samples: int = 8
    value_temperature: float = 1.0
    value_walks: int = 0
    value_all_states: bool = False
    value_target_variants: int = 0
    value_one_row_per_board: bool = False
    value_balance: bool = False
    value_finished_fraction: float = 1.0
    max_new_tokens: int = 160

    def __post_init__(self) -> None:
        for name in ("value_walks", "value_target_variants"):
            if getattr(self, name) < 0:
                raise ValueError(f"PlanningDataSettings.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("solutions", "value_problems", "value_samples", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"PlanningDataSettings.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.value_finished_fraction <= 1:
            raise ValueError(f"PlanningDataSettings.value_finished_fraction must be in (0, 1], got {self.value_finished_fraction}")


_LATER_PLANNING_FIELDS = ("value_target_variants", "value_one_row_per_board", "value_balance", "value_finished_fraction")
"""PlanningDataSettings fields added after models were cached: at their default they stay out of the key."""


@dataclass(frozen=True)
class BootstrapConfig:
    """Everything that shapes pi_0 and V_0.

    Attributes:
        seed: seeds problem generation, initialisation and training.
        source: the problem source of the training problems: "synthetic" (word
            problems), "countdown" or "game24" (planning).
        difficulty: difficulty of the training problems: a preset name of the
            source (`reasoning_gym.sources.synthetic.DIFFICULTIES`,
            `reasoning_gym.sources.puzzles.COUNTDOWN_PRESETS`) or a mapping of its
            config fields.
        train_problems: size of the training split used.
        exclude: a file of puzzles kept out of D_S0 and D_V0 (planning sources;
            e.g. a published test set, see `read_puzzle_file`); self-training
            holds puzzles out with its own ``train_problems.options.exclude``.
        drill_fraction: share of bare arithmetic drills in D_S0 (word problems).
        planning: D_S0 / D_V0 settings of planning tasks.
        model: shape of both tiny models.
        policy: SFT hyperparameters of pi_0.
        value: regression hyperparameters of V_0.
    """

    seed: int = 0
    source: str = "synthetic"
    difficulty: str | dict[str, Any] = "basic"
    train_problems: int = 20000
    exclude: str | None = None
    drill_fraction: float = 0.3
    planning: PlanningDataSettings = field(default_factory=PlanningDataSettings)
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
        data = {"seed": self.seed, "source": self.source, "difficulty": self.difficulty, "train_problems": self.train_problems}
        if self.exclude is not None:
            data["exclude"] = self.exclude
        return data

    def policy_key(self) -> dict[str, Any]:
        data = {"drill_fraction": self.drill_fraction} if self.task == "answer" else {"solutions": self.planning.solutions}
        return {
            "format": FORMAT_VERSION,
            **self.data_config(),
            **data,
            "model": to_dict(self.model),
            "policy": to_dict(self.policy),
        }

    def value_key(self) -> dict[str, Any]:
        # V_0 starts from pi_0's backbone, so it depends on everything pi_0 does.
        data = {} if self.task == "answer" else {"planning": to_dict(self.planning)}
        defaults = {f.name: f.default for f in fields(PlanningDataSettings)}
        for name in _LATER_PLANNING_FIELDS:
            if data and data["planning"][name] == defaults[name]:
                del data["planning"][name]  # added later: models built without it keep their key
        return {**self.policy_key(), "value_format": VALUE_FORMAT_VERSION, **data, "value": to_dict(self.value)}

    @property
    def task(self) -> str:
        """The task of the training problems (the first one's; a source has one task)."""
        return training_problems(replace(self, train_problems=1))[0].task


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
    """The training split of the config's source (puzzles in `exclude` left out)."""
    kwargs = source_kwargs(
        config.source,
        split="train",
        size=config.train_problems,
        seed=config.seed,
        difficulty=config.difficulty,
        exclude=config.exclude,
    )
    return make_source(config.source, **kwargs)


def _word_policy_data(config: BootstrapConfig, problems: ProblemSet, eos: str):
    return bootstrap_data.policy_dataset(problems.problems, eos, config.drill_fraction, config.seed)


def _word_value_data(config: BootstrapConfig, problems: ProblemSet, policy_dir: Path, progress: bool):
    return bootstrap_data.value_dataset(problems.problems, config.seed)


def _planning_policy_data(config: BootstrapConfig, problems: ProblemSet, eos: str):
    return planning_data.policy_dataset(problems.problems, eos, config.planning.solutions, config.seed)


def _planning_value_data(config: BootstrapConfig, problems: ProblemSet, policy_dir: Path, progress: bool):
    settings = config.planning
    policy = HFPolicy.from_pretrained(str(policy_dir), prompt_format="plain")
    sampling = SamplingConfig(temperature=settings.value_temperature, max_new_tokens=settings.max_new_tokens, seed=config.seed)
    chosen = problems.problems[: settings.value_problems]
    rows = planning_data.value_rows(
        policy, chosen, settings.value_samples, sampling, problems.problems, settings.value_walks, config.seed,
        all_states=settings.value_all_states, show_progress=progress,
    )
    if settings.value_target_variants:
        rows.update(_target_variant_rows(config, problems, progress))
    return planning_data.value_dataset(rows, config.seed, per_board=settings.value_one_row_per_board,
                                      balance=settings.value_balance, finished_fraction=settings.value_finished_fraction)


def _target_variant_rows(config: BootstrapConfig, problems: ProblemSet, progress: bool):
    if config.source != "countdown":
        raise ValueError(f"planning.value_target_variants needs the countdown source (a target range), "
                         f"not {config.source!r}")  # fmt: skip
    level = resolve_countdown(config.difficulty)[1]
    excluded = excluded_keys(config.exclude)
    return planning_data.target_variant_rows(
        problems.problems,
        config.planning.value_target_variants,
        range(level.min_target, level.max_target + 1),
        keep=lambda puzzle: in_split(puzzle, "train", excluded),
        seed=config.seed,
        show_progress=progress,
    )


TASK_DATA = {
    "answer": (_word_policy_data, _word_value_data),
    "countdown": (_planning_policy_data, _planning_value_data),
}
"""task name -> (D_S0 builder, D_V0 builder)."""


def _data_builders(problems: ProblemSet):
    """(D_S0 builder, D_V0 builder) of the problems' task."""
    task = problems[0].task
    if task not in TASK_DATA:
        raise ValueError(f"the bootstrap has no training data builder for task {task!r}; known: {sorted(TASK_DATA)}")
    return TASK_DATA[task]


def value_training_data(config: BootstrapConfig, home: Path | None = None, show_progress: bool = True) -> Dataset:
    """D_V0 of `config` as the V_0 build made it (the same rows in the same order: same
    seeds, same pi_0), for training that replays it (`SelfTrainConfig.value.replay`).

    Raises:
        ValueError: pi_0 of `config` is not built yet (run `bootstrap` first).
    """
    policy_dir = artifact_dir("policy", config.policy_key(), home)
    if not is_complete(policy_dir):
        raise ValueError(f"D_V0 is sampled from pi_0, which is not built yet in {policy_dir}: run the bootstrap first")
    return _value_data(config, training_problems(config), policy_dir, show_progress)


def _value_data(config: BootstrapConfig, problems: ProblemSet, policy_dir: Path, show_progress: bool) -> Dataset:
    """D_V0 from `problems` and the pi_0 in `policy_dir`; the one place it is built, seeded the
    same way for the V_0 build and for a replay (`value_training_data`)."""
    set_seed(config.seed)
    return _data_builders(problems)[1](config, problems, policy_dir, show_progress)


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
        data = _data_builders(problems_once())[0](config, problems_once(), tokenizer.eos_token)
        logger.info("pi_0: SFT of a %s-parameter model on %d examples, %d steps",
                    f"{model.num_parameters():,}", len(data), config.policy.max_steps)  # fmt: skip
        started = time.time()
        train_policy(model, tokenizer, data, config.policy, str(out / "trainer"), config.seed, show_progress,
                     description="train pi_0 (SFT)")  # fmt: skip
        _save(model, tokenizer, out)
        return {"parameters": model.num_parameters(), "train_seconds": round(time.time() - started, 1), "examples": len(data)}

    def build_value(out: Path) -> dict[str, Any]:
        # The PRM starts from pi_0's backbone (it already reads problems and does
        # arithmetic) with a fresh scalar head, which learns far faster than from scratch.
        data = _value_data(config, problems_once(), policy_dir, show_progress)
        set_seed(config.seed)
        model, tokenizer = load_value_backbone(str(policy_dir))
        logger.info("V_0: regression of pi_0's backbone plus a scalar head on %d labelled rows, %d steps",
                    len(data), config.value.max_steps)  # fmt: skip
        started = time.time()
        train_value_model(model, tokenizer, data, config.value, str(out / "trainer"), config.seed, show_progress,
                          description="train V_0 (PRM)")  # fmt: skip
        _save(model, tokenizer, out)
        return {"parameters": model.num_parameters(), "train_seconds": round(time.time() - started, 1), "examples": len(data)}

    _announce("pi_0", policy_dir)
    policy_manifest = build_atomically(policy_dir, config.policy_key(), build_policy)
    _announce("V_0", value_dir)
    value_manifest = build_atomically(value_dir, config.value_key(), build_value)
    return BootstrapResult(policy_dir, value_dir, policy_manifest, value_manifest)


def _announce(name: str, folder: Path) -> None:
    if is_complete(folder):
        logger.debug("%s: cached in %s", name, folder)
    else:
        logger.info("%s: building %s", name, folder)


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


"""ReST-MCTS* self-training (Zhang et al. 2024, Algorithm 1) and its baselines, resumable by stage.

Iteration 0 is the starting pair (pi_0, V_0): the bootstrap models, or explicit
folders; it is only evaluated. Iteration i >= 1 runs five stages:

    search   collect data with pi_{i-1}, V_{i-1} on the training questions:
             rest_mcts, weighted_nll: MCTS* in data mode (every answer graded
               against the oracle), batched (the batches on Ray workers with
               `SelfTrainConfig.ray`: `search_batch`), then `label_tree` on every tree;
             rest_em: CoT samples, the correct ones kept (`rest_em`);
             self_rewarding: CoT samples judged by V_{i-1}, best vs worst (`self_rewarding`);
             the baselines sample as many policy completion tokens as the
             ReST-MCTS* search spent (`TokenMatching`).
    buffer   append the rows to the run's `EpisodeBuffer` (run_dir/buffer/iteration_i/...)
    policy   pi_i: TRL SFTTrainer on the positive traces (rest_mcts, rest_em; full
             fine-tuning or LoRA, from pi_{i-1} or from pi_0), TRL DPOTrainer on the
             pairs (self_rewarding), or weighted NLL + KL (weighted_nll)
    value    V_i: soft-target PRM regression on the new value rows, from V_{i-1}
             (rest_mcts; the baselines keep V_{i-1} unless value.train is set)
    eval     greedy CoT accuracy and MCTS* accuracy at a fixed budget on the held-out
             problems (and the PRM's AUROC when the problems have reference steps)

Layout of a run directory::

    run_dir/
      config.json                    the config the run was started with
      buffer/iteration_i/{policy,value,pairs,relative}   HF datasets on disk
      iteration_i/
        search/                      trees.jsonl or samples.jsonl, targets.json, manifest.json
        policy/  value/              saved models (save_pretrained + manifest.json)
        stages/{search,buffer,policy,value,eval}.json   stage markers (the stage's record)
        record.json                  the iteration's record: metrics, rows, tokens, wall time

Resuming. A stage is done when its marker exists; markers are written (temp file,
fsync, rename) only after everything the stage produced is committed: model
folders and the search folder through `agents.artifacts.build_atomically` (temp
folder + rename), buffers through `EpisodeBuffer`'s atomic appends (the buffer
stage first deletes any partial buffer of its iteration, so a re-run never appends
twice). Re-running the same command after an interruption (even ``kill -9``)
skips done stages and continues with the first missing one. Every stage reads its
inputs from disk (never from memory of an earlier stage) and is seeded from
``(seed, iteration, stage)`` (`stage_seed`), so a resumed run produces the same
models, rows and metrics as an uninterrupted one. Evaluation uses one seed for all
iterations (common random numbers, so iterations differ by their models only).
A run directory is bound to its config: re-running with a different config
(``run_dir``, ``iterations`` and ``show_progress`` aside) is an error. Stage
records hold no paths, so a run directory may be moved or resumed from elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from datasets import Dataset, concatenate_datasets
from tqdm.auto import tqdm
from transformers import set_seed

from agents.artifacts import build_atomically, write_json_atomically
from agents.compare import ProblemsConfig
from agents.config import ConfigError, apply_overrides, from_dict, load_yaml, to_dict
from agents.integrations.ray_runner import RayConfig
from agents.search.budget import Budget
from agents.search.mcts_star import MCTSStar, MCTSStarConfig
from agents.training.bootstrap import BootstrapConfig
from agents.training.buffers import EpisodeBuffer
from agents.training.policy_sft import SFTSettings
from agents.training.rest_em import RestEMSettings
from agents.training.self_rewarding import SelfRewardingSettings
from agents.training.tree_targets import TreeTargets, label_tree
from agents.training.value_training import ValueSettings, live_repeats, rehearsal_rows
from agents.training.weighted_nll import WeightedNLLSettings
from reasoning_gym import EpisodeLimits, Problem, get_task, grade

METHODS = ("rest_mcts", "rest_em", "self_rewarding", "weighted_nll")
STAGES = ("search", "buffer", "policy", "value", "eval")
TREE_SEARCH_METHODS = frozenset({"rest_mcts", "weighted_nll"})
_UNBOUND = ("run_dir", "iterations", "show_progress", "ray", "wandb")  # config fields a resumed run may change

logger = logging.getLogger(__name__)


# --- config --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSources:
    """Where pi_0 and V_0 come from.

    Attributes:
        bootstrap: the `BootstrapConfig` of the bundled tiny models (built on first
            use, then cached); also the default difficulty of synthetic problems.
        policy: a folder (or Hub id) of pi_0 instead of the bootstrap's.
        value: a PRM folder of V_0 instead of the bootstrap's.
        device: "cpu", "cuda", ...; None: CUDA when available.
        prompt_format: `HFPolicyConfig.prompt_format` of the policy; training rows
            are in the plain ``"Problem: ...\\nSolution:\\n"`` format, so keep "plain"
            unless the rows are rendered for a chat template.
    """

    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)
    policy: str | None = None
    value: str | None = None
    device: str | None = None
    prompt_format: str = "plain"


DEFAULT_MCTS: dict[str, Any] = {
    "iterations": 16,
    "branch": 3,
    "max_new_tokens": 48,
    "roll_forward_steps": 1,
    "max_retries": 1,
    "temperature": 0.7,
}


@dataclass(frozen=True)
class SearchSettings:
    """MCTS* in data mode on the training questions.

    Attributes:
        mcts: `MCTSStarConfig` fields (``data_mode`` is forced on; ``seed`` is set
            per iteration by `stage_seed`).
        budget: per-problem budget of the search.
        limits: episode limits.
        batch_size: problems searched in lockstep (one batched model call per round);
            each batch has its own seed and can go to its own Ray worker.
        max_pairs: preference pairs kept per tree (None: all).
    """

    mcts: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_MCTS))
    budget: Budget = field(default_factory=lambda: Budget(completion_tokens=2000))
    limits: EpisodeLimits = field(default_factory=lambda: EpisodeLimits(max_steps=8))
    batch_size: int = 32
    max_pairs: int | None = 4

    def __post_init__(self) -> None:
        mcts_config(self.mcts, seed=0)  # fails early, naming a bad key
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


@dataclass(frozen=True)
class LoraSettings:
    """LoRA through PEFT (`peft.LoraConfig`); the adapters are merged into the saved policy."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: Any = "all-linear"

    def peft_config(self):
        from peft import LoraConfig

        modules = list(self.target_modules) if isinstance(self.target_modules, (list, tuple)) else self.target_modules
        return LoraConfig(
            r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout, target_modules=modules, task_type="CAUSAL_LM"
        )


@dataclass(frozen=True)
class PolicyTraining:
    """How pi_i is trained (SFT for rest_mcts and rest_em; the other methods have their own settings).

    Attributes:
        sft: TRL SFT settings (prompt/completion rows; loss on the completion only).
        lora: LoRA settings, or None for full fine-tuning (SFT methods only; DPO and
            weighted NLL fine-tune fully). The adapters are merged before saving.
        from_previous: start from pi_{i-1}; False starts every iteration from pi_0
            (all methods).
        accumulate: train on the rows of iterations 1..i, not only iteration i (all methods).
        max_epochs: cap on passes over the iteration's rows (all methods): the trainer
            runs min(max_steps, ceil(max_epochs x rows / batch_size)) steps, so a
            small harvest is not memorised (measured: 35 traces x 45 epochs made
            greedy accuracy fall from 0.25 to 0.17). None: always max_steps.
    """

    sft: SFTSettings = field(
        default_factory=lambda: SFTSettings(
            max_steps=200, batch_size=16, learning_rate=1e-4, completion_only_loss=True, logging_steps=50
        )
    )
    lora: LoraSettings | None = None
    from_previous: bool = True
    accumulate: bool = False
    max_epochs: float | None = 3.0


@dataclass(frozen=True)
class ValueTraining:
    """How V_i is trained: always from V_{i-1}.

    Attributes:
        train: train the PRM; None: the method's default (rest_mcts yes, baselines no).
        settings: regression settings.
        accumulate: train on the value rows of iterations 1..i, not only iteration i.
        max_epochs: cap on passes over the rows, as for the policy; None: always max_steps.
        balance: repeat the rows still on a path to a correct answer (target > 0)
            until they weigh as much as the dead ones at each depth
            (`value_training.live_repeats`), as `planning.value_balance` does for
            D_V0. Most nodes of a search tree are dead ends; on Countdown `easy`
            (`self_train_1600_balanced.yaml`, 2 seeds) it did not lift V_2 above
            V_0 among siblings (README, "Balancing the tree rows does not fix it").
        replay: rehearsal of D_V0, the bootstrap's exactly labelled rows: this many
            D_V0 rows per tree row are trained on beside the tree rows, so D_V0
            makes replay / (1 + replay) of the mixture (seeded per iteration;
            D_V0 is repeated, in fresh orders, when it has fewer rows:
            `value_training.rehearsal_rows`).
            Fine-tuned on tree rows alone, V_i learned to value the boards the
            trees hold (mostly dead ends) and lost some of V_0's ranking of boards
            they do not. Needs the bootstrap's models (``models.policy`` and
            ``models.value`` unset): D_V0 is rebuilt from pi_0 on first use. 0: off.
    """

    train: bool | None = None
    settings: ValueSettings = field(
        default_factory=lambda: ValueSettings(max_steps=200, batch_size=32, learning_rate=2e-4, logging_steps=50)
    )
    accumulate: bool = False
    max_epochs: float | None = 3.0
    balance: bool = False
    replay: float = 0.0

    def __post_init__(self) -> None:
        if self.replay < 0:
            raise ValueError(f"replay must be >= 0, got {self.replay}")


@dataclass(frozen=True)
class EvalSettings:
    """Held-out evaluation after every iteration.

    Attributes:
        problems: the held-out problems (default: 100 synthetic test problems).
        greedy_max_new_tokens: cap per greedy CoT solution.
        mcts: `MCTSStarConfig` fields of the evaluation search (``seed`` set by the trainer).
        budget: per-problem budget of the evaluation search (fixed across iterations).
        limits: episode limits.
        batch_size: problems searched at once (refill, `agents.search.scheduler`).
        prm_auroc: also report the PRM's AUROC: planning tasks against exact
            solvability on the policy's own states (pooled and among siblings);
            word problems with reference steps, correct vs corrupted steps.
    """

    problems: ProblemsConfig = field(default_factory=lambda: ProblemsConfig(split="test", size=100))
    greedy_max_new_tokens: int = 320
    mcts: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_MCTS))
    budget: Budget = field(default_factory=lambda: Budget(completion_tokens=1000))
    limits: EpisodeLimits = field(default_factory=lambda: EpisodeLimits(max_steps=8))
    batch_size: int = 50
    prm_auroc: bool = True

    def __post_init__(self) -> None:
        mcts_config(self.mcts, seed=0)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


@dataclass(frozen=True)
class TokenMatching:
    """How many policy completion tokens a sampling baseline (rest_em, self_rewarding) spends per iteration.

    The first that applies: `tokens_per_iteration`; the ReST-MCTS* run in
    `match_run` (its iteration-i search's sampled tokens); else the search budget's
    ``completion_tokens`` x the number of training problems (an upper bound of
    what the search could spend).
    """

    tokens_per_iteration: int | None = None
    match_run: str | None = None


@dataclass(frozen=True)
class SelfTrainConfig:
    """Everything one self-training run needs (``configs/self_train.yaml`` is this in YAML).

    Attributes:
        run_dir: where the run's buffers, models, markers and records go.
        method: "rest_mcts", "rest_em", "self_rewarding" or "weighted_nll".
        iterations: self-training iterations after iteration 0.
        seed: seeds every stage (with the iteration and the stage name).
        models: pi_0 and V_0.
        train_problems: the training questions (with oracle answers); default 200
            synthetic train problems of generator seed 1 (not the bootstrap's).
        search: MCTS* data-mode search (rest_mcts, weighted_nll).
        policy: policy SFT (rest_mcts, rest_em).
        value: PRM training.
        eval: held-out evaluation.
        baseline_tokens: token matching of the sampling baselines.
        rest_em, self_rewarding, weighted_nll: each baseline's settings.
        show_progress: progress bars.
        ray: run the MCTS* search stage's batches on Ray workers (each loads the
            models from their folders; see `agents.integrations.ray_runner`);
            None: in this process. The trees and rows are the same either way.
        wandb: log the run to Weights & Biases when run by ``rest-mcts self-train``
            (offline unless W&B credentials are set; see
            `agents.integrations.wandb_logging`); ``--no-wandb`` also turns it off.
    """

    run_dir: str = "runs/self_train"
    method: str = "rest_mcts"
    iterations: int = 2
    seed: int = 0
    models: ModelSources = field(default_factory=ModelSources)
    train_problems: ProblemsConfig = field(default_factory=lambda: ProblemsConfig(split="train", size=200, seed=1))
    search: SearchSettings = field(default_factory=SearchSettings)
    policy: PolicyTraining = field(default_factory=PolicyTraining)
    value: ValueTraining = field(default_factory=ValueTraining)
    eval: EvalSettings = field(default_factory=EvalSettings)
    baseline_tokens: TokenMatching = field(default_factory=TokenMatching)
    rest_em: RestEMSettings = field(default_factory=RestEMSettings)
    self_rewarding: SelfRewardingSettings = field(default_factory=SelfRewardingSettings)
    weighted_nll: WeightedNLLSettings = field(default_factory=WeightedNLLSettings)
    show_progress: bool = True
    ray: RayConfig | None = None
    wandb: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.wandb, bool):
            raise ValueError(f"wandb must be true or false, got {self.wandb!r}")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {list(METHODS)}, got {self.method!r}")
        if self.iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {self.iterations}")
        if self.value.replay > 0 and (self.models.policy is not None or self.models.value is not None):
            raise ValueError("value.replay replays the bootstrap's D_V0, so pi_0 and V_0 must be the "
                             "bootstrap's: leave models.policy and models.value unset")  # fmt: skip

    @property
    def train_value(self) -> bool:
        return self.method == "rest_mcts" if self.value.train is None else self.value.train

    def bound_fields(self) -> dict[str, Any]:
        """The config as plain data without the fields a resumed run may change."""
        data = to_dict(self)
        for name in _UNBOUND:
            data.pop(name)
        return json.loads(json.dumps(data, default=str))


def load_config(path: str | Path, sets: Sequence[str] = (), **overrides: Any) -> SelfTrainConfig:
    """A `SelfTrainConfig` from YAML (ConfigError naming a bad key); `overrides` replace top-level fields.

    ``models.bootstrap`` may name a `BootstrapConfig` YAML file instead of holding its fields.
    `sets` are ``KEY.PATH=VALUE`` overrides of nested keys (``--set``, `apply_overrides`),
    applied after ``models.bootstrap`` is read, so ``models.bootstrap.seed=1`` works too.
    """
    data = load_yaml(path)
    data.update({k: v for k, v in overrides.items() if v is not None})
    models = data.get("models")
    if isinstance(models, dict) and isinstance(models.get("bootstrap"), str):
        models["bootstrap"] = load_yaml(models["bootstrap"])
    return from_dict(SelfTrainConfig, apply_overrides(data, sets), where=str(path))


def mcts_config(options: dict[str, Any], seed: int, data_mode: bool = False) -> MCTSStarConfig:
    """`MCTSStarConfig` from `options` with `seed` and `data_mode` set."""
    return from_dict(MCTSStarConfig, {**options, "seed": seed, "data_mode": data_mode}, where="mcts")


def capped_steps(settings: Any, rows: int, max_epochs: float | None) -> Any:
    """`settings` (a dataclass with ``max_steps`` and ``batch_size``) with at most `max_epochs` passes over `rows`."""
    if max_epochs is None:
        return settings
    cap = max(1, math.ceil(max_epochs * rows / settings.batch_size))
    return replace(settings, max_steps=min(settings.max_steps, cap))


def stage_seed(seed: int, iteration: int, stage: str) -> int:
    """A 31-bit seed derived from ``(seed, iteration, stage)``, stable across runs and machines."""
    digest = hashlib.sha256(f"rest-mcts/{seed}/{iteration}/{stage}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


# --- the trainer -----------------------------------------------------------------------------


class SelfTrainer:
    """Runs (or resumes) a self-training run; see the module docstring.

    `run` returns one record per iteration (dicts, also written to
    ``run_dir/iteration_i/record.json``). Stage methods (``stage_search`` ...)
    each read their inputs from disk and return the stage's record. `on_record`,
    if given, is called with each iteration's record as soon as it is written
    (the CLI logs it to W&B: `agents.integrations.wandb_logging.log_self_train_record`).
    """

    def __init__(self, config: SelfTrainConfig, on_record: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.config = config
        self.on_record = on_record
        self.run_dir = Path(config.run_dir)
        self.buffer = EpisodeBuffer(self.run_dir / "buffer")
        self._train: list[Problem] | None = None
        self._eval: list[Problem] | None = None
        self._sources: tuple[str, str] | None = None
        self._d_v0: Dataset | None = None

    # --- paths and markers ---------------------------------------------------------------

    def iteration_dir(self, iteration: int) -> Path:
        return self.run_dir / f"iteration_{iteration}"

    def marker(self, iteration: int, stage: str) -> Path:
        return self.iteration_dir(iteration) / "stages" / f"{stage}.json"

    def stage_record(self, iteration: int, stage: str) -> dict[str, Any] | None:
        """The record of a done stage, or None if it is not done."""
        path = self.marker(iteration, stage)
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def stages(self, iteration: int) -> tuple[str, ...]:
        return ("eval",) if iteration == 0 else STAGES

    def run_stage(self, iteration: int, stage: str) -> dict[str, Any]:
        """Run one stage unless its marker exists; returns its record."""
        done = self.stage_record(iteration, stage)
        if done is not None:
            logger.info("iteration %d %s: done in an earlier run, skipped", iteration, stage)
            return done
        _remove_temporaries(self.iteration_dir(iteration))
        _remove_temporaries(self.marker(iteration, stage).parent)
        set_seed(stage_seed(self.config.seed, iteration, stage))
        started = time.perf_counter()
        record = getattr(self, f"stage_{stage}")(iteration)
        record = {"stage": stage, "iteration": iteration, **record, "seconds": round(time.perf_counter() - started, 3)}
        write_json_atomically(self.marker(iteration, stage), record)
        untrained = " (no model trained: the previous one is kept)" if record.get("trained") is False else ""
        logger.info("iteration %d %s: done in %.1f s%s", iteration, stage, record["seconds"], untrained)
        return record

    # --- the loop ------------------------------------------------------------------------------

    def run(self, iterations: int | None = None) -> list[dict[str, Any]]:
        """Iterations 0..`iterations` (default: the config's), resuming from the markers."""
        iterations = self.config.iterations if iterations is None else iterations
        self._bind_config()
        records = []
        bar = tqdm(total=iterations + 1, desc=f"self-train ({self.config.method})", disable=not self.config.show_progress)
        for iteration in range(iterations + 1):
            for stage in self.stages(iteration):
                bar.set_postfix_str(f"iteration {iteration}: {stage}")
                self.run_stage(iteration, stage)
            records.append(self.write_record(iteration))
            if self.on_record is not None:
                self.on_record(records[-1])
            bar.update(1)
        bar.close()
        return records

    def write_record(self, iteration: int) -> dict[str, Any]:
        """The iteration's record from its stage records, written to ``record.json``."""
        stages = {stage: self.stage_record(iteration, stage) for stage in self.stages(iteration)}
        search, buffer, policy, value, evaluation = (stages.get(s) or {} for s in STAGES)
        record = {
            "iteration": iteration,
            "method": self.config.method,
            "seed": self.config.seed,
            "greedy_accuracy": evaluation["greedy_accuracy"],
            "mcts_accuracy": evaluation["mcts_accuracy"],
            "prm_auroc": evaluation.get("prm_auroc"),
            "policy_rows": buffer.get("rows", {}).get("policy", 0),
            "value_rows": buffer.get("rows", {}).get("value", 0),
            "pair_rows": buffer.get("rows", {}).get("pairs", 0),
            "relative_rows": buffer.get("rows", {}).get("relative", 0),
            "policy_train_rows": policy.get("rows", 0),
            "value_train_rows": value.get("rows", 0),
            "sampled_tokens": search.get("sampled_tokens", 0),
            "search": {k: v for k, v in search.items() if k not in ("stage", "iteration")},
            "policy_trained": policy.get("trained", False),
            "value_trained": value.get("trained", False),
            "policy_dir": self.policy_dir(iteration),
            "value_dir": self.value_dir(iteration),
            "eval": {k: v for k, v in evaluation.items() if k not in ("stage", "iteration")},
            "stage_seconds": {stage: record["seconds"] for stage, record in stages.items()},
            "wall_seconds": round(sum(record["seconds"] for record in stages.values()), 3),
        }
        write_json_atomically(self.iteration_dir(iteration) / "record.json", record)
        return record

    def _bind_config(self) -> None:
        path = self.run_dir / "config.json"
        bound = self.config.bound_fields()
        if path.is_file():
            stored = json.loads(path.read_text(encoding="utf-8"))
            if stored != bound:
                changed = sorted(k for k in set(stored) | set(bound) if stored.get(k) != bound.get(k))
                raise ConfigError(
                    f"{self.run_dir} was started with a different config (differs in {changed}); "
                    "use the original config to resume, or a new run_dir"
                )
        else:
            write_json_atomically(path, bound)

    # --- models and problems ---------------------------------------------------------------------

    def sources(self) -> tuple[str, str]:
        """(pi_0 folder, V_0 folder): explicit ones, else the bootstrap's (built on first use)."""
        if self._sources is None:
            models = self.config.models
            policy, value = models.policy, models.value
            if policy is None or value is None:
                from agents.training.bootstrap import bootstrap

                result = bootstrap(models.bootstrap, show_progress=self.config.show_progress)
                policy = policy or str(result.policy_dir)
                value = value or str(result.value_dir)
            self._sources = (str(policy), str(value))
        return self._sources

    def policy_dir(self, iteration: int) -> str:
        """The folder of pi_`iteration` (pi_{i-1}'s when iteration i trained no policy)."""
        return self._model_dir(iteration, "policy")

    def value_dir(self, iteration: int) -> str:
        """The folder of V_`iteration` (V_{i-1}'s when iteration i trained no PRM)."""
        return self._model_dir(iteration, "value")

    def _model_dir(self, iteration: int, kind: str) -> str:
        while iteration > 0:
            record = self.stage_record(iteration, kind)
            if record is None:
                raise RuntimeError(f"the {kind} stage of iteration {iteration} has not run")
            if record["trained"]:
                return str(self.iteration_dir(iteration) / kind)
            iteration -= 1
        return self.sources()[0 if kind == "policy" else 1]

    def load_policy(self, folder: str):
        from agents.models.hf_policy import HFPolicy

        models = self.config.models
        return HFPolicy.from_pretrained(folder, device=models.device, prompt_format=models.prompt_format)

    def load_value(self, folder: str):
        from agents.models.hf_value import HFValueModel

        return HFValueModel.from_pretrained(folder, device=self.config.models.device)

    def train_problems(self) -> list[Problem]:
        """`train_problems` of the config; its ``options.exclude`` holds puzzles out. The
        bootstrap's `exclude` is not applied here: it keeps puzzles from pi_0 and V_0, and
        self-training on exactly those puzzles is a use of it (`bootstrap_300_solved.yaml`)."""
        if self._train is None:
            self._train = list(self.config.train_problems.load(self.config.models.bootstrap.difficulty))
        return self._train

    def eval_problems(self) -> list[Problem]:
        if self._eval is None:
            self._eval = list(self.config.eval.problems.load(self.config.models.bootstrap.difficulty))
        return self._eval

    # --- stage: search -----------------------------------------------------------------------------

    def stage_search(self, iteration: int) -> dict[str, Any]:
        """Collect this iteration's data with pi_{i-1} (and V_{i-1}); saved to ``iteration_i/search``."""
        seed = stage_seed(self.config.seed, iteration, "search")
        collect = self._search_trees if self.config.method in TREE_SEARCH_METHODS else self._sample_solutions
        folder = self.iteration_dir(iteration) / "search"

        def build(out: Path) -> dict[str, Any]:
            stats = collect(iteration, seed, out)
            return {"stats": stats}

        manifest = build_atomically(folder, {"method": self.config.method, "iteration": iteration, "seed": seed}, build)
        return manifest["stats"]

    def _search_trees(self, iteration: int, seed: int, out: Path) -> dict[str, Any]:
        config = self.config
        problems = self.train_problems()
        targets = TreeTargets()
        usage = None
        solved = answered = 0
        size = config.search.batch_size
        starts = range(0, len(problems), size)
        tasks = [(problems[start : start + size], seed + 7919 * batch) for batch, start in enumerate(starts)]
        policy_dir, value_dir = self.policy_dir(iteration - 1), self.value_dir(iteration - 1)
        if config.ray is None:
            models = (self.load_policy(policy_dir), self.load_value(value_dir))
            batches = (search_batch(models, config.search, *task) for task in tasks)
        else:
            from agents.integrations.ray_runner import search_batches

            device, prompt_format = config.models.device, config.models.prompt_format
            batches = search_batches(config.ray, policy_dir, value_dir, device, prompt_format, config.search, tasks)
        bar = tqdm(batches, total=len(tasks), desc=f"MCTS* search (iteration {iteration})", disable=not config.show_progress)
        with open(out / "trees.jsonl", "w", encoding="utf-8") as trees, closing(batches):  # (closing: Ray stops)
            for rows in bar:  # batch by batch, in order
                for tree, tree_targets, tree_usage, tree_solved, tree_answered in rows:
                    targets.extend(tree_targets)
                    trees.write(json.dumps(tree) + "\n")
                    usage = tree_usage if usage is None else usage + tree_usage
                    solved += tree_solved
                    answered += tree_answered
        write_json_atomically(out / "targets.json", _targets_to_dict(targets))
        usage_dict = usage.to_dict() if usage is not None else {}
        return {
            "problems": len(problems),
            "sampled_tokens": int(usage_dict.get("policy_completion_tokens", 0)),
            "usage": usage_dict,
            "solved_fraction": solved / max(1, len(problems)),
            "answered_fraction": answered / max(1, len(problems)),
            "rows": _row_counts(targets),
        }

    def baseline_tokens(self, iteration: int) -> int:
        """Policy completion tokens a sampling baseline spends in `iteration` (see `TokenMatching`)."""
        matching = self.config.baseline_tokens
        if matching.tokens_per_iteration is not None:
            return int(matching.tokens_per_iteration)
        if matching.match_run is not None:
            marker = Path(matching.match_run) / f"iteration_{iteration}" / "stages" / "search.json"
            if not marker.is_file():
                raise ConfigError(
                    f"baseline_tokens.match_run: {marker} not found; run the ReST-MCTS* run's iteration {iteration} first"
                )
            return int(json.loads(marker.read_text(encoding="utf-8"))["sampled_tokens"])
        cap = self.config.search.budget.completion_tokens
        if cap is None:
            raise ConfigError("baseline_tokens: set tokens_per_iteration or match_run (search.budget has no token cap)")
        return int(cap) * len(self.train_problems())

    def _sample_solutions(self, iteration: int, seed: int, out: Path) -> dict[str, Any]:
        from agents.training.rest_em import rest_em_targets, sample_until
        from agents.training.self_rewarding import preference_pairs, score_samples

        config = self.config
        method = config.method
        settings = config.rest_em if method == "rest_em" else config.self_rewarding.sampling
        target = self.baseline_tokens(iteration)
        policy = self.load_policy(self.policy_dir(iteration - 1))
        samples = sample_until(
            policy, self.train_problems(), target, settings, seed, config.search.limits, show_progress=config.show_progress
        )
        del policy
        scores: list[float] = []
        if method == "rest_em":
            targets = rest_em_targets(samples, settings.max_correct_per_problem)
        else:
            value = self.load_value(self.value_dir(iteration - 1))
            scores = score_samples(value, samples)
            targets = preference_pairs(samples, scores, config.self_rewarding.min_margin)
        with open(out / "samples.jsonl", "w", encoding="utf-8") as handle:
            for index, sample in enumerate(samples):
                row = sample.to_dict()
                if scores:
                    row["score"] = scores[index]
                handle.write(json.dumps(row) + "\n")
        write_json_atomically(out / "targets.json", _targets_to_dict(targets))
        problems = {sample.problem.id for sample in samples}
        solved = {sample.problem.id for sample in samples if sample.correct}
        return {
            "problems": len(self.train_problems()),
            "target_tokens": target,
            "sampled_tokens": sum(sample.tokens for sample in samples),
            "samples": len(samples),
            "sample_accuracy": sum(sample.correct for sample in samples) / max(1, len(samples)),
            "solved_fraction": len(solved) / max(1, len(problems)),
            "rows": _row_counts(targets),
        }

    # --- stage: buffer ---------------------------------------------------------------------------------

    def stage_buffer(self, iteration: int) -> dict[str, Any]:
        """Append the search's rows to the episode buffer (and the relative rows beside it)."""
        folder = self.iteration_dir(iteration) / "search"
        targets = _targets_from_dict(json.loads((folder / "targets.json").read_text(encoding="utf-8")))
        partial = self.buffer.run_dir / f"iteration_{iteration}"
        shutil.rmtree(partial, ignore_errors=True)  # a killed earlier attempt: start the iteration's buffer afresh
        rows = self.buffer.append_targets(targets, iteration)
        rows["relative"] = len(targets.relative)
        if targets.relative:
            _save_dataset(partial / "relative", targets.relative)
        return {"rows": rows}

    def relative_rows(self, iterations: Sequence[int]) -> list[dict[str, Any]]:
        """The relative-correctness rows stored for `iterations` (Li et al. step scores)."""
        rows: list[dict[str, Any]] = []
        for iteration in iterations:
            path = self.buffer.run_dir / f"iteration_{iteration}" / "relative"
            if (path / "manifest.json").is_file():
                rows.extend(Dataset.load_from_disk(str(path / "data")).to_list())
        return rows

    # --- stage: policy ----------------------------------------------------------------------------------

    def stage_policy(self, iteration: int) -> dict[str, Any]:
        """Train pi_i; saved to ``iteration_i/policy`` (nothing to train: pi_i = pi_{i-1})."""
        config = self.config
        method = config.method
        data_iterations = list(range(1, iteration + 1)) if config.policy.accumulate else [iteration]
        if method in ("rest_mcts", "rest_em"):
            dataset = self.buffer.load("policy", data_iterations).select_columns(["prompt", "completion"])
        elif method == "self_rewarding":
            dataset = self.buffer.load("pairs", data_iterations).select_columns(["prompt", "chosen", "rejected"])
        else:
            from agents.training.weighted_nll import step_rows

            tasks = {problem.id: get_task(problem.task) for problem in self.train_problems()}
            steps = step_rows(self.relative_rows(data_iterations), tasks, config.weighted_nll.keep_zero_weight)
            dataset = Dataset.from_list(steps)
        if len(dataset) == 0:
            return {"trained": False, "rows": 0}
        start = self.policy_dir(iteration - 1 if config.policy.from_previous else 0)
        seed = stage_seed(config.seed, iteration, "policy")
        settings = self._policy_settings(len(dataset))
        folder = self.iteration_dir(iteration) / "policy"

        def build(out: Path) -> dict[str, Any]:
            from agents.models.loading import load_causal_lm

            model, tokenizer = load_causal_lm(start, device=config.models.device)
            scratch = str(out / "trainer")
            model = self._train_policy(model, tokenizer, dataset, settings, scratch, seed)
            shutil.rmtree(scratch, ignore_errors=True)
            model.save_pretrained(out)
            tokenizer.save_pretrained(out)
            return {"rows": len(dataset)}

        build_atomically(folder, {"method": method, "iteration": iteration, "seed": seed}, build)
        return {"trained": True, "rows": len(dataset), "steps": settings.max_steps}

    def _policy_settings(self, rows: int):
        """The method's policy-training settings with max_steps capped by `PolicyTraining.max_epochs`."""
        config = self.config
        settings = {
            "self_rewarding": config.self_rewarding.dpo,
            "weighted_nll": config.weighted_nll,
        }.get(config.method, config.policy.sft)
        return capped_steps(settings, rows, config.policy.max_epochs)

    def _train_policy(self, model, tokenizer, dataset, settings, output_dir: str, seed: int):
        config = self.config
        show = config.show_progress
        if config.method == "self_rewarding":
            from agents.training.self_rewarding import train_dpo

            return train_dpo(model, tokenizer, dataset, settings, output_dir, seed, show_progress=show)
        if config.method == "weighted_nll":
            from agents.training.weighted_nll import train_weighted_nll

            return train_weighted_nll(model, tokenizer, dataset, settings, output_dir, seed, show_progress=show)
        from agents.training.policy_sft import train_policy

        lora = config.policy.lora
        if lora is not None:
            from peft import get_peft_model

            model = get_peft_model(model, lora.peft_config())
        model = train_policy(model, tokenizer, dataset, settings, output_dir, seed, show)
        if lora is not None:
            model = model.merge_and_unload()
        return model

    # --- stage: value ----------------------------------------------------------------------------------

    def stage_value(self, iteration: int) -> dict[str, Any]:
        """Train V_i from V_{i-1} on the value rows; saved to ``iteration_i/value``."""
        config = self.config
        if not config.train_value:
            return {"trained": False, "rows": 0}
        data_iterations = list(range(1, iteration + 1)) if config.value.accumulate else [iteration]
        dataset = self.buffer.load("value", data_iterations)
        if len(dataset) == 0:
            return {"trained": False, "rows": 0}
        distinct = len(dataset)
        if config.value.balance:
            repeats = live_repeats(dataset["target"], dataset["depth"])
            dataset = dataset.select([row for row, count in enumerate(repeats) for _ in range(count)])
        dataset = dataset.select_columns(["text", "target"])
        previous = self.value_dir(iteration - 1)
        seed = stage_seed(config.seed, iteration, "value")
        replayed = round(config.value.replay * len(dataset))
        rows = len(dataset) + replayed
        folder = self.iteration_dir(iteration) / "value"

        def build(out: Path) -> dict[str, Any]:
            from agents.models.loading import load_value_backbone
            from agents.training.value_training import train_value_model

            mixture = dataset
            if config.value.replay > 0:  # D_V0 is rebuilt here, not when V_i is already built
                d_v0 = self.d_v0()
                rehearsal = d_v0.select(rehearsal_rows(len(d_v0), replayed, seed)).select_columns(["text", "target"])
                mixture = concatenate_datasets([dataset, rehearsal.cast(dataset.features)]).shuffle(seed=seed)
            model, tokenizer = load_value_backbone(previous, device=config.models.device)
            scratch = str(out / "trainer")
            train_value_model(model, tokenizer, mixture, settings, scratch, seed, config.show_progress)
            shutil.rmtree(scratch, ignore_errors=True)
            model.save_pretrained(out)
            tokenizer.save_pretrained(out)
            return {"rows": rows}

        settings = capped_steps(config.value.settings, rows, config.value.max_epochs)
        build_atomically(folder, {"iteration": iteration, "seed": seed}, build)
        return {"trained": True, "rows": rows, "distinct_rows": distinct, "replayed_rows": replayed,
                "steps": settings.max_steps}  # fmt: skip

    def d_v0(self) -> Dataset:
        """The bootstrap's D_V0 (`bootstrap.value_training_data`), rebuilt once per trainer."""
        if self._d_v0 is None:
            from agents.training.bootstrap import value_training_data

            self.sources()  # builds pi_0 and V_0 if they are not cached yet
            self._d_v0 = value_training_data(self.config.models.bootstrap, show_progress=self.config.show_progress)
        return self._d_v0

    # --- stage: eval ------------------------------------------------------------------------------------

    def stage_eval(self, iteration: int) -> dict[str, Any]:
        """Greedy CoT and MCTS* accuracy of (pi_i, V_i) on the held-out problems."""
        from agents.evaluation import evaluate_policy, evaluate_value_against_oracle, evaluate_value_model

        config = self.config
        settings = config.eval
        seed = stage_seed(config.seed, 0, "eval")  # the same every iteration (common random numbers)
        policy = self.load_policy(self.policy_dir(iteration))
        value = self.load_value(self.value_dir(iteration))
        problems = self.eval_problems()
        greedy = evaluate_policy(
            policy,
            problems,
            k=0,
            max_new_tokens=settings.greedy_max_new_tokens,
            batch_problems=settings.batch_size,
            show_progress=config.show_progress,
        )
        agent = MCTSStar(policy, value, mcts_config(settings.mcts, seed))
        right = 0
        usage = None
        with tqdm(total=len(problems), desc=f"MCTS* eval (iteration {iteration})",
                  disable=not config.show_progress) as bar:  # fmt: skip
            results = agent.solve(problems, settings.budget, settings.limits, active=settings.batch_size,
                                  on_done=lambda _: bar.update(1))  # fmt: skip
        for result in results:
            right += grade(result.trace)
            usage = result.usage if usage is None else usage + result.usage
        record: dict[str, Any] = {
            "problems": len(problems),
            "greedy_accuracy": greedy.greedy,
            "greedy_outcomes": greedy.greedy_outcomes,
            "greedy_tokens": greedy.completion_tokens,
            "mcts_accuracy": right / max(1, len(problems)),
            "mcts_usage": usage.to_dict() if usage is not None else {},
        }
        if settings.prm_auroc and problems and get_task(problems[0].task).has_oracle:
            # Planning tasks: AUROC against exact solvability on the policy's own states.
            oracle = evaluate_value_against_oracle(value, policy, problems, seed=seed, show_progress=config.show_progress)
            record.update(prm_auroc=oracle.auroc, prm_sibling_auroc=oracle.sibling_auroc)
        elif settings.prm_auroc and problems and all(p.steps for p in problems):
            quality = evaluate_value_model(value, problems, seed=seed)
            record.update(prm_auroc=quality.auroc, prm_mae=quality.mae)
        return record


# --- search ---------------------------------------------------------------------------------------------


def search_batch(
    models: tuple[Any, Any], settings: SearchSettings, problems: Sequence[Problem], seed: int
) -> list[tuple[dict[str, Any], TreeTargets, Any, bool, bool]]:
    """MCTS* in data mode on one batch of problems with (policy, PRM) `models` and sampling seed `seed`.

    Returns one ``(tree as plain data, its labelled rows, usage, solved, answered)`` per
    problem. The result depends only on the arguments (the models' caches are
    cleared first), so a batch gives the same trees in this process or on a Ray worker.
    """
    policy, value = models
    for model in models:
        clear_cache = getattr(model, "clear_cache", None)
        if clear_cache is not None:
            clear_cache()
    agent = MCTSStar(policy, value, mcts_config(settings.mcts, seed, data_mode=True))
    rows = []
    for result in agent.solve(problems, settings.budget, settings.limits):
        tree = result.tree
        labelled = label_tree(tree, max_pairs=settings.max_pairs)  # (in the order of the single-process loop)
        solved = any(c is True for c in tree.correct)
        answered = any(c is not None for c in tree.correct)
        rows.append((tree.to_dict(), labelled, result.usage, solved, answered))
    return rows


# --- summary -------------------------------------------------------------------------------------------

SUMMARY_COLUMNS = (
    ("iteration", "iter", "{}"),
    ("method", "method", "{}"),
    ("greedy_accuracy", "greedy acc", "{:.3f}"),
    ("mcts_accuracy", "MCTS* acc", "{:.3f}"),
    ("policy_train_rows", "policy rows", "{}"),
    ("value_train_rows", "value rows", "{}"),
    ("sampled_tokens", "sampled tokens", "{:,}"),
    ("wall_seconds", "wall s", "{:.1f}"),
)


def format_summary(records: Sequence[dict[str, Any]]) -> str:
    """A plain-text table, one row per iteration record."""
    header = [title for _, title, _ in SUMMARY_COLUMNS]
    rows = [[fmt.format(record[key]) for key, _, fmt in SUMMARY_COLUMNS] for record in records]
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(line, widths)) for line in [header, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def run_self_training(config: SelfTrainConfig, iterations: int | None = None) -> list[dict[str, Any]]:
    """Run (or resume) `config`; returns the iteration records."""
    return SelfTrainer(config).run(iterations)


# --- helpers ----------------------------------------------------------------------------------------------


def _row_counts(targets: TreeTargets) -> dict[str, int]:
    return {
        "policy": len(targets.policy),
        "value": len(targets.values),
        "pairs": len(targets.pairs),
        "relative": len(targets.relative),
    }


def _targets_to_dict(targets: TreeTargets) -> dict[str, Any]:
    return {"values": targets.values, "policy": targets.policy, "pairs": targets.pairs, "relative": targets.relative}


def _targets_from_dict(data: dict[str, Any]) -> TreeTargets:
    return TreeTargets(data["values"], data["policy"], data["pairs"], data["relative"])


def _save_dataset(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rows as a HF dataset in ``path/data``, written atomically (a folder with a manifest)."""
    def build(out: Path) -> dict[str, Any]:
        Dataset.from_list(rows).save_to_disk(str(out / "data"))
        return {"rows": len(rows)}

    build_atomically(path, {"rows": len(rows)}, build)


def _remove_temporaries(folder: Path) -> None:
    """Delete leftovers of killed atomic builds (``.name.tmp-*`` folders and files)."""
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        if entry.name.startswith(".") and ".tmp-" in entry.name:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


__all__ = [
    "METHODS",
    "STAGES",
    "EvalSettings",
    "LoraSettings",
    "ModelSources",
    "PolicyTraining",
    "SearchSettings",
    "SelfTrainConfig",
    "SelfTrainer",
    "TokenMatching",
    "ValueTraining",
    "format_summary",
    "load_config",
    "mcts_config",
    "run_self_training",
    "search_batch",
    "stage_seed",
]

"""Search agents at an equal budget: accuracy against completion tokens and FLOPs per problem.

The comparison runner behind ``rest-mcts compare`` and ``benchmarks/search_vs_budget.py``:

1. Greedy chain of thought (CoT) solves every problem once, without a cap; its
   mean completion tokens per problem is the unit of budget, the *CoT cost*.
   CoT is deterministic and cannot use more budget, so it appears once, at 1x.
2. Every other agent runs at every budget ``Budget(completion_tokens=round(m x CoT
   cost))`` for the multipliers m, and at every seed (its sampling seed), on the
   same problems, `CompareConfig.batch_size` of them in play at once (refill
   scheduling, `agents.search.scheduler`). With
   `CompareConfig.ray` these runs go to Ray workers (`agents.integrations.ray_runner`),
   with the same results.
3. Answers are graded with `reasoning_gym.grade`; each (agent, budget, seed) run
   records accuracy and mean policy completion tokens, total tokens (prompt +
   completion + PRM), model FLOPs (`Usage.flops`, PRM included) and wall time
   per problem; aggregates over seeds add a 95% confidence interval. The PRM's
   score cache is cleared before each run, so no run scores states for free
   because an earlier run saw them.

How each agent spends a bigger budget (with ``budget_binding: true``, the default,
the budget and not an agent option is what stops the search):

- self-consistency and Best-of-N sample whole solutions in rounds until the next
  round might exceed the budget: `max_samples` is raised to the budget in tokens
  (each sample costs at least one token, so the budget always binds first), and
  `max_new_tokens` is lowered to the budget and `samples_per_round` to what fits
  in it, so the first round always fits;
- MCTS* iterates until the budget stops it (or until a node that states an answer
  reaches its end gate, or no leaf is left to expand): `iterations` is raised to
  the budget in tokens (every expansion costs at least one token);
- beam search ends when its beams are finished, so it spends a bigger budget on
  a wider beam: ``beam_width = max(beam_width, m // expansions)`` (about
  ``m`` x the proposals of one greedy solution), and the budget cuts it short
  when that does not fit.

The ledger reserves an agent's worst case before each call (``max_new_tokens`` per
sample, see `agents.search.budget`), so a loose cap wastes budget on reservations.
With ``token_cap_factor`` f (default 2), each agent's ``max_new_tokens`` is lowered
to f x what greedy CoT wrote: f x its mean tokens per solution for SC and BoN,
f x its mean tokens per step for beam search and MCTS* (the configured values stay
upper bounds). Caps thus follow the policy and its tokenizer.

Confidence intervals (``ci_method``) are over problems x seeds:

- ``"bootstrap"`` (default): percentile bootstrap over problems, each resampled
  problem keeping all its seeds (a cluster bootstrap: seeds of one problem are
  correlated), ``ci_resamples`` resamples from a fixed generator;
- ``"wilson"``: the Wilson score interval over all problem x seed outcomes taken
  as independent (narrower when seeds agree).

Both intervals contain the mean accuracy.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import IO, Any

import numpy as np

from agents.config import ConfigError, from_dict, load_yaml, to_dict
from agents.integrations.ray_runner import RayConfig
from agents.journal import Journal
from agents.models.base import Policy, ValueModel
from agents.search.budget import Budget, Usage
from agents.search.registry import AGENTS, NEEDS_VALUE, make_agent
from reasoning_gym import EpisodeLimits, Problem, ProblemSet, format_step, get_task, grade, make_source
from reasoning_gym.sources.base import source_kwargs

logger = logging.getLogger(__name__)

CI_METHODS = ("bootstrap", "wilson")
# Reference lines with the exact value oracle: name -> (agent, options over the agent's configured ones).
# Best-of-N scored by the oracle's value of the final state picks a correct solution
# whenever one was sampled ("last": the final state's value is 1 exactly when it is right).
REFERENCES: dict[str, tuple[str, dict[str, Any]]] = {
    "oracle_pick": ("best_of_n", {"aggregation": "last", "answer_mode": "best"}),
    "mcts_star_oracle": ("mcts_star", {}),
}
BASELINE = "cot"  # measured first; its mean completion tokens is the budget unit

# Agent options (max_new_tokens are upper bounds: `token_cap_factor` lowers them to
# what greedy CoT writes, per solution or per step).
DEFAULT_AGENTS: dict[str, dict[str, Any]] = {
    "cot": {"max_new_tokens": 320},
    "self_consistency": {"max_new_tokens": 320, "samples_per_round": 1, "temperature": 0.7},
    "best_of_n": {"max_new_tokens": 320, "samples_per_round": 1, "temperature": 0.7, "aggregation": "min"},
    "beam": {"max_new_tokens": 48, "beam_width": 1, "expansions": 2, "temperature": 0.7},
    "mcts_star": {"max_new_tokens": 48, "branch": 3, "roll_forward_steps": 1, "max_retries": 1, "temperature": 0.7},
}


@dataclass(frozen=True)
class ProblemsConfig:
    """Which problems to solve.

    Attributes:
        source: a `reasoning_gym.make_source` name ("synthetic", "countdown",
            "game24", "gsm8k", "math", "scibench", "reference", "hf").
        size: how many problems (generators: generated; file sources: the first
            `size` after the split).
        split: "train", "validation", "test" (hash splits), or None for all.
        difficulty: generator difficulty (synthetic: "basic", "easy", "medium",
            "hard", "mixed", or a mix such as "mixed:basic,easy"; countdown: a
            `COUNTDOWN_PRESETS` name); None: the bootstrapped models' level.
        seed: generator seed.
        path: the file of a file source.
        options: further keyword arguments of the source.
    """

    source: str = "synthetic"
    size: int = 200
    split: str | None = "test"
    difficulty: str | None = None
    seed: int = 0
    path: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"problems.size must be >= 1, got {self.size}")

    def load(self, default_difficulty: str = "easy") -> ProblemSet:
        """The problem set (ConfigError for an unknown source or bad arguments)."""
        try:
            kwargs = source_kwargs(
                self.source,
                size=self.size,
                seed=self.seed,
                difficulty=self.difficulty or default_difficulty,
                path=self.path,
            )
            # The split is passed even when None (file sources: every record).
            return make_source(self.source, **{**kwargs, "split": self.split, **self.options})
        except (KeyError, TypeError, ValueError) as error:
            raise ConfigError(f"problems: {error}") from None


@dataclass(frozen=True)
class ModelsConfig:
    """Which policy and PRM to search with.

    Attributes:
        bootstrap: YAML file of `BootstrapConfig` fields; None: the defaults. Models
            not given below are the bootstrapped pi_0 / V_0 (built on first use,
            then cached).
        policy: a Hugging Face folder, Hub id, ``.gguf`` file, or a preset YAML
            (see `agents.models.presets`); None: pi_0.
        value: a PRM folder (sequence classification with one output), a value
            preset YAML (``configs/prm/*.yaml``: Math-Shepherd, Qwen2.5-Math-PRM,
            RLHFlow, Skywork, the ReST-MCTS* value model, or an LLM judge),
            ``"oracle"`` (exact values, planning tasks) or ``"noisy-oracle:0.2"``
            (exact values plus N(0, 0.2^2) noise); None: V_0.
        device: "cpu", "cuda", ...; None: CUDA when available.
    """

    bootstrap: str | None = None
    policy: str | None = None
    value: str | None = None
    device: str | None = None


@dataclass(frozen=True)
class CompareConfig:
    """Everything one comparison run needs (``configs/compare.yaml`` is this in YAML).

    Attributes:
        problems: the problems (default: 200 synthetic test problems).
        seeds: sampling seeds; each agent runs once per seed and budget.
        budget_multipliers: budgets as multiples of the CoT cost (completion tokens).
        agents: agent name -> its config mapping (keys of the agent's config
            dataclass, see `agents.search.make_agent`). CoT always runs (it sets the
            budget unit); its entry only sets its options.
        models: the policy and PRM.
        batch_size: problems searched at once (one batched model call per round; a
            finished problem's slot goes to the next, `agents.search.scheduler`).
        limits: episode limits of every search.
        budget_binding: make the budget the binding limit (raise SC/BoN
            `max_samples` and MCTS* `iterations`, scale the beam width; see the
            module docstring). False runs the agents' configs as written.
        token_cap_factor: lower each agent's `max_new_tokens` to this multiple of
            greedy CoT's mean tokens per solution (SC, BoN) or per step (beam,
            MCTS*); None keeps the configured caps.
        ci_method: "bootstrap" (over problems, seeds kept together) or "wilson".
        ci_level: confidence level of the intervals.
        ci_resamples: bootstrap resamples.
        references: reference lines run with the exact value oracle (planning
            tasks only; see `REFERENCES`): ``"oracle_pick"``, Best-of-N whose
            pick is the oracle (pass@N at the budget: the ceiling of sampling),
            and ``"mcts_star_oracle"``, MCTS* with `OracleValue` (the ceiling of
            the search), both at every budget and seed like the agents.
        ray: run the (agent, budget, seed) runs on Ray workers that load `models`
            themselves (see `agents.integrations.ray_runner`); None: in this
            process. The results are the same either way.
        wandb: log the run to Weights & Biases when run by ``rest-mcts compare``
            (offline unless W&B credentials are set; see
            `agents.integrations.wandb_logging`); ``--no-wandb`` also turns it off.
    """

    problems: ProblemsConfig = field(default_factory=ProblemsConfig)
    seeds: tuple[int, ...] = (0, 1, 2)
    budget_multipliers: tuple[float, ...] = (1, 2, 4, 8, 16)
    agents: dict[str, dict[str, Any]] = field(default_factory=lambda: {k: dict(v) for k, v in DEFAULT_AGENTS.items()})
    models: ModelsConfig = field(default_factory=ModelsConfig)
    batch_size: int = 50
    limits: EpisodeLimits = field(default_factory=EpisodeLimits)
    budget_binding: bool = True
    token_cap_factor: float | None = 2.0
    ci_method: str = "bootstrap"
    ci_level: float = 0.95
    ci_resamples: int = 2000
    references: tuple[str, ...] = ()
    ray: RayConfig | None = None
    wandb: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.wandb, bool):
            raise ValueError(f"wandb must be true or false, got {self.wandb!r}")
        if not self.seeds:
            raise ValueError("seeds must list at least one seed")
        if not self.budget_multipliers or any(m <= 0 for m in self.budget_multipliers):
            raise ValueError(f"budget_multipliers must be positive numbers, got {list(self.budget_multipliers)}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.token_cap_factor is not None and self.token_cap_factor <= 0:
            raise ValueError(f"token_cap_factor must be > 0 or null, got {self.token_cap_factor}")
        if self.ci_method not in CI_METHODS:
            raise ValueError(f"ci_method must be one of {list(CI_METHODS)}, got {self.ci_method!r}")
        if not 0 < self.ci_level < 1:
            raise ValueError(f"ci_level must be in (0, 1), got {self.ci_level}")
        if self.ci_resamples < 1:
            raise ValueError(f"ci_resamples must be >= 1, got {self.ci_resamples}")
        if not isinstance(self.agents, dict):
            raise ValueError("agents must map agent names to config mappings")
        for name, options in self.agents.items():
            agent_options(name, options)  # names the agent and the bad key
        unknown = [name for name in self.references if name not in REFERENCES]
        if unknown:
            raise ValueError(f"references: unknown {unknown}; choose from {sorted(REFERENCES)}")


def agent_options(name: str, options: dict[str, Any] | None) -> Any:
    """Agent `name`'s config dataclass built from `options` (ConfigError naming a bad key)."""
    if name not in AGENTS:
        raise ConfigError(f"agents: unknown search agent {name!r}; choose from {sorted(AGENTS)}")
    return from_dict(AGENTS[name][0], options or {}, where=f"agents.{name}")


def load_config(path: str | Path) -> CompareConfig:
    """A `CompareConfig` from YAML; unknown keys raise ConfigError naming the key and the file."""
    return from_dict(CompareConfig, load_yaml(path), where=str(path))


# --- models -----------------------------------------------------------------------------


@dataclass
class Models:
    """A loaded policy and PRM, and where they came from."""

    policy: Policy
    value: ValueModel | None
    policy_name: str
    value_name: str | None
    difficulty: str  # the bootstrap's training difficulty (the default test difficulty)


def load_models(config: ModelsConfig = ModelsConfig(), need_value: bool = True, progress: bool = True) -> Models:
    """The policy and PRM of `config`; the bootstrapped pi_0 / V_0 stand in for those not given."""
    from agents.training.bootstrap import BootstrapConfig

    boot = BootstrapConfig() if config.bootstrap is None else from_dict(
        BootstrapConfig, load_yaml(config.bootstrap), where=str(config.bootstrap)
    )
    policy = value = None
    policy_name = config.policy
    value_name = config.value
    if config.policy is not None:
        policy = load_policy(config.policy, config.device)
    if need_value and config.value is not None:
        value = load_value(config.value, config.device)
    if policy is None or (need_value and value is None):
        from agents.training.bootstrap import bootstrap

        result = bootstrap(boot, show_progress=progress)
        if policy is None:
            from agents.models.hf_policy import HFPolicy

            policy = HFPolicy.from_pretrained(str(result.policy_dir), device=config.device, prompt_format="plain")
            policy_name = f"pi_0 ({result.policy_dir})"
        if need_value and value is None:
            from agents.models.hf_value import HFValueModel

            value = HFValueModel.from_pretrained(str(result.value_dir), device=config.device)
            value_name = f"V_0 ({result.value_dir})"
    return Models(policy, value, str(policy_name), value_name, boot.difficulty)


def load_value(spec: str, device: str | None = None) -> ValueModel:
    """An oracle (``"oracle"``, ``"noisy-oracle:SIGMA[:SEED]"``), a value preset YAML
    (``configs/prm/*.yaml``: a published PRM or an LLM judge, see `agents.models.prm.presets`),
    or a PRM folder / Hub id (sequence classification with one output)."""
    from agents.models.oracle import oracle_from_spec

    oracle = oracle_from_spec(spec)
    if oracle is not None:
        return oracle
    from agents.models.prm.presets import is_preset_file, load_value_preset

    if is_preset_file(spec):
        return load_value_preset(spec, device)
    from agents.models.hf_value import HFValueModel

    return HFValueModel.from_pretrained(spec, device=device)


def load_policy(name_or_path: str, device: str | None = None) -> Policy:
    """A policy from a preset YAML (``configs/smollm2.yaml``), or an HF folder / Hub id / GGUF."""
    if Path(name_or_path).suffix.lower() in (".yaml", ".yml"):
        from agents.models.presets import load_preset

        return load_preset(name_or_path).policy
    from agents.models.hf_policy import HFPolicy

    return HFPolicy.from_pretrained(name_or_path, device=device)


# --- running ------------------------------------------------------------------------------


def budget_tokens(multiplier: float, cot_cost: float) -> int:
    """The completion-token budget per problem at `multiplier` x the CoT cost (at least 1)."""
    return max(1, round(multiplier * cot_cost))


SOLUTION_AGENTS = ("self_consistency", "best_of_n")  # max_new_tokens caps a whole solution
STEP_AGENTS = ("beam", "mcts_star")  # max_new_tokens caps one step


def token_caps(cot_tokens: float, cot_steps: float, factor: float | None) -> dict[str, int] | None:
    """Per-call caps from greedy CoT: ``factor`` x its tokens per solution and per step (None: no caps)."""
    if factor is None or cot_tokens <= 0:
        return None
    per_step = cot_tokens / cot_steps if cot_steps > 0 else cot_tokens
    return {"solution": max(1, math.ceil(factor * cot_tokens)), "step": max(1, math.ceil(factor * per_step))}


def scaled_options(
    name: str,
    options: dict[str, Any],
    tokens: int,
    multiplier: float,
    seed: int,
    binding: bool,
    caps: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Agent `name`'s options for one run: its seed, its token cap (from `caps`, see `token_caps`),
    and (if `binding`) the budget as the binding limit (see the module docstring)."""
    config = agent_options(name, options)
    names = {f.name for f in fields(config)}
    if "seed" in names:
        config = replace(config, seed=seed)
    if caps is not None and name in SOLUTION_AGENTS + STEP_AGENTS:
        cap = caps["solution"] if name in SOLUTION_AGENTS else caps["step"]
        config = replace(config, max_new_tokens=min(config.max_new_tokens, cap))
    if binding:
        if name in SOLUTION_AGENTS:
            cap = min(config.max_new_tokens, tokens)
            config = replace(
                config,
                max_samples=max(config.max_samples, tokens),
                max_new_tokens=cap,
                samples_per_round=min(config.samples_per_round, max(1, tokens // cap)),
            )
        elif name == "mcts_star":
            config = replace(config, iterations=max(config.iterations, tokens))
        elif name == "beam":
            config = replace(config, beam_width=max(config.beam_width, int(multiplier // config.expansions)))
    return to_dict(config)


@dataclass(frozen=True)
class LineRun:
    """One run of a line (an agent or a reference) at one budget and seed: a unit of work for a worker."""

    name: str  # the line's name (an agent, or a `REFERENCES` name)
    agent: str
    options: dict[str, Any]  # the agent's options for this run (`scaled_options`)
    reference: bool  # scored by the exact value oracle instead of the PRM
    multiplier: float
    tokens: int
    seed: int


def run_line(
    models: tuple[Policy, ValueModel | None],
    problems: Sequence[Problem],
    config: CompareConfig,
    run: LineRun,
    bar: Any = None,
) -> dict[str, Any]:
    """The figures of `run` (see `_run`); depends only on its arguments, wherever it runs."""
    from agents.models.oracle import OracleValue

    policy, value = models
    line_value = OracleValue() if run.reference else value
    agent = make_agent(run.agent, policy, line_value, run.options)
    return _run(agent, problems, Budget(completion_tokens=run.tokens), config, (policy, line_value), bar)


def _run(
    agent: Any, problems: Sequence[Problem], budget: Budget, config: CompareConfig, models: tuple, bar: Any = None
) -> dict[str, Any]:
    """Solve every problem, `batch_size` in play at once; per-run figures, and per problem: ``correct`` (0/1),
    ``answers``, ``problem_tokens`` (completion tokens) and ``traces`` (the chosen steps, one per line;
    kept in memory for W&B, not written by `write_json`)."""
    policy_params = int(models[0].num_parameters)
    value_params = int(getattr(models[1], "num_parameters", 0) or 0)
    correct: list[int] = []
    usages: list[Usage] = []
    candidates: list[int] = []
    steps: list[int] = []
    answers: list[str | None] = []
    traces: list[str] = []
    reasons: Counter[str] = Counter()
    for model in models:
        clear_cache = getattr(model, "clear_cache", None)
        if clear_cache is not None:
            clear_cache()  # a run never reads prompts or gets PRM scores for free from an earlier run
    started = time.perf_counter()
    # Refill scheduling: `batch_size` problems in play, each finished one replaced from the queue.
    on_done = None if bar is None else (lambda _: bar.update(1))
    for result in agent.solve(problems, budget, config.limits, active=config.batch_size, on_done=on_done):
        correct.append(int(grade(result.trace)))
        usages.append(result.usage)
        candidates.append(len(result.traces))
        steps.append(len(result.trace.steps))
        answers.append(result.answer)
        traces.append("\n".join(format_step(k, step) for k, step in enumerate(result.trace.steps, start=1)))
        reasons[result.stop_reason] += 1
    wall = time.perf_counter() - started
    n = len(problems)

    def mean(values: Sequence[float]) -> float:
        return float(sum(values) / n)

    return {
        "problems": n,
        "accuracy": mean(correct),
        "completion_tokens": mean([u.policy_completion_tokens for u in usages]),
        "max_completion_tokens": max(u.policy_completion_tokens for u in usages),
        "prompt_tokens": mean([u.policy_prompt_tokens for u in usages]),
        "prm_tokens": mean([u.prm_tokens for u in usages]),
        "total_tokens": mean([u.total_tokens for u in usages]),
        "reused_tokens": mean([u.policy_prompt_tokens_reused + u.prm_tokens_reused for u in usages]),
        "max_total_tokens": max(u.total_tokens for u in usages),
        "flops": mean([u.flops(policy_params, value_params) for u in usages]),
        "policy_calls": mean([u.policy_calls for u in usages]),
        "prm_calls": mean([u.prm_calls for u in usages]),
        "candidates": mean(candidates),
        "steps": mean(steps),
        "wall_seconds": wall,
        "wall_seconds_per_problem": wall / n,
        "stop_reasons": dict(reasons),
        "correct": correct,
        "answers": answers,
        "problem_tokens": [u.policy_completion_tokens for u in usages],
        "traces": traces,
    }


def run_comparison(
    config: CompareConfig,
    policy: Policy,
    value: ValueModel | None,
    progress: bool = True,
    problems: Sequence[Problem] | None = None,
    default_difficulty: str = "easy",
    journal: str | Path | None = None,
) -> dict[str, Any]:
    """Run every agent at every budget and seed; returns plain data (JSON-ready).

    Args:
        config: the comparison.
        policy, value: the models (`value` may be None when no PRM-guided agent runs).
        progress: show tqdm progress bars (on stderr).
        problems: solve these instead of ``config.problems``.
        default_difficulty: synthetic difficulty when ``config.problems.difficulty`` is None.
        journal: a file that records each finished run (`agents.journal.Journal`):
            a rerun of the same comparison (same config and problems) skips the runs
            recorded there, so a crash loses only the run in flight.

    Returns:
        ``{"config", "problems", "models", "cot_cost", "budgets", "token_caps", "runs", "aggregates", "ci"}``:
        `runs` has one row per (agent, multiplier, seed) with the figures of `_run`
        (means per problem, and ``correct``: 0/1 per problem); `aggregates` has one
        row per (agent, multiplier) with the mean accuracy over problems x seeds,
        its interval (``ci_low``, ``ci_high``) and the seed-mean of every figure.
        CoT has one run (seed None, multiplier 1, budget_tokens None: uncapped).
    """
    from tqdm.auto import tqdm

    if problems is None:
        problems = list(config.problems.load(default_difficulty))
    problems = list(problems)
    needs_value = sorted(name for name in config.agents if name in NEEDS_VALUE)
    if needs_value and value is None:
        raise ConfigError(f"agents {needs_value} need a value model (PRM)")
    searchers = [name for name in config.agents if name != BASELINE]
    total_runs = 1 + (len(searchers) + len(config.references)) * len(config.budget_multipliers) * len(config.seeds)
    runs: list[dict[str, Any]] = []
    fingerprint = {"config": {k: v for k, v in to_dict(config).items() if k not in ("ray", "wandb")},
                   "problems": [p.id for p in problems]}  # fmt: skip
    finished = Journal(journal, fingerprint) if journal is not None else None
    if finished is not None and finished.done:
        logger.info("resuming: %d finished runs recorded in %s", len(finished.done), journal)
    overall = tqdm(total=total_runs, desc="compare", unit="run", disable=not progress)

    def bar(description: str):
        return tqdm(total=len(problems), desc=description, unit="problem", leave=False, disable=not progress)

    # 1. greedy CoT, uncapped: the budget unit.
    cot_options = to_dict(agent_options(BASELINE, config.agents.get(BASELINE, DEFAULT_AGENTS[BASELINE])))
    cot = make_agent(BASELINE, policy, value, cot_options)
    if finished is not None and BASELINE in finished.done:
        row = finished.done[BASELINE]
    else:
        with bar("cot (measures the budget unit)") as inner:
            row = _run(cot, problems, Budget(), config, (policy, value), inner)
        if finished is not None:
            finished.record(BASELINE, row)
    cot_cost = row["completion_tokens"]
    runs.append({"agent": BASELINE, "multiplier": 1, "budget_tokens": None, "seed": None,
                 "options": cot_options, **row})  # fmt: skip
    overall.update(1)
    budgets = {m: budget_tokens(m, cot_cost) for m in config.budget_multipliers}
    caps = token_caps(cot_cost, row["steps"], config.token_cap_factor)

    # 2. every other agent (and reference line) at every budget and seed.
    lines = [(name, name, config.agents[name], False) for name in searchers]
    if config.references:
        tasks = {problem.task for problem in problems}
        if not all(get_task(task).has_oracle for task in tasks):
            raise ConfigError(f"references need tasks with an exact value oracle; these problems are {sorted(tasks)}")
        for name in config.references:
            agent_name, overrides = REFERENCES[name]
            options = {**config.agents.get(agent_name, DEFAULT_AGENTS[agent_name]), **overrides}
            lines.append((name, agent_name, options, True))
    plan = [
        LineRun(name, agent_name, scaled_options(agent_name, agent_config, tokens, multiplier, seed,
                                                 config.budget_binding, caps), reference, multiplier, tokens, seed)
        for name, agent_name, agent_config, reference in lines
        for multiplier, tokens in budgets.items()
        for seed in config.seeds
    ]  # fmt: skip

    done: dict[str, Any] = dict(finished.done) if finished is not None else {}  # run key -> row
    pending = [run for run in plan if _run_key(run) not in done]

    def rows():  # in plan order: here, or on Ray workers (the same rows, see `RayConfig`)
        if config.ray is not None:
            from agents.integrations.ray_runner import compare_lines

            overall.set_postfix_str(f"on Ray ({config.ray.num_workers} workers)")
            yield from compare_lines(config, problems, pending)
            return
        for run in pending:
            overall.set_postfix_str(f"{run.name} {run.multiplier:g}x seed {run.seed}")
            with bar(f"{run.name} {run.multiplier:g}x ({run.tokens} tok) seed {run.seed}") as inner:
                yield run_line((policy, value), problems, config, run, inner)

    overall.update(len(plan) - len(pending))
    for run, row in zip(pending, rows(), strict=True):
        done[_run_key(run)] = row
        if finished is not None:
            finished.record(_run_key(run), row)
        overall.update(1)
    for run in plan:
        runs.append({"agent": run.name, "multiplier": run.multiplier, "budget_tokens": run.tokens, "seed": run.seed,
                     "options": run.options, **done[_run_key(run)]})  # fmt: skip
    overall.close()
    generated = "difficulty" in source_kwargs(config.problems.source, difficulty=default_difficulty)
    return {
        "config": to_dict(config),
        "problems": {
            "count": len(problems),
            "difficulty": (config.problems.difficulty or default_difficulty) if generated else None,
            "ids": [p.id for p in problems],
        },
        "models": {
            "policy_parameters": int(policy.num_parameters),
            "value_parameters": int(getattr(value, "num_parameters", 0) or 0),
        },
        "cot_cost": cot_cost,
        "budgets": [{"multiplier": m, "completion_tokens": t} for m, t in budgets.items()],
        "token_caps": caps,
        "runs": runs,
        "aggregates": aggregate(runs, config),
        "ci": {"method": config.ci_method, "level": config.ci_level, "resamples": config.ci_resamples,
               "over": "problems x seeds"},  # fmt: skip
    }


def _run_key(run: LineRun) -> str:
    """A run's name in the journal (its budget in tokens included: it follows from CoT's cost)."""
    return f"{run.name}|{run.multiplier:g}x|{run.tokens}|seed {run.seed}"


# --- statistics ------------------------------------------------------------------------------


def confidence_interval(
    correct: np.ndarray, method: str = "bootstrap", level: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, low, high) accuracy of a 0/1 matrix `correct` of shape (problems, seeds).

    "bootstrap": percentile interval of the mean over `resamples` resamples of the
    problems (rows), each keeping all its seeds. "wilson": Wilson score interval
    over all problems x seeds outcomes as independent. The interval always
    contains the mean.
    """
    correct = np.asarray(correct, dtype=float)
    if correct.ndim == 1:
        correct = correct[:, None]
    mean = float(correct.mean())
    if method == "bootstrap":
        per_problem = correct.mean(axis=1)
        rng = np.random.default_rng(seed)
        draws = rng.integers(0, len(per_problem), size=(resamples, len(per_problem)))
        means = per_problem[draws].mean(axis=1)
        tail = (1 - level) / 2 * 100
        low, high = (float(v) for v in np.percentile(means, [tail, 100 - tail]))
    elif method == "wilson":
        n = correct.size
        z = statistics.NormalDist().inv_cdf(1 - (1 - level) / 2)
        centre = (mean + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * math.sqrt(mean * (1 - mean) / n + z * z / (4 * n * n))
        low, high = centre - half, centre + half
    else:
        raise ValueError(f"unknown CI method {method!r}; expected one of {list(CI_METHODS)}")
    return mean, max(0.0, min(low, mean)), min(1.0, max(high, mean))


FIGURES = ("completion_tokens", "prompt_tokens", "prm_tokens", "total_tokens", "flops", "policy_calls",
           "prm_calls", "candidates", "steps", "wall_seconds", "wall_seconds_per_problem")  # fmt: skip


def aggregate(runs: Sequence[dict[str, Any]], config: CompareConfig) -> list[dict[str, Any]]:
    """One row per (agent, multiplier): accuracy over problems x seeds with its CI, seed means of the rest."""
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["agent"], run["multiplier"]), []).append(run)
    rows = []
    for (agent, multiplier), group in groups.items():
        correct = np.array([run["correct"] for run in group]).T  # (problems, seeds)
        mean, low, high = confidence_interval(correct, config.ci_method, config.ci_level, config.ci_resamples)
        accuracies = [run["accuracy"] for run in group]
        rows.append(
            {
                "agent": agent,
                "multiplier": multiplier,
                "budget_tokens": group[0]["budget_tokens"],
                "seeds": [run["seed"] for run in group],
                "accuracy": mean,
                "ci_low": low,
                "ci_high": high,
                "accuracy_seed_std": float(np.std(accuracies, ddof=1)) if len(group) > 1 else 0.0,
                **{figure: float(np.mean([run[figure] for run in group])) for figure in FIGURES},
                "max_completion_tokens": max(run["max_completion_tokens"] for run in group),
            }
        )
    return rows


# --- reporting ---------------------------------------------------------------------------------


def format_table(result: dict[str, Any]) -> str:
    """A Markdown table: one row per (agent, budget): accuracy with its CI, tokens and FLOPs per problem."""
    level = round(100 * result["ci"]["level"])
    lines = [
        f"CoT cost (budget unit): {result['cot_cost']:.1f} completion tokens per problem; "
        f"{result['problems']['count']} problems; accuracy CI: {level}% {result['ci']['method']} "
        f"over {result['ci']['over']}",
        *([f"token caps: {caps['solution']} per solution (SC, BoN), {caps['step']} per step (beam, MCTS*)"]
          if (caps := result.get("token_caps")) else []),
        "",
        f"| agent | budget | budget tokens | accuracy | {level}% CI | completion tok/problem | total tok/problem "
        "| FLOPs/problem | s/problem |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["aggregates"]:
        budget = "uncapped" if row["budget_tokens"] is None else str(row["budget_tokens"])
        lines.append(
            f"| {row['agent']} | {row['multiplier']:g}x | {budget} | {row['accuracy']:.3f} "
            f"| [{row['ci_low']:.3f}, {row['ci_high']:.3f}] | {row['completion_tokens']:.1f} "
            f"| {row['total_tokens']:.1f} | {row['flops']:.3g} | {row['wall_seconds_per_problem']:.3f} |"
        )
    return "\n".join(lines)


def write_json(result: dict[str, Any], path: str | Path) -> Path:
    """`result` as JSON at `path`, without the runs' per-problem ``traces`` (they stay small)."""
    result = {**result, "runs": [{k: v for k, v in run.items() if k != "traces"} for run in result.get("runs", [])]}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, default=_json_default) + "\n", encoding="utf-8")
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def plot(result: dict[str, Any], folder: str | Path, stem: str = "search_vs_budget") -> list[Path]:
    """Two PNGs in `folder`: accuracy vs completion tokens per problem (log2 x) and vs FLOPs per problem."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    by_agent: dict[str, list[dict[str, Any]]] = {}
    for row in result["aggregates"]:
        by_agent.setdefault(row["agent"], []).append(row)
    level = round(100 * result["ci"]["level"])
    paths = []
    for key, suffix, label, base in (
        ("completion_tokens", "", "policy completion tokens per problem", 2),
        ("flops", "_flops", "model FLOPs per problem (policy + PRM)", 10),
    ):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for agent, rows in by_agent.items():
            rows = sorted(rows, key=lambda r: r[key])
            x = np.array([r[key] for r in rows], dtype=float)
            y = np.array([r["accuracy"] for r in rows])
            low = np.array([r["ci_low"] for r in rows])
            high = np.array([r["ci_high"] for r in rows])
            marker = "*" if agent == BASELINE else "o"
            style = "--" if agent in REFERENCES else "-"  # oracle reference lines are dashed
            line = ax.errorbar(x, y, yerr=[y - low, high - y], marker=marker, markersize=7, capsize=3, label=agent,
                               linestyle=style)
            if len(rows) > 1:
                ax.fill_between(x, low, high, alpha=0.12, color=line[0].get_color())
            for row, xi, yi in zip(rows, x, y):
                ax.annotate(f"{row['multiplier']:g}x", (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7)
        top = max((row["ci_high"] for row in result["aggregates"]), default=1.0)
        ax.set_ylim(-0.02, min(1.02, max(0.1, top + 0.05)))
        ax.set_xscale("log", base=base)
        ax.set_xlabel(label)
        ax.set_ylabel("accuracy")
        ax.set_title(f"Accuracy at an equal budget ({result['problems']['count']} problems, {level}% CI)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = folder / f"{stem}{suffix}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def write_outputs(result: dict[str, Any], out: str | Path) -> list[Path]:
    """The JSON at `out` and the two plots beside it, named after it (``search_vs_budget.json``:
    ``search_vs_budget.png`` and ``search_vs_budget_flops.png``), so runs in one folder keep theirs."""
    out = Path(out)
    return [write_json(result, out), *plot(result, out.parent, stem=out.stem)]


def run_from_config(
    config: CompareConfig,
    out: str | Path | None = None,
    progress: bool = True,
    stream: IO[str] | None = None,
) -> dict[str, Any]:
    """Load the models, run the comparison, print the table to `stream` and write `out` (with plots).

    With `out`, finished runs are journaled beside it (`journal_path`) until the
    results are written: rerunning after a crash resumes where it stopped.
    """
    stream = stream or sys.stdout
    need_value = any(name in NEEDS_VALUE for name in config.agents)
    models = load_models(config.models, need_value=need_value, progress=progress)
    journal = None if out is None else journal_path(out)
    result = run_comparison(config, models.policy, models.value, progress, default_difficulty=models.difficulty,
                            journal=journal)  # fmt: skip
    result["models"].update({"policy": models.policy_name, "value": models.value_name})
    print(format_table(result), file=stream)
    if out is not None:
        for path in write_outputs(result, out):
            print(f"wrote {path}", file=stream)
        journal.unlink(missing_ok=True)  # the results are written; the next run starts afresh
    return result


def journal_path(out: str | Path) -> Path:
    """Where a comparison writing `out` records its finished runs: ``<out stem>.partial.jsonl`` beside it."""
    out = Path(out)
    return out.with_name(out.stem + ".partial.jsonl")

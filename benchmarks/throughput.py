"""Throughput of MCTS* on the default tiny models, against the raw generation ceiling (issue 13).

    .venv/bin/python benchmarks/throughput.py            # the full run (about 10 minutes on 2 CPU cores)
    .venv/bin/python benchmarks/throughput.py --smoke    # the same measurements, small sizes (< 1 minute)

Everything is measured in ONE process and one run, so that the ratios are fair on a
noisy machine. The models are those of ``configs/countdown/compare.yaml`` (pi_0 and
V_0 of ``configs/countdown/bootstrap.yaml``, cached under ``$REST_MCTS_HOME`` by
``rest-mcts bootstrap``; built on first use), the problems its Countdown test
puzzles, and MCTS* runs with that config's ``mcts_star`` options at ``--multiplier``
(8) x the CoT budget, scaled exactly as ``rest-mcts compare`` scales them
(`agents.compare.scaled_options`: the budget binds, per-step token cap from greedy
CoT). The CoT cost (the budget unit) is measured here as compare measures it:
greedy CoT over the config's test puzzles (``--cot-problems``, default its 100).

What is measured:

1. **The ceiling**: the raw batched generation rate, completion tokens per second
   of `HFPolicy.propose_steps` for B states in one call, with the search's
   sampling options and as many samples per state as the search asks per call (1
   when it draws without replacement, the default; else ``branch``), at B = each
   tree count (the batch of a full round), every prompt read whole (the prefix
   cache is cleared before each call). The states are drawn (seeded) from those
   the search at that tree count sent to the policy, so the ceiling does the
   search's own work at a full batch; calls are repeated, after a warm-up, for at
   least ``--ceiling-seconds`` and 3 calls.
2. **The search, in three modes** (`MODES`): MCTS* over ``--problems`` puzzles, T
   trees at a time (T = ``--trees``: 1, 4, 16, 64), for every seed:

   - ``lockstep``: batches of T trees, every prompt and PRM input read whole (the
     search before prefix reuse; the same models with ``prefix_cache_tokens: 0``);
   - ``lockstep + reuse``: the same batches, prefixes served from the KV caches of
     `agents.models.prefix_cache` (the default);
   - ``refill + reuse``: T trees in play, each finished one replaced from the
     queue (`agents.search.scheduler`; the same as lockstep at T = 1, so not run).

   Figures: problems/s, policy completion tokens/s of wall time (the search's
   generation rate), the same per second spent inside policy calls, the mean fill
   of the policy calls (states per call / T: a lockstep batch thins as its trees
   finish), accuracy, and tokens per problem: computed (policy prompt and
   completion, PRM) and reused (served from a prefix cache or shared by samples).
3. **Time outside model calls**: the policy and the PRM are wrapped in thin timing
   shims (`TimedPolicy`, `TimedValue`, implementing the protocols of
   `agents.models.base`); 1 - (time inside policy and PRM calls) / wall time is the
   search's own Python (selection, backup, tree updates, proposals' dedup and
   legality, the ledger, the scheduler; in the sweep also ``data_mode``'s grading
   of answer nodes). Tokenising, the prefix caches and decoding inside the model
   calls count as model time.
4. **Peak memory**: the process's resident set sampled every 20 ms during each phase
   (peak, and growth over the phase's start), ``ru_maxrss`` of the whole run, and
   in the tree-size sweep the Python heap by `tracemalloc` in a second, untimed pass
   (peak during the search, and what the finished trees retain, per node). On CUDA
   also ``torch.cuda.max_memory_allocated``.
5. **Tree size**: MCTS* with prefix reuse, ``--iterations`` (10 to 100) and no budget
   (``data_mode``: the end gate does not stop the search), ``--sweep-trees`` trees
   at once: problems/s, nodes per tree, seconds per iteration, share outside model
   calls, and memory, as the trees grow. Countdown's small trees may run out of
   expandable nodes first ("exhausted"): nodes per tree is reported beside each
   iteration count.

Which goal of issue 13 each number speaks to:

- **"Lockstep or refill search reaches at least 5x the problems/s of one tree at a
  time, at equal accuracy"**: ``speedup`` (problems/s at T trees / at 1 tree, with
  or without reuse as the row) and ``accuracy`` (the same puzzles and seeds at
  every T).
- **"Search generation runs at 80% or more of the raw ceiling at the same batch
  size"**: ``% of ceiling`` = search completion tokens/s (wall) / ceiling tokens/s
  at B = T. ``policy tok/s`` (tokens per second inside policy calls) and ``fill``
  split the gap between batches thinning as trees finish and time spent outside
  the model.
- **"Time outside model calls is under 10%"**: ``outside`` in both tables (and how
  it grows with tree size in the sweep).
- **"Prefix reuse cuts total computed tokens per problem of MCTS* at 8x by at least
  3x"**: ``computed tok/problem`` of ``lockstep`` over ``lockstep + reuse`` at each T
  (the ``reuse_cut`` goal).

Outputs: a Markdown table on stdout, JSON (``--out``, default
``benchmarks/results/countdown/throughput.json``, or ``benchmarks/results/smoke/`` with
``--smoke``: settings, seeds, machine, every run) and a PNG beside it (``throughput.png``). Use ``--threads`` to pin torch's CPU
threads (on a shared 2-core machine, 1 is often fastest).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import resource
import statistics
import sys
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from agents.compare import agent_options, budget_tokens, load_config, load_models, scaled_options, token_caps  # noqa: E402
from agents.config import ConfigError, to_dict  # noqa: E402
from agents.logs import setup_logging  # noqa: E402
from agents.models.base import Generation, SamplingConfig, Scores  # noqa: E402
from agents.search import Budget, make_agent  # noqa: E402
from reasoning_gym import Problem, ReasoningState, grade  # noqa: E402

CONFIG = ROOT / "configs" / "countdown" / "compare.yaml"
OUT = ROOT / "benchmarks" / "results" / "countdown" / "throughput.json"
SMOKE_OUT = ROOT / "benchmarks" / "results" / "smoke" / "throughput.json"
GOALS = {"speedup": 5.0, "ceiling_share": 0.80, "outside_share": 0.10, "reuse_cut": 3.0}


# --- timing shims around the two model protocols ----------------------------------------------


class CallTimer:
    """Seconds, calls and rows spent inside policy and PRM calls."""

    def __init__(self, record_states: bool = False) -> None:
        self.policy_seconds = 0.0
        self.value_seconds = 0.0
        self.policy_calls = 0
        self.value_calls = 0
        self.policy_states = 0  # states (batch rows before the n samples) over all policy calls
        self.completion_tokens = 0
        # every state sent to the policy (for the ceiling), if recorded
        self.states: list[ReasoningState] | None = [] if record_states else None

    @property
    def model_seconds(self) -> float:
        return self.policy_seconds + self.value_seconds


class TimedPolicy:
    """A `Policy` that times every call of the wrapped one (and forwards everything else)."""

    def __init__(self, inner: Any, timer: CallTimer) -> None:
        self.inner = inner
        self.timer = timer
        self.num_parameters = inner.num_parameters

    def propose_steps(
        self,
        states: Sequence[ReasoningState],
        n: int,
        sampling: SamplingConfig,
        exclude: Sequence[Sequence[str]] | None = None,
    ) -> Generation:
        return self._timed(self.inner.propose_steps, states, n, sampling, exclude=exclude)

    def sample_solutions(self, states: Sequence[ReasoningState], n: int, sampling: SamplingConfig) -> Generation:
        return self._timed(self.inner.sample_solutions, states, n, sampling)

    def _timed(self, method, states, n, sampling, **options) -> Generation:
        start = time.perf_counter()
        generation = method(states, n, sampling, **options)
        self.timer.policy_seconds += time.perf_counter() - start
        self.timer.policy_calls += 1
        self.timer.policy_states += len(states)
        self.timer.completion_tokens += generation.total_completion_tokens
        if self.timer.states is not None:
            self.timer.states.extend(states)
        return generation

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class TimedValue:
    """A `ValueModel` that times every call of the wrapped one (and forwards everything else)."""

    def __init__(self, inner: Any, timer: CallTimer) -> None:
        self.inner = inner
        self.timer = timer
        self.num_parameters = inner.num_parameters

    def score(self, states: Sequence[ReasoningState]) -> Scores:
        start = time.perf_counter()
        scores = self.inner.score(states)
        self.timer.value_seconds += time.perf_counter() - start
        self.timer.value_calls += 1
        return scores

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


# --- memory -------------------------------------------------------------------------------------


def rss_bytes() -> int | None:
    """Resident set size of this process now (Linux), else None."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def max_rss_bytes() -> int:
    """Peak resident set size of the whole run so far (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


class RssSampler:
    """Samples the resident set every `interval` seconds in a daemon thread (peak over a phase)."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.start_bytes = rss_bytes()
        self.peak = self.start_bytes or 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            now = rss_bytes()
            if now is not None and now > self.peak:
                self.peak = now

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        now = rss_bytes()
        if now is not None:
            self.peak = max(self.peak, now)

    def figures(self) -> dict[str, float | None]:
        if self.start_bytes is None:
            return {"rss_peak_mb": None, "rss_growth_mb": None}
        return {"rss_peak_mb": self.peak / 2**20, "rss_growth_mb": (self.peak - self.start_bytes) / 2**20}


def cuda_peak_mb(device: str | None) -> float | None:
    import torch

    if not torch.cuda.is_available() or (device is not None and not str(device).startswith("cuda")):
        return None
    return torch.cuda.max_memory_allocated() / 2**20


def reset_cuda_peak(device: str | None) -> None:
    import torch

    if torch.cuda.is_available() and (device is None or str(device).startswith("cuda")):
        torch.cuda.reset_peak_memory_stats()


# --- the modes ----------------------------------------------------------------------------------

MODES = (("lockstep", False), ("lockstep", True), ("refill", True))
"""(schedule, prefix reuse): the search as it was (lockstep, every prompt read whole), with prefix
reuse, and with refill scheduling on top."""


def mode_name(schedule: str, reuse: bool) -> str:
    return f"{schedule}{' + reuse' if reuse else ''}"


def without_reuse(policy: Any, value: Any) -> tuple[Any, Any]:
    """The same models (shared weights) reading every prompt and PRM input whole."""
    plain = []
    for model in (policy, value):
        config = getattr(model, "config", None)
        if config is None or not hasattr(config, "prefix_cache_tokens"):
            raise ConfigError(f"{type(model).__name__} has no prefix cache to turn off (HFPolicy and HFValueModel do)")
        plain.append(type(model)(model.model, model.tokenizer, replace(config, prefix_cache_tokens=0)))
    return plain[0], plain[1]


# --- the measurements ---------------------------------------------------------------------------


def measure_ceiling(
    policy: Any, states: Sequence[ReasoningState], batch: int, n: int, sampling: SamplingConfig, min_seconds: float,
    seed: int = 0, min_calls: int = 3,
) -> dict:
    """Completion tokens/s of `policy.propose_steps` on full batches of `batch` states drawn from
    `states` (seeded), `n` samples each, no prefix cached: one warm-up call, then calls until
    `min_seconds` and `min_calls`."""
    rng = random.Random(seed)

    def draw() -> list[ReasoningState]:
        return [states[rng.randrange(len(states))] for _ in range(batch)]

    policy.propose_steps(draw(), n, sampling)
    tokens = rows = calls = 0
    seconds = 0.0
    clear_cache = getattr(policy, "clear_cache", lambda: None)
    while calls < min_calls or seconds < min_seconds:
        call = sampling if sampling.seed is None else replace(sampling, seed=sampling.seed + calls)
        chosen = draw()
        clear_cache()  # the raw rate: every prompt read whole
        start = time.perf_counter()
        generation = policy.propose_steps(chosen, n, call)
        seconds += time.perf_counter() - start
        tokens += generation.total_completion_tokens
        rows += batch * n
        calls += 1
    return {
        "batch_states": batch,
        "batch_rows": batch * n,
        "state_pool": len(states),
        "calls": calls,
        "seconds": seconds,
        "completion_tokens": tokens,
        "tokens_per_second": tokens / seconds if seconds > 0 else float("nan"),
        "tokens_per_row": tokens / rows if rows else 0.0,
    }


def run_search(
    models: tuple[Any, Any],
    problems: Sequence[Problem],
    options: dict[str, Any],
    budget: Budget,
    limits: Any,
    trees: int,
    device: str | None,
    schedule: str = "refill",
    trace_memory: bool = False,
    states_out: list[ReasoningState] | None = None,
) -> dict[str, Any]:
    """MCTS* over `problems` with (policy, PRM) `models`, `trees` at a time: in lockstep batches
    (``schedule="lockstep"``) or refilled as trees finish ("refill"); timing, tokens, accuracy and
    memory. The states sent to the policy are appended to `states_out` when given."""
    timer = CallTimer(record_states=states_out is not None)
    policy, value = TimedPolicy(models[0], timer), TimedValue(models[1], timer)
    for model in models:
        clear_cache = getattr(model, "clear_cache", None)
        if clear_cache is not None:
            clear_cache()  # no run reads prompts or scores states for free because an earlier one saw them
    agent = make_agent("mcts_star", policy, value, options)
    results = []
    reset_cuda_peak(device)
    if trace_memory:
        tracemalloc.start()
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
    with RssSampler() as rss:
        start = time.perf_counter()
        if schedule == "refill":
            results = agent.solve(problems, budget, limits, active=trees)
        else:
            for first in range(0, len(problems), trees):
                results.extend(agent.solve(problems[first : first + trees], budget, limits))
        wall = time.perf_counter() - start
    capacity = timer.policy_calls * min(trees, len(problems))  # states the policy calls could have held
    memory: dict[str, Any] = {**rss.figures(), "cuda_peak_mb": cuda_peak_mb(device)}
    if trace_memory:
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        nodes = sum(len(r.tree) for r in results if r.tree is not None)
        memory.update(
            python_peak_mb=(peak - before) / 2**20,
            python_retained_mb=(current - before) / 2**20,  # what the finished trees and results hold
            retained_bytes_per_node=(current - before) / nodes if nodes else None,
        )
    if timer.states is not None:
        states_out.extend(timer.states)
    n = len(problems)
    usage = [r.usage for r in results]
    completion = sum(u.policy_completion_tokens for u in usage)
    nodes = [len(r.tree) for r in results if r.tree is not None]
    batches = math.ceil(n / trees)
    return {
        "problems": n,
        "trees": trees,
        "schedule": schedule,
        "wall_seconds": wall,
        "problems_per_second": n / wall,
        "completion_tokens_per_second": completion / wall,
        "policy_tokens_per_second": timer.completion_tokens / timer.policy_seconds if timer.policy_seconds else None,
        "policy_seconds": timer.policy_seconds,
        "value_seconds": timer.value_seconds,
        "outside_share": max(0.0, 1.0 - timer.model_seconds / wall),
        "policy_calls": timer.policy_calls,
        "value_calls": timer.value_calls,
        "mean_fill": timer.policy_states / capacity if capacity else None,
        "policy_calls_per_batch": timer.policy_calls / batches,
        "accuracy": sum(int(grade(r.trace)) for r in results) / n,
        "completion_tokens_per_problem": completion / n,
        "prompt_tokens_per_problem": sum(u.policy_prompt_tokens for u in usage) / n,
        "prm_tokens_per_problem": sum(u.prm_tokens for u in usage) / n,
        "total_tokens_per_problem": sum(u.total_tokens for u in usage) / n,
        "reused_tokens_per_problem": sum(u.policy_prompt_tokens_reused + u.prm_tokens_reused for u in usage) / n,
        "nodes_per_tree": statistics.fmean(nodes) if nodes else 0.0,
        "max_nodes_per_tree": max(nodes, default=0),
        "stop_reasons": dict(Counter(r.stop_reason for r in results)),
        **memory,
    }


def mean_over_seeds(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Seed means of the numeric figures, wall time included, so that shares such as
    ``policy_seconds / wall_seconds`` hold (the seeds' accuracies kept as a list)."""
    out: dict[str, Any] = {}
    for key, first in rows[0].items():
        values = [row[key] for row in rows]
        if key == "seed" or isinstance(first, bool) or not all(isinstance(v, (int, float)) for v in values):
            if isinstance(first, (str, bool)) and all(v == first for v in values):
                out[key] = first
            continue
        out[key] = values[0] if all(isinstance(v, int) and v == values[0] for v in values) else statistics.fmean(values)
    out["seeds"] = [row["seed"] for row in rows]
    out["accuracy_per_seed"] = [row["accuracy"] for row in rows]
    out["rss_peak_mb"] = max((row["rss_peak_mb"] for row in rows if row.get("rss_peak_mb") is not None), default=None)
    out["stop_reasons"] = dict(sum((Counter(row["stop_reasons"]) for row in rows), Counter()))
    return out


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    config = load_config(args.config)
    models_config = replace(config.models, policy=args.policy or config.models.policy,
                            value=args.value or config.models.value, device=args.device or config.models.device)  # fmt: skip
    load_start = time.perf_counter()
    models = load_models(models_config, progress=False)
    load_seconds = time.perf_counter() - load_start
    cot_size = args.cot_problems or config.problems.size
    pool = list(replace(config.problems, size=max(args.problems, cot_size)).load(models.difficulty))
    problems, cot_problems = pool[: args.problems], pool[:cot_size]
    device = str(getattr(getattr(models.policy, "model", None), "device", models_config.device or "cpu"))
    print(f"throughput: {len(problems)} {config.problems.source} problems; policy {models.policy_name}; "
          f"value {models.value_name}; device {device}; torch threads {torch.get_num_threads()}", file=sys.stderr)  # fmt: skip

    # Warm-up (first-call costs: stop-token tables, kernels), then the CoT budget unit.
    roots = [ReasoningState(problem) for problem in problems]
    models.policy.propose_steps(roots[:1], 2, SamplingConfig(temperature=0.5, max_new_tokens=4, seed=0))
    models.value.score(roots[:1])
    cot_options = to_dict(agent_options("cot", config.agents.get("cot", {})))
    cot = make_agent("cot", models.policy, models.value, cot_options)
    start = time.perf_counter()
    cot_results = []
    for first in range(0, len(cot_problems), config.batch_size):
        cot_results.extend(cot.solve(cot_problems[first : first + config.batch_size], Budget(), config.limits))
    cot_seconds = time.perf_counter() - start
    cot_cost = statistics.fmean(r.usage.policy_completion_tokens for r in cot_results)
    cot_steps = statistics.fmean(len(r.trace.steps) for r in cot_results)
    tokens = budget_tokens(args.multiplier, cot_cost)
    caps = token_caps(cot_cost, cot_steps, config.token_cap_factor)
    base_options = config.agents.get("mcts_star", {})
    options = {seed: scaled_options("mcts_star", base_options, tokens, args.multiplier, seed, config.budget_binding, caps)
               for seed in args.seeds}  # fmt: skip
    search_config = agent_options("mcts_star", options[args.seeds[0]])
    budget = Budget(completion_tokens=tokens)
    print(f"throughput: CoT cost {cot_cost:.1f} tokens/problem; MCTS* at {args.multiplier:g}x = {tokens} tokens, "
          f"branch {search_config.branch}, {search_config.max_new_tokens} tokens/step", file=sys.stderr)  # fmt: skip

    # The search asks one step per state per call when it draws without replacement, else `branch`.
    samples_per_call = 1 if search_config.without_replacement else search_config.branch
    # 1-4: the search in each mode and the ceiling at each tree count (interleaved, so drift hits all).
    pairs = {True: (models.policy, models.value), False: without_reuse(models.policy, models.value)}
    search, runs = [], []
    for trees in args.trees:
        searched: list[ReasoningState] = []  # the states the policy got, for the ceiling
        rows_here = []
        for schedule, reuse in MODES:
            if trees == 1 and schedule == "refill":
                continue  # one tree at a time: refill and lockstep are the same search
            per_seed = []
            for seed in args.seeds:
                row = run_search(pairs[reuse], problems, options[seed], budget, config.limits, trees, args.device,
                                 schedule, states_out=searched if reuse and schedule == "lockstep" else None)  # fmt: skip
                row.update(seed=seed, reuse=reuse)
                per_seed.append(row)
                runs.append(row)
                print(f"throughput: {trees:>3} trees, {mode_name(schedule, reuse)}, seed {seed}: "
                      f"{row['problems_per_second']:.2f} problems/s, {row['completion_tokens_per_second']:.0f} tok/s, "
                      f"outside model {100 * row['outside_share']:.0f}%", file=sys.stderr)  # fmt: skip
            rows_here.append(mean_over_seeds(per_seed))
        ceiling = measure_ceiling(models.policy, searched or roots, trees, samples_per_call,
                                  search_config.sampling, args.ceiling_seconds, seed=args.seeds[0])  # fmt: skip
        print(f"throughput: {trees:>3} trees: ceiling {ceiling['tokens_per_second']:.0f} tok/s "
              f"({ceiling['calls']} calls of {ceiling['batch_rows']} rows)", file=sys.stderr)  # fmt: skip
        rate = ceiling["tokens_per_second"]
        for summary in rows_here:
            summary["ceiling"] = ceiling
            summary["ceiling_share"] = summary["completion_tokens_per_second"] / rate if rate > 0 else float("nan")
        search.extend(rows_here)
    for row in search:
        one = next((r for r in search if r["trees"] == 1 and r["reuse"] == row["reuse"]), None)
        row["speedup"] = row["problems_per_second"] / one["problems_per_second"] if one else None

    # 5: tree size (iterations, no budget: data_mode keeps the end gate from stopping the search).
    sweep = []
    sweep_problems = problems[: args.sweep_problems or args.sweep_trees]
    for iterations in args.iterations:
        sweep_options = {**options[args.seeds[0]], "iterations": iterations, "data_mode": True}
        row = run_search(pairs[True], sweep_problems, sweep_options, Budget(), config.limits, args.sweep_trees,
                         args.device)  # fmt: skip
        row["iterations"] = iterations
        row["seconds_per_iteration"] = row["wall_seconds"] / iterations
        if not args.no_tracemalloc:  # a second, untimed pass: tracemalloc slows Python down
            traced = run_search(pairs[True], sweep_problems, sweep_options, Budget(), config.limits, args.sweep_trees,
                                args.device, trace_memory=True)  # fmt: skip
            row.update({key: traced[key] for key in ("python_peak_mb", "python_retained_mb", "retained_bytes_per_node")})
            row["traced_pass_nodes_per_tree"] = traced["nodes_per_tree"]
        sweep.append(row)
        print(f"throughput: {iterations:>4} iterations: {row['nodes_per_tree']:.0f} nodes/tree, "
              f"{row['problems_per_second']:.2f} problems/s, outside model {100 * row['outside_share']:.0f}%",
              file=sys.stderr)  # fmt: skip

    goals = summarise_goals(search, sweep)
    return {
        "settings": {
            "config": str(args.config),
            "problems": len(problems),
            "problem_ids": [p.id for p in problems],
            "trees": list(args.trees),
            "modes": [mode_name(schedule, reuse) for schedule, reuse in MODES],
            "seeds": list(args.seeds),
            "multiplier": args.multiplier,
            "budget_completion_tokens": tokens,
            "cot_problems": len(cot_problems),
            "cot_cost": cot_cost,
            "cot_steps": cot_steps,
            "cot_accuracy": statistics.fmean(int(grade(r.trace)) for r in cot_results),
            "cot_seconds": cot_seconds,
            "token_caps": caps,
            "mcts_star": options[args.seeds[0]],
            "limits": to_dict(config.limits),
            "ceiling_seconds": args.ceiling_seconds,
            "iterations": list(args.iterations),
            "sweep_trees": args.sweep_trees,
            "sweep_problems": len(sweep_problems),
            "sweep_seed": args.seeds[0],
        },
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": device,
            "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        },
        "models": {
            "policy": models.policy_name,
            "value": models.value_name,
            "policy_parameters": int(models.policy.num_parameters),
            "value_parameters": int(getattr(models.value, "num_parameters", 0) or 0),
            "load_seconds": load_seconds,
        },
        "search": search,
        "runs": runs,
        "tree_size": sweep,
        "max_rss_mb": max_rss_bytes() / 2**20,
        "goals": goals,
    }


def summarise_goals(search: list[dict[str, Any]], sweep: list[dict[str, Any]]) -> dict[str, Any]:
    """Each issue-13 goal this benchmark measures: the number, the target, met or not."""
    many = [row for row in search if row["trees"] > 1]
    best = max(many, key=lambda row: row["problems_per_second"], default=None)
    one = None if best is None else next((r for r in search if r["trees"] == 1 and r["reuse"] == best["reuse"]), None)
    outside = [row["outside_share"] for row in search + sweep]
    shares = {f"{row['trees']} {mode_name(row['schedule'], row['reuse'])}": row["ceiling_share"] for row in search}
    cuts = {}
    for row in search:
        if row["schedule"] == "lockstep" and row["reuse"]:
            plain = next(r for r in search if r["trees"] == row["trees"] and not r["reuse"])
            cuts[str(row["trees"])] = plain["total_tokens_per_problem"] / row["total_tokens_per_problem"]
    return {
        "speedup": {
            "goal": f">= {GOALS['speedup']:g}x problems/s of one tree, at equal accuracy",
            "best_trees": best["trees"] if best else None,
            "best_mode": mode_name(best["schedule"], best["reuse"]) if best else None,
            "value": best["speedup"] if best and one else None,
            "accuracy_one_tree": one["accuracy"] if one else None,
            "accuracy_best": best["accuracy"] if best else None,
            "met": bool(best and one and best["speedup"] >= GOALS["speedup"]),
        },
        "ceiling_share": {
            "goal": f">= {100 * GOALS['ceiling_share']:.0f}% of the raw ceiling at the same batch size",
            "by_trees": shares,
            "met": bool(shares) and all(share >= GOALS["ceiling_share"] for share in shares.values()),
        },
        "outside_share": {
            "goal": f"< {100 * GOALS['outside_share']:.0f}% of wall time outside model calls",
            "max": max(outside, default=None),
            "met": bool(outside) and max(outside) < GOALS["outside_share"],
        },
        "reuse_cut": {
            "goal": f"prefix reuse cuts total computed tokens per problem of MCTS* by >= {GOALS['reuse_cut']:g}x",
            "by_trees": cuts,
            "met": bool(cuts) and min(cuts.values()) >= GOALS["reuse_cut"],
        },
    }


# --- reporting ----------------------------------------------------------------------------------


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _num(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:{spec}}{suffix}"


def format_tables(result: dict[str, Any]) -> str:
    s = result["settings"]
    lines = [
        f"MCTS* at {s['multiplier']:g}x CoT ({s['budget_completion_tokens']} completion tokens/problem; CoT cost "
        f"{s['cot_cost']:.1f}), {s['problems']} problems, seeds {s['seeds']}; policy "
        f"{result['models']['policy_parameters']:,} params, PRM {result['models']['value_parameters']:,}; "
        f"{result['machine']['device']}, {result['machine']['torch_threads']} torch threads",
        "",
        "| trees | mode | ceiling tok/s | search tok/s | % of ceiling | policy tok/s | fill | problems/s | speedup "
        "| accuracy | outside model | computed tok/problem | reused tok/problem | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["search"]:
        lines.append(
            f"| {row['trees']} | {mode_name(row['schedule'], row['reuse'])} "
            f"| {row['ceiling']['tokens_per_second']:.0f} "
            f"| {row['completion_tokens_per_second']:.0f} | {100 * row['ceiling_share']:.0f}% "
            f"| {_num(row.get('policy_tokens_per_second'), '.0f')} | {_num(row.get('mean_fill'), '.2f')} "
            f"| {row['problems_per_second']:.2f} | {_num(row.get('speedup'), '.1f', 'x')} | {row['accuracy']:.3f} "
            f"| {100 * row['outside_share']:.1f}% | {row['total_tokens_per_problem']:.0f} "
            f"| {row['reused_tokens_per_problem']:.0f} | {_mb(row.get('rss_peak_mb'))} |"
        )
    lines += [
        "",
        f"Tree size: {s['sweep_problems']} problems, {s['sweep_trees']} trees at once, prefix reuse, no budget, "
        f"seed {s['sweep_seed']}",
        "",
        "| iterations | nodes/tree | problems/s | ms/iteration | outside model | Python peak MB | retained KB/node "
        "| peak RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["tree_size"]:
        per_node = row.get("retained_bytes_per_node")
        lines.append(
            f"| {row['iterations']} | {row['nodes_per_tree']:.0f} (max {row['max_nodes_per_tree']}) "
            f"| {row['problems_per_second']:.2f} | {1000 * row['seconds_per_iteration']:.0f} "
            f"| {100 * row['outside_share']:.1f}% | {_num(row.get('python_peak_mb'), '.1f')} "
            f"| {'-' if per_node is None else f'{per_node / 1024:.1f}'} | {_mb(row.get('rss_peak_mb'))} |"
        )
    g = result["goals"]
    speed, share, outside, cut = g["speedup"], g["ceiling_share"], g["outside_share"], g["reuse_cut"]
    verdict = {True: "met", False: "NOT met"}
    lines += ["", "Goals (issue 13):"]
    if speed["value"] is not None:
        lines.append(f"- {speed['goal']}: {speed['value']:.1f}x at {speed['best_trees']} trees, {speed['best_mode']} "
                     f"(accuracy {speed['accuracy_best']:.3f} vs {speed['accuracy_one_tree']:.3f}): "
                     f"{verdict[speed['met']]}")  # fmt: skip
    lines.append(f"- {share['goal']}: " + ", ".join(f"{100 * v:.0f}% at {k}" for k, v in share["by_trees"].items())
                 + f": {verdict[share['met']]}")  # fmt: skip
    if outside["max"] is not None:
        lines.append(f"- {outside['goal']}: at most {100 * outside['max']:.1f}%: {verdict[outside['met']]}")
    if cut["by_trees"]:
        lines.append(f"- {cut['goal']}: " + ", ".join(f"{v:.1f}x at {k} trees" for k, v in cut["by_trees"].items())
                     + f": {verdict[cut['met']]}")  # fmt: skip
    lines.append(f"- peak resident memory of the whole run: {result['max_rss_mb']:.0f} MB")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> Path:
    """Four panels: problems/s and tokens/s against trees per mode, computed tokens per problem, and tree size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    search, sweep = result["search"], result["tree_size"]
    modes = {mode_name(row["schedule"], row["reuse"]): [] for row in search}
    for row in search:
        modes[mode_name(row["schedule"], row["reuse"])].append(row)
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    ax = axes[0][0]
    for name, rows in modes.items():
        ax.plot([r["trees"] for r in rows], [r["problems_per_second"] for r in rows], "o-", label=name)
        for row in rows:
            ax.annotate(f"{_num(row.get('speedup'), '.1f', 'x')}, acc {row['accuracy']:.2f}",
                        (row["trees"], row["problems_per_second"]),
                        textcoords="offset points", xytext=(4, 4), fontsize=7)  # fmt: skip
    ones = [row["problems_per_second"] for row in search if row["trees"] == 1 and row["reuse"]]
    if ones:
        ax.axhline(GOALS["speedup"] * ones[0], color="grey", linestyle=":",
                   label=f"goal: {GOALS['speedup']:g}x one tree (with reuse)")  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_xlabel("trees at once")
    ax.set_ylabel("problems/s")
    ax.set_title(f"MCTS* speed at {result['settings']['multiplier']:g}x CoT budget")
    ax.legend(fontsize=8)

    ax = axes[0][1]
    ceilings = {row["trees"]: row["ceiling"]["tokens_per_second"] for row in search}
    trees = sorted(ceilings)
    ax.plot(trees, [ceilings[t] for t in trees], "s--", color="black", label="ceiling: batched propose_steps")
    ax.plot(trees, [GOALS["ceiling_share"] * ceilings[t] for t in trees], ":", color="grey", label="goal: 80% of ceiling")
    for name, rows in modes.items():
        ax.plot([r["trees"] for r in rows], [r["completion_tokens_per_second"] for r in rows], "o-", label=name)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("trees at once (ceiling batch: trees x samples per call)")
    ax.set_ylabel("completion tokens/s of wall time")
    ax.set_title("Generation rate against the ceiling")
    ax.legend(fontsize=8)

    ax = axes[1][0]
    for name, rows in modes.items():
        ax.plot([r["trees"] for r in rows], [r["total_tokens_per_problem"] for r in rows], "o-", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("trees at once")
    ax.set_ylabel("computed tokens per problem (policy + PRM)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Prefix reuse (outside model calls: at most "
                 f"{100 * max(r['outside_share'] for r in search + sweep):.1f}% of wall time)")  # fmt: skip
    ax.legend(fontsize=8)

    ax = axes[1][1]
    nodes = [row["nodes_per_tree"] for row in sweep]
    ax.plot(nodes, [row["problems_per_second"] for row in sweep], "o-", color="C0", label="problems/s")
    for row in sweep:
        ax.annotate(f"{row['iterations']} it, {100 * row['outside_share']:.0f}% outside", (row["nodes_per_tree"],
                    row["problems_per_second"]), textcoords="offset points", xytext=(4, 4), fontsize=7)  # fmt: skip
    ax.set_xlabel(f"mean nodes per tree (iterations {', '.join(str(r['iterations']) for r in sweep)})")
    ax.set_ylabel("problems/s", color="C0")
    ax.set_title(f"Tree size ({result['settings']['sweep_trees']} trees at once, no budget)")
    memory = [row.get("python_peak_mb") for row in sweep]
    if any(m is not None for m in memory):
        twin = ax.twinx()
        twin.plot(nodes, [m if m is not None else float("nan") for m in memory], "s--", color="C3")
        twin.set_ylabel("Python heap peak MB (tracemalloc)", color="C3")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# --- command line -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=CONFIG, help="CompareConfig YAML: models, problems, "
                        "MCTS* options, limits (default: configs/countdown/compare.yaml)")  # fmt: skip
    parser.add_argument("--out", type=Path, help="JSON output; the PNG goes beside it "
                        "(default: benchmarks/results/countdown/throughput.json; results/smoke/ with --smoke)")  # fmt: skip
    parser.add_argument("--smoke", action="store_true", help="small sizes: 8 problems, trees 1 4, seed 0, "
                        "iterations 5 10, 4 sweep trees (under a minute)")  # fmt: skip
    parser.add_argument("--problems", type=int, help="puzzles solved at every tree count (default 128: refill "
                        "needs a queue beyond the largest tree count)")  # fmt: skip
    parser.add_argument("--trees", type=int, nargs="+", help="trees at once (default 1 4 16 64)")
    parser.add_argument("--seeds", type=int, nargs="+", help="sampling seeds (default 0 1 2)")
    parser.add_argument("--multiplier", type=float, default=8.0, help="budget in CoT costs (default 8)")
    parser.add_argument("--cot-problems", type=int, help="puzzles greedy CoT solves to set the budget unit "
                        "(default: the config's problems.size, as in rest-mcts compare; --problems with --smoke)")  # fmt: skip
    parser.add_argument("--ceiling-seconds", type=float, help="least time spent measuring each ceiling "
                        "(default 3; 0.5 with --smoke)")  # fmt: skip
    parser.add_argument("--iterations", type=int, nargs="+", help="tree-size sweep (default 10 25 50 100)")
    parser.add_argument("--sweep-trees", type=int, help="trees at once in the tree-size sweep (default 16)")
    parser.add_argument("--sweep-problems", type=int, help="puzzles in the tree-size sweep (default: --sweep-trees)")
    parser.add_argument("--no-tracemalloc", action="store_true", help="skip the traced memory pass of the sweep")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", help="cpu, cuda, ... (default: the config's, else CUDA when available)")
    parser.add_argument("--policy", help="override models.policy (HF folder, Hub id, .gguf or preset YAML)")
    parser.add_argument("--value", help="override models.value (PRM folder)")
    parser.add_argument("--no-plot", action="store_true", help="write no PNG")
    args = parser.parse_args(argv)
    smoke = {"problems": 8, "trees": [1, 4], "seeds": [0], "ceiling_seconds": 0.5, "iterations": [5, 10], "sweep_trees": 4}
    full = {"problems": 128, "trees": [1, 4, 16, 64], "seeds": [0, 1, 2], "ceiling_seconds": 3.0,
            "iterations": [10, 25, 50, 100], "sweep_trees": 16}  # fmt: skip
    for key, default in (smoke if args.smoke else full).items():
        if getattr(args, key) is None:
            setattr(args, key, default)
    if args.smoke and args.cot_problems is None:
        args.cot_problems = args.problems
    if args.cot_problems is not None and args.cot_problems < 1:
        parser.error("--cot-problems must be >= 1")
    if args.out is None:
        args.out = SMOKE_OUT if args.smoke else OUT
    for name in ("problems", "sweep_trees"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.ceiling_seconds < 0:
        parser.error("--ceiling-seconds must be >= 0")
    if min(args.trees) < 1 or min(args.iterations) < 1 or args.multiplier <= 0:
        parser.error("--trees and --iterations must be >= 1 and --multiplier > 0")
    args.trees = sorted(set(args.trees))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    try:
        result = measure(args)
    except (ConfigError, FileNotFoundError) as error:
        print(f"throughput: error: {error}", file=sys.stderr)
        return 2
    result["command"] = sys.argv if argv is None else ["benchmarks/throughput.py", *argv]
    print(format_tables(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=_json_default) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out}", file=sys.stderr)
    if not args.no_plot:
        print(f"wrote {plot(result, args.out.with_suffix('.png'))}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

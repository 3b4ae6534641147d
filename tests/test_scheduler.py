"""Refill scheduling (`agents.search.scheduler`): slots refilled in order, results as one problem at a time."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from agents.models.base import Generation
from agents.models.hf_policy import HFPolicy, HFPolicyConfig
from agents.models.hf_value import HFValueConfig, HFValueModel
from agents.models.tiny import TinyModelConfig, build_char_tokenizer, build_policy_model, build_value_model
from agents.search import Budget, make_agent
from agents.search.scheduler import run_rounds
from scripted import ScriptedPRM
from reasoning_gym import EpisodeLimits, Problem
from reasoning_gym.sources.puzzles import generate_puzzle

SMALL = TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_positions=512)
LIMITS = EpisodeLimits(max_steps=6)


def test_finished_slots_are_refilled_from_the_queue_in_order():
    needs = [3, 1, 2, 1, 1]  # rounds each problem takes
    done_rounds = [0] * len(needs)
    started, rounds, finished_order = [], [], []

    def advance(running):
        rounds.append(list(running))
        for i in running:
            done_rounds[i] += 1
        return [i for i in running if done_rounds[i] == needs[i]]

    run_rounds(len(needs), 2, started.append, advance, finished_order.append)
    assert rounds == [[0, 1], [0, 2], [0, 2], [3, 4]]
    assert started == [0, 1, 2, 3, 4] and finished_order == [1, 0, 2, 3, 4]
    rounds.clear()
    done_rounds[:] = [0] * len(needs)
    run_rounds(len(needs), None, lambda i: None, advance)
    assert rounds[0] == [0, 1, 2, 3, 4]  # no limit: every problem in play at once (lockstep)
    with pytest.raises(ValueError, match="active"):
        run_rounds(3, 0, lambda i: None, advance)


class CountingPolicy:
    """Forwards to an `HFPolicy`, recording how many states each call carried."""

    def __init__(self, inner: HFPolicy) -> None:
        self.inner, self.sizes = inner, []
        self.num_parameters = inner.num_parameters

    def propose_steps(self, states, n, sampling, exclude=None):
        self.sizes.append(len(states))
        return self.inner.propose_steps(states, n, sampling, exclude)

    def sample_solutions(self, states, n, sampling):
        self.sizes.append(len(states))
        return self.inner.sample_solutions(states, n, sampling)


@pytest.fixture(scope="module")
def models():
    tokenizer = build_char_tokenizer()
    torch.manual_seed(0)
    policy = HFPolicy(build_policy_model(SMALL, tokenizer), tokenizer, HFPolicyConfig(prompt_format="plain"))
    value = HFValueModel(build_value_model(SMALL, tokenizer), tokenizer, HFValueConfig(batch_size=16))
    return policy, value


def problems(count: int, start: int = 0):
    return [generate_puzzle(index, seed=3, config="easy") for index in range(start, start + count)]


def outcome(result) -> tuple:
    nodes = tuple(result.tree.state[n].steps for n in range(len(result.tree))) if result.tree is not None else ()
    return result.trace.steps, result.stop_reason, result.usage.policy_completion_tokens, result.usage.prm_calls, nodes


@pytest.mark.parametrize(
    "name, options",
    [
        ("mcts_star", {"temperature": 0.0, "iterations": 6, "branch": 2, "roll_forward_steps": 1, "max_new_tokens": 8}),
        ("beam", {"temperature": 0.0, "beam_width": 2, "expansions": 2, "max_new_tokens": 8}),
        ("self_consistency", {"temperature": 0.0, "max_samples": 4, "samples_per_round": 2, "max_new_tokens": 40}),
    ],
)
def test_greedy_refill_gives_the_results_of_one_problem_at_a_time(models, name, options):
    policy, value = models
    counting = CountingPolicy(policy)
    agent = make_agent(name, counting, value, options)
    batch = problems(7)
    budget = Budget(completion_tokens=120)
    alone = [make_agent(name, policy, value, options).solve([p], budget, LIMITS)[0] for p in batch]
    done = []
    refilled = agent.solve(batch, budget, LIMITS, active=3, on_done=done.append)
    assert [outcome(r) for r in refilled] == [outcome(r) for r in alone]
    assert sorted(done) == list(range(7)) and max(counting.sizes) <= 3 * options.get("beam_width", 1)


class QuickOrSlow:
    """Answers a problem whose id starts with "quick" at once; writes fresh filler steps for the others."""

    num_parameters = 1

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self._filler = 0

    def propose_steps(self, states, n, sampling, exclude=None):
        self.sizes.append(len(states))
        texts = [[self._step(state) for _ in range(n)] for state in states]
        return Generation(texts, [1] * len(states), [n] * len(states))

    def _step(self, state) -> str:
        if state.problem.id.startswith("quick"):
            return "The answer is 7"
        self._filler += 1
        return f"filler {self._filler}"


def test_refill_keeps_the_batch_full_where_lockstep_thins_out():
    """Quick problems end after one iteration: lockstep batches thin out, refilled ones stay full."""
    batch = [Problem(f"{'quick' if i % 2 else 'slow'}-{i}", "What is 3 + 4?", "7") for i in range(12)]
    prm = ScriptedPRM({("The answer is 7",): 1.0}, default=0.5)
    options = {"iterations": 5, "branch": 2, "roll_forward_steps": 0, "without_replacement": False, "max_retries": 0}
    lockstep, refill = QuickOrSlow(), QuickOrSlow()
    for start in range(0, len(batch), 4):
        make_agent("mcts_star", lockstep, prm, options).solve(batch[start : start + 4], Budget())
    results = make_agent("mcts_star", refill, prm, options).solve(batch, Budget(), active=4)
    assert [r.stop_reason for r in results] == ["iterations", "solved"] * 6
    assert lockstep.sizes == [4, 2, 2, 2, 2] * 3  # the quick half leaves after the first round
    # Refill: each quick problem's slot goes to the next problem in the queue.
    assert sum(refill.sizes) == sum(lockstep.sizes) and len(refill.sizes) < len(lockstep.sizes)
    assert all(size == 4 for size in refill.sizes[:-4])


def test_sampled_refill_matches_one_at_a_time_in_distribution(models):
    """Under sampling the draws differ (calls are batched differently) but not what they add up to."""
    policy, value = models
    options = {"temperature": 1.0, "iterations": 6, "branch": 2, "roll_forward_steps": 1, "max_new_tokens": 8}
    batch = problems(24, start=100)
    budget = Budget(completion_tokens=80)
    figures = []
    for active in (1, 6):
        agent = make_agent("mcts_star", policy, value, {**options, "seed": 11})
        results = agent.solve(batch, budget, LIMITS, active=active)
        figures.append(([r.usage.policy_completion_tokens for r in results], [len(r.tree) for r in results]))
    for one, refilled in zip(*figures):
        spread = math.sqrt((statistics.variance(one) + statistics.variance(refilled)) / len(batch))
        assert abs(statistics.fmean(one) - statistics.fmean(refilled)) <= 3 * spread + 1e-9
    assert figures[0] != figures[1]  # the draws did differ

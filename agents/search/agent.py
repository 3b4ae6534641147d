"""The contract every search agent meets: `SearchAgent.solve` -> `SearchResult`s, and `play_episode`.

An agent solves many problems at once in rounds: each round, the model calls of
every problem in play go into one batched policy call and one batched PRM call,
and each problem is charged its own rows (`agents.search.ledger`). With
`active`, at most that many problems are in play and each finished one's slot
goes to the next (`agents.search.scheduler`); by default all start together. A
single problem is a batch of one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym

from agents.search.budget import Budget, Usage
from agents.search.ledger import Ledger
from agents.search.tree import Tree
from agents.search.voting import select
from reasoning_gym import EpisodeLimits, Problem, ReasoningState


@dataclass
class SearchResult:
    """What a search found for one problem and what it cost.

    Attributes:
        answer: the chosen final answer; always ``trace.answer`` (None when the
            chosen trace states none, e.g. the budget ran out first).
        trace: the chosen trace, a state reachable from the problem by
            `apply_step` under the search's `EpisodeLimits`.
        traces: every candidate the agent chose among (sampled solutions, final
            beams, tree leaves), in the order the agent made them.
        scores: the score of each candidate in `traces` (PRM aggregate, value,
            or 1.0 for an unscored vote), same length.
        usage: what this problem's search used.
        stop_reason: why the search ended: ``"done"`` (the algorithm finished),
            ``"budget"`` (the next call might have exceeded the budget), and for
            MCTS* also ``"solved"`` (a node reached the end gate) and
            ``"exhausted"`` (no expandable leaf left).
        tree: the search tree, for tree searches.
    """

    answer: str | None
    trace: ReasoningState
    traces: list[ReasoningState]
    scores: list[float]
    usage: Usage
    stop_reason: str
    tree: Tree | None = None


def choose(
    ledger: Ledger,
    problem: int,
    root: ReasoningState,
    traces: list[ReasoningState],
    scores: list[float],
    mode: str,
    *,
    chosen: int | None = None,
    stop_reason: str = "done",
    tree: Tree | None = None,
) -> SearchResult:
    """The result of problem `problem`: ``traces[chosen]`` if given, else the candidate
    `voting.select` picks by `mode`, else `root` when there are no candidates.

    The stop reason is ``"budget"`` whenever the ledger refused the problem a call.
    """
    if chosen is None and traces:
        chosen = select(traces, scores, mode)
    trace = root if chosen is None else traces[chosen]
    reason = "budget" if ledger.out_of_budget[problem] else stop_reason
    return SearchResult(trace.answer, trace, traces, scores, ledger.usage[problem], reason, tree)


@runtime_checkable
class SearchAgent(Protocol):
    """Solves batches of problems under a per-problem budget."""

    def solve(
        self,
        problems: Sequence[Problem],
        budget: Budget,
        limits: EpisodeLimits = EpisodeLimits(),
        *,
        active: int | None = None,
        on_done: Callable[[int], None] | None = None,
    ) -> list[SearchResult]:
        """One result per problem, in order; every problem's usage fits `budget` (see `agents.search.budget`).

        `active`: most problems searched at once (None: all); `on_done(i)` is called
        as problem i's search ends (for progress bars).
        """
        ...


def play_episode(agent: SearchAgent, env: gym.Env, budget: Budget) -> tuple[float, dict[str, Any]]:
    """Solve the live episode's problem, then play the chosen trace in `env`.

    `env` must have been reset (``gym.make("ReasoningMath-v0")``, then ``reset``);
    the agent searches under the environment's own `EpisodeLimits`, so the trace
    replays step for step. Returns the episode's total reward and the last step's
    info plus ``"search_result"``.
    """
    base = env.unwrapped
    start = base.get_state()
    if start.steps:
        raise ValueError("play_episode needs a freshly reset environment (the state already has steps)")
    result = agent.solve([start.problem], budget, base.limits)[0]
    reward, info = 0.0, {"problem_id": start.problem.id, "steps": (), "answer": None}
    for step in result.trace.steps:
        _, step_reward, terminated, truncated, info = env.step(step)
        reward += float(step_reward)
        if terminated or truncated:
            break
    return reward, {**info, "search_result": result}

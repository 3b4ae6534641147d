"""Self-consistency (Wang et al., 2022): majority vote over sampled solutions.

N adapts to the budget: solutions are sampled in rounds until `max_samples` or
until the next round might exceed the budget.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agents.models.base import Policy
from agents.search.agent import SearchResult, choose
from agents.search.budget import Budget
from agents.search.ledger import Ledger
from agents.search.sampling import SolutionSamplingOptions, close_sampled, sample_round
from agents.search.scheduler import forgetting, run_rounds
from reasoning_gym import EpisodeLimits, Problem, ReasoningState


@dataclass(frozen=True)
class SelfConsistencyConfig(SolutionSamplingOptions):
    """Options of `SelfConsistency`: only sampling (see `SolutionSamplingOptions`)."""


class SelfConsistency:
    """The most frequent answer among sampled solutions (ties: the answer seen first)."""

    def __init__(self, policy: Policy, config: SelfConsistencyConfig = SelfConsistencyConfig()) -> None:
        self.policy = policy
        self.config = config

    def solve(
        self,
        problems: Sequence[Problem],
        budget: Budget,
        limits: EpisodeLimits = EpisodeLimits(),
        *,
        active: int | None = None,
        on_done: Callable[[int], None] | None = None,
    ) -> list[SearchResult]:
        config = self.config
        ledger = Ledger(budget, len(problems))
        roots = [ReasoningState(problem) for problem in problems]
        traces: list[list[ReasoningState]] = [[] for _ in problems]
        drawn = [0] * len(problems)

        def advance(running: Sequence[int]) -> list[int]:
            for i, new in sample_round(self.policy, ledger, roots, running, drawn, config, limits).items():
                traces[i].extend(new)
            return close_sampled(ledger, running, drawn, config.max_samples)

        done = forgetting((self.policy,), problems, on_done)  # cached prefixes go with the problem
        run_rounds(len(problems), active, ledger.begin, advance, done)
        return [choose(ledger, i, roots[i], traces[i], [1.0] * len(traces[i]), "vote") for i in range(len(problems))]

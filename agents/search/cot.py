"""Chain of thought: one greedy solution per problem, the cheapest baseline."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agents.models.base import Policy, SamplingConfig
from agents.search.agent import SearchResult, choose
from agents.search.budget import Budget
from agents.search.ledger import Ledger
from agents.search.sampling import sample_rounds
from reasoning_gym import EpisodeLimits, Problem, ReasoningState


@dataclass(frozen=True)
class CoTConfig:
    """Options of `ChainOfThought`.

    Attributes:
        max_new_tokens: cap on tokens of the solution.
    """

    max_new_tokens: int = 320

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")


class ChainOfThought:
    """Greedy decoding of a whole solution; the answer is whatever it states."""

    def __init__(self, policy: Policy, config: CoTConfig = CoTConfig()) -> None:
        self.policy = policy
        self.config = config

    def solve(
        self, problems: Sequence[Problem], budget: Budget, limits: EpisodeLimits = EpisodeLimits()
    ) -> list[SearchResult]:
        ledger = Ledger(budget, len(problems))
        roots = [ReasoningState(problem) for problem in problems]
        greedy = SamplingConfig(temperature=0.0, max_new_tokens=self.config.max_new_tokens)
        traces: list[list[ReasoningState]] = [[] for _ in problems]
        for round_traces in sample_rounds(self.policy, ledger, roots, greedy, 1, 1, limits):
            for i, new in round_traces.items():
                traces[i].extend(new)
        ledger.close_all()
        return [choose(ledger, i, roots[i], traces[i], [1.0] * len(traces[i]), "best") for i in range(len(problems))]

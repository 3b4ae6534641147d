"""Chain of thought: one greedy solution per problem, the cheapest baseline.

It is self-consistency with a single greedy sample, so both share one code path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agents.models.base import Policy
from agents.search.agent import SearchResult
from agents.search.budget import Budget
from agents.search.self_consistency import SelfConsistency, SelfConsistencyConfig
from reasoning_gym import EpisodeLimits, Problem


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
        self.config = config
        greedy = SelfConsistencyConfig(
            temperature=0.0, max_new_tokens=config.max_new_tokens, max_samples=1, samples_per_round=1
        )
        self._one_sample = SelfConsistency(policy, greedy)

    def solve(
        self,
        problems: Sequence[Problem],
        budget: Budget,
        limits: EpisodeLimits = EpisodeLimits(),
        *,
        active: int | None = None,
        on_done: Callable[[int], None] | None = None,
    ) -> list[SearchResult]:
        return self._one_sample.solve(problems, budget, limits, active=active, on_done=on_done)

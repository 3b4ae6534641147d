"""Best-of-N with a process reward model: sample N solutions, score every step, pick.

Each solution's steps are scored by the PRM at every prefix (V after step 1,
after steps 1-2, ...), and the prefix values are aggregated into one score:

- ``"min"``: the weakest step (a chain is as good as its worst link);
- ``"last"``: the value of the whole solution;
- ``"product"``: the product of the prefix values.

Then ``answer_mode="best"`` takes the highest-scoring solution that states an
answer, and ``"vote"`` is PRM-weighted voting: the answer whose solutions' scores
sum highest. A solution with no steps scores 0. N adapts to the budget as in
self-consistency; each round's solutions are scored by one batched PRM call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agents.models.base import Policy, ValueModel
from agents.search.agent import SearchResult, choose
from agents.search.budget import Budget
from agents.search.ledger import Ledger
from agents.search.sampling import SolutionSamplingOptions, close_sampled, sample_round
from agents.search.scheduler import forgetting, run_rounds
from agents.search.traces import prefixes
from agents.search.voting import ANSWER_MODES
from reasoning_gym import EpisodeLimits, Problem, ReasoningState

AGGREGATIONS = {
    "min": lambda values: min(values, default=0.0),
    "last": lambda values: values[-1] if values else 0.0,
    "product": lambda values: math.prod(values) if values else 0.0,
}


@dataclass(frozen=True)
class BestOfNConfig(SolutionSamplingOptions):
    """Options of `BestOfN` (and sampling, see `SolutionSamplingOptions`).

    Attributes:
        aggregation: how prefix values make a solution's score: "min", "last" or "product".
        answer_mode: "best" (highest score) or "vote" (PRM-weighted vote).
    """

    aggregation: str = "min"
    answer_mode: str = "best"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {sorted(AGGREGATIONS)}, got {self.aggregation!r}")
        if self.answer_mode not in ANSWER_MODES:
            raise ValueError(f"answer_mode must be one of {ANSWER_MODES}, got {self.answer_mode!r}")


class BestOfN:
    """N sampled solutions ranked (or voted) by aggregated PRM step values."""

    def __init__(self, policy: Policy, value: ValueModel, config: BestOfNConfig = BestOfNConfig()) -> None:
        self.policy = policy
        self.value = value
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
        scores: list[list[float]] = [[] for _ in problems]
        drawn = [0] * len(problems)

        def advance(running: Sequence[int]) -> list[int]:
            round_traces = sample_round(self.policy, ledger, roots, running, drawn, config, limits)
            for i, (new, new_scores) in self._score(ledger, round_traces).items():
                traces[i].extend(new)
                scores[i].extend(new_scores)
            return close_sampled(ledger, running, drawn, config.max_samples)

        done = forgetting((self.policy, self.value), problems, on_done)  # cached prefixes go with the problem
        run_rounds(len(problems), active, ledger.begin, advance, done)
        return [choose(ledger, i, roots[i], traces[i], scores[i], config.answer_mode) for i in range(len(problems))]

    def _score(
        self, ledger: Ledger, round_traces: dict[int, list[ReasoningState]]
    ) -> dict[int, tuple[list[ReasoningState], list[float]]]:
        """Score every prefix of every trace in one PRM call; {problem: (traces, scores)}.

        A problem the ledger refuses the PRM call loses this round's traces.
        """
        requests = [(i, prefix) for i, new in round_traces.items() for trace in new for prefix in prefixes(trace)]
        values = iter(ledger.score(self.value, requests))
        aggregate = AGGREGATIONS[self.config.aggregation]
        scored: dict[int, tuple[list[ReasoningState], list[float]]] = {}
        for i, new in round_traces.items():
            prefix_values = [[next(values) for _ in trace.steps] for trace in new]
            if ledger.open(i):
                scored[i] = (new, [aggregate(row) for row in prefix_values])
        return scored

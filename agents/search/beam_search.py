"""Step-level beam search guided by the PRM.

Each round, every unfinished beam proposes `expansions` distinct next steps;
the PRM scores the new states; the `beam_width` highest-valued states among the
new states and the finished beams survive (ties: finished beams first, then
proposal order). A state is finished when it states an answer or hits an
episode limit. The search stops when every beam is finished, after
``limits.max_steps`` rounds, or when the next call might exceed the budget.
The answer is chosen among the final beams by their PRM values
(``answer_mode``: "best" or a value-weighted "vote").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agents.models.base import Policy, ValueModel
from agents.search.agent import SearchResult, choose
from agents.search.budget import Budget
from agents.search.ledger import Ledger
from agents.search.proposals import propose_children
from agents.search.sampling import SamplingOptions
from agents.search.scheduler import forgetting, run_rounds
from agents.search.traces import is_finished
from agents.search.voting import ANSWER_MODES
from reasoning_gym import EpisodeLimits, Problem, ReasoningState


@dataclass(frozen=True)
class BeamSearchConfig(SamplingOptions):
    """Options of `BeamSearch` (and per-step sampling, see `SamplingOptions`).

    Attributes:
        beam_width: states kept per round.
        expansions: distinct next steps proposed per unfinished beam per round.
        answer_mode: "best" (highest value) or "vote" (value-weighted vote).
    """

    beam_width: int = 3
    expansions: int = 3
    answer_mode: str = "best"

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("beam_width", "expansions"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.answer_mode not in ANSWER_MODES:
            raise ValueError(f"answer_mode must be one of {ANSWER_MODES}, got {self.answer_mode!r}")


Beam = list[tuple[ReasoningState, float]]  # (state, PRM value), best first


class BeamSearch:
    """PRM-guided step-level beam search over many problems at once (`agents.search.scheduler`)."""

    def __init__(self, policy: Policy, value: ValueModel, config: BeamSearchConfig = BeamSearchConfig()) -> None:
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
        ledger = Ledger(budget, len(problems))
        roots = [ReasoningState(problem) for problem in problems]
        beams: list[Beam] = [[(root, 0.0)] for root in roots]
        rounds = [0] * len(problems)

        def advance(running: Sequence[int]) -> list[int]:
            """One round for every beam in play; the problems whose search ended."""
            growing = [
                (i, state, ())
                for i in running
                if ledger.open(i)
                for state, _ in beams[i]
                if not is_finished(state, limits)
            ]
            proposals = propose_children(
                ledger, self.policy, growing, self.config.expansions, self.config.sampling, limits, retries=0
            )
            candidates = [(i, child) for (i, _, _), children in zip(growing, proposals) for child in children]
            values = ledger.score(self.value, candidates)
            new: dict[int, Beam] = {}
            for (i, child), value in zip(candidates, values):
                if value is not None:
                    new.setdefault(i, []).append((child, value))
            for i, scored in new.items():
                beams[i] = self.prune(beams[i], scored, limits)
            for i in running:
                rounds[i] += 1
                if rounds[i] >= limits.max_steps or all(is_finished(state, limits) for state, _ in beams[i]):
                    ledger.close(i)
            return [i for i in running if not ledger.open(i)]

        done = forgetting((self.policy, self.value), problems, on_done)  # cached prefixes go with the problem
        run_rounds(len(problems), active, ledger.begin, advance, done)
        return [
            choose(ledger, i, roots[i], [s for s, _ in beam], [v for _, v in beam], self.config.answer_mode)
            for i, beam in enumerate(beams)
        ]

    def prune(self, beam: Beam, scored: Beam, limits: EpisodeLimits) -> Beam:
        """The `beam_width` best of the finished beams and the new scored states (stable by value)."""
        finished = [(state, value) for state, value in beam if is_finished(state, limits)]
        pool = finished + scored
        return sorted(pool, key=lambda item: -item[1])[: self.config.beam_width]

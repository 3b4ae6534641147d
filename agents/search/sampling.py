"""Sampling options shared by the agents' configs, and whole-solution sampling in rounds."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from agents.models.base import Policy, SamplingConfig
from agents.search.ledger import Ledger
from agents.search.traces import extend_state
from reasoning_gym import EpisodeLimits, ReasoningState


@dataclass(frozen=True)
class SamplingOptions:
    """How the policy samples (flat fields, so a YAML config or a sweep sets them directly).

    Attributes:
        temperature: sampling temperature (0 is greedy, which makes repeated
            proposals identical; search wants > 0). Reference: 0.7.
        top_p: nucleus sampling mass.
        max_new_tokens: cap on tokens per generated step (per whole solution in
            the solution-sampling agents); the budget counts every sample at
            this cap before the call.
        seed: makes sampling reproducible (offset per call, see `Ledger`); None
            leaves torch's global generator alone.
    """

    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 48
    seed: int | None = None

    def __post_init__(self) -> None:
        _ = self.sampling  # building a SamplingConfig validates the fields, naming the bad one

    @property
    def sampling(self) -> SamplingConfig:
        return SamplingConfig(self.temperature, self.top_p, self.max_new_tokens, self.seed)


@dataclass(frozen=True)
class SolutionSamplingOptions(SamplingOptions):
    """Sampling whole solutions in rounds until `max_samples` or the budget.

    Attributes:
        max_new_tokens: cap on tokens per solution (the budget's worst case per sample).
        max_samples: most solutions per problem (N).
        samples_per_round: solutions per problem per batched call; a round is
            made only if all of them fit the budget at their worst case, so
            smaller rounds use a budget more fully, at more calls.
    """

    max_new_tokens: int = 320
    max_samples: int = 16
    samples_per_round: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("max_samples", "samples_per_round"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def sample_rounds(
    policy: Policy,
    ledger: Ledger,
    roots: Sequence[ReasoningState],
    sampling: SamplingConfig,
    max_samples: int,
    samples_per_round: int,
    limits: EpisodeLimits,
) -> Iterator[dict[int, list[ReasoningState]]]:
    """Sample whole solutions for B problems in lockstep rounds; yields each round's traces.

    Each round is one batched `sample_solutions` call asking
    ``min(samples_per_round, max_samples - drawn)`` solutions of every open problem
    (open problems have all drawn the same number), and yields
    ``{problem index: [trace, ...]}``, each trace a state reached by `apply_step`
    under `limits`. Rounds continue until every problem has `max_samples`
    solutions or is out of budget.
    """
    drawn = 0
    while drawn < max_samples:
        active = [i for i in range(len(roots)) if ledger.open(i)]
        if not active:
            return
        n = min(samples_per_round, max_samples - drawn)
        texts = ledger.sample_solutions(policy, [(i, roots[i]) for i in active], n, sampling)
        drawn += n
        yield {i: [extend_state(roots[i], text, limits) for text in row] for i, row in zip(active, texts) if row is not None}

"""Sampling options shared by the agents' configs, and whole-solution sampling in rounds."""

from __future__ import annotations

from collections.abc import Sequence
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


def sample_round(
    policy: Policy,
    ledger: Ledger,
    roots: Sequence[ReasoningState],
    running: Sequence[int],
    drawn: list[int],
    options: SolutionSamplingOptions,
    limits: EpisodeLimits,
) -> dict[int, list[ReasoningState]]:
    """One round of whole solutions for the problems `running`: ``{problem index: [trace, ...]}``.

    Each open problem with fewer than ``options.max_samples`` solutions (``drawn[i]``,
    updated here) asks ``min(samples_per_round, max_samples - drawn[i])`` of them;
    problems asking as many share one batched `sample_solutions` call (one call
    when all are in step). Each trace is a state reached by `apply_step` under
    `limits`. A problem the ledger refuses gets no entry.
    """
    groups: dict[int, list[int]] = {}
    for i in running:
        if ledger.open(i) and drawn[i] < options.max_samples:
            groups.setdefault(min(options.samples_per_round, options.max_samples - drawn[i]), []).append(i)
    traces: dict[int, list[ReasoningState]] = {}
    for n, group in groups.items():
        texts = ledger.sample_solutions(policy, [(i, roots[i]) for i in group], n, options.sampling)
        for i, row in zip(group, texts):
            drawn[i] += n
            if row is not None:
                traces[i] = [extend_state(roots[i], text, limits) for text in row]
    return traces


def close_sampled(ledger: Ledger, running: Sequence[int], drawn: list[int], max_samples: int) -> list[int]:
    """Close the problems of `running` that have all `max_samples` solutions; those whose search ended."""
    for i in running:
        if drawn[i] >= max_samples:
            ledger.close(i)
    return [i for i in running if not ledger.open(i)]

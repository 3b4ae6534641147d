"""The two model protocols every search agent and trainer talks to.

A `Policy` proposes next steps (or whole solutions) for a BATCH of states; a
`ValueModel` (the PRM, V_theta) scores a BATCH of states in [0, 1]. Every call
reports what it cost in tokens, the unit of the search budget. Nothing here is
search-specific.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from reasoning_gym import ReasoningState


@dataclass(frozen=True)
class SamplingConfig:
    """How a policy samples.

    Attributes:
        temperature: 0 means greedy decoding (then every one of the `n` samples is
            the same greedy text).
        top_p: nucleus sampling mass.
        max_new_tokens: cap per generated step (`propose_steps`) or per solution
            (`sample_solutions`).
        seed: makes sampling reproducible; None leaves torch's global RNG alone.
    """

    temperature: float = 0.8
    top_p: float = 1.0
    max_new_tokens: int = 48
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"SamplingConfig.temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"SamplingConfig.top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"SamplingConfig.max_new_tokens must be >= 1, got {self.max_new_tokens}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


GREEDY = SamplingConfig(temperature=0.0)


@dataclass(frozen=True)
class Generation:
    """What a policy call produced and cost, per input state.

    Costs are kept per state so that a batched call over many search trees can
    charge each tree its own share of the budget.

    Attributes:
        texts: ``texts[i][j]`` is sample j for state i (a step without its
            ``"Step k:"`` label, or a whole continuation for `sample_solutions`).
        prompt_tokens: ``prompt_tokens[i]``: prompt tokens computed for state i
            (a prompt shared by several samples or served from a prefix cache is
            computed once).
        completion_tokens: ``completion_tokens[i]``: tokens generated for state i,
            each sample up to and including its stop token.
        calls: model calls made (one batched call counts once).
        reused_prompt_tokens: ``reused_prompt_tokens[i]``: prompt tokens state i's
            samples read without computing them (shared or cached); empty when
            the policy reuses nothing.
    """

    texts: list[list[str]]
    prompt_tokens: list[int]
    completion_tokens: list[int]
    calls: int = 1
    reused_prompt_tokens: list[int] = field(default_factory=list)

    @property
    def total_prompt_tokens(self) -> int:
        return sum(self.prompt_tokens)

    @property
    def total_completion_tokens(self) -> int:
        return sum(self.completion_tokens)


@dataclass(frozen=True)
class Scores:
    """PRM values for a batch of states and their cost, per state.

    Attributes:
        values: one float in [0, 1] per state, in input order.
        tokens: ``tokens[i]``: tokens the PRM computed for state i (0 on a cache hit).
        calls: model calls made (0 when every state was cached).
        reused_tokens: ``reused_tokens[i]``: tokens of state i's input served from a
            prefix cache instead of computed; empty when the PRM reuses nothing.
    """

    values: list[float]
    tokens: list[int]
    calls: int = 1
    reused_tokens: list[int] = field(default_factory=list)

    @property
    def total_tokens(self) -> int:
        return sum(self.tokens)


@runtime_checkable
class Policy(Protocol):
    """Proposes reasoning steps for batches of states."""

    num_parameters: int

    def propose_steps(
        self,
        states: Sequence[ReasoningState],
        n: int,
        sampling: SamplingConfig,
        exclude: Sequence[Sequence[str]] | None = None,
    ) -> Generation:
        """`n` candidate next steps for each of the B states (texts is B x n).

        ``exclude[i]``: steps (as recorded in states) already taken at state i. A
        policy that can sample without them does (`HFPolicy`: the policy's
        distribution with those steps taken out); one that cannot (a remote
        server) may return them, and the caller filters duplicates.
        """
        ...

    def sample_solutions(self, states: Sequence[ReasoningState], n: int, sampling: SamplingConfig) -> Generation:
        """`n` complete continuations for each of the B states (texts is B x n)."""
        ...


@runtime_checkable
class ValueModel(Protocol):
    """Scores partial solutions: V(state) in [0, 1]."""

    num_parameters: int

    def score(self, states: Sequence[ReasoningState]) -> Scores:
        """One value per state, in input order."""
        ...

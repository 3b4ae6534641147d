"""What a search may spend on one problem (`Budget`) and what it spent (`Usage`).

The stopping rule, shared by every agent (enforced by `agents.search.ledger.Ledger`):

    Before each model call, estimate what the call would add to the problem's
    usage in the worst case. Make the call only if ``usage + estimate`` fits
    every cap; otherwise the problem's search ends with what it has.

The estimate of a call is:

- completion tokens: exact worst case, ``rows x samples x max_new_tokens``
  (a policy may stop a sample early, never late);
- policy calls: 1 (a batched call counts once for each problem that takes part);
- prompt and PRM tokens (only for the `total_tokens` cap): the characters of the
  states sent, times the highest tokens-per-character ratio seen so far in this
  search (1 before the first call). This is an estimate, not a bound: the first
  call can overshoot by a prompt's fixed overhead (BOS, "Step k:" label, chat
  template);
- wall time: the longest call of the same kind so far.

So the completion-token and call caps are never exceeded, and a search stops as
soon as its next call might exceed them: with ``usage + estimate > cap``. A
refused call ends the problem's search even if a smaller call would fit (so a
last round is never split), and a PRM call refused under `total_tokens` leaves
the round's fresh proposals unscored, and unused.
Comparisons at an equal budget use completion tokens per problem (the paper's
x-axis) or total model FLOPs (`Usage.flops`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields

from agents.models.base import Generation, Scores


@dataclass(frozen=True)
class Budget:
    """Caps per problem; None means no cap.

    Attributes:
        completion_tokens: policy tokens generated.
        total_tokens: policy prompt + policy completion + PRM tokens.
        policy_calls: policy calls the problem takes part in.
        wall_seconds: seconds from the start of the problem's search.
    """

    completion_tokens: int | None = None
    total_tokens: int | None = None
    policy_calls: int | None = None
    wall_seconds: float | None = None

    def __post_init__(self) -> None:
        for field in fields(self):
            cap = getattr(self, field.name)
            if cap is not None and cap < 0:
                raise ValueError(f"Budget.{field.name} must be >= 0 or None, got {cap}")

    def fits(self, usage: Usage) -> bool:
        """Whether `usage` is within every cap."""
        return all(
            cap is None or used <= cap
            for cap, used in (
                (self.completion_tokens, usage.policy_completion_tokens),
                (self.total_tokens, usage.total_tokens),
                (self.policy_calls, usage.policy_calls),
                (self.wall_seconds, usage.wall_seconds),
            )
        )


@dataclass
class Usage:
    """What one problem's search used (or, as an estimate, what a call would add).

    Attributes:
        policy_prompt_tokens: prompt tokens the policy computed for this problem.
        policy_completion_tokens: tokens the policy generated for this problem.
        prm_tokens: tokens the PRM computed for this problem (cache hits are free).
        policy_prompt_tokens_reused: prompt tokens read without computing them (a
            prompt shared by its samples, or a prefix served from the policy's KV
            cache); not in `total_tokens` or `flops`.
        prm_tokens_reused: PRM input tokens served from its prefix cache.
        policy_calls: batched policy calls this problem took part in.
        prm_calls: batched PRM calls this problem took part in.
        wall_seconds: seconds from the start of this problem's search (when it
            entered play, `agents.search.scheduler`) until it ended.
    """

    policy_prompt_tokens: int = 0
    policy_completion_tokens: int = 0
    prm_tokens: int = 0
    policy_prompt_tokens_reused: int = 0
    prm_tokens_reused: int = 0
    policy_calls: int = 0
    prm_calls: int = 0
    wall_seconds: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.policy_prompt_tokens + self.policy_completion_tokens + self.prm_tokens

    def add_generation(self, generation: Generation, rows: Iterable[int]) -> None:
        """Charge this problem its `rows` of a batched policy call (one call)."""
        rows = list(rows)
        self.policy_prompt_tokens += sum(generation.prompt_tokens[row] for row in rows)
        self.policy_completion_tokens += sum(generation.completion_tokens[row] for row in rows)
        if generation.reused_prompt_tokens:
            self.policy_prompt_tokens_reused += sum(generation.reused_prompt_tokens[row] for row in rows)
        self.policy_calls += 1

    def add_scores(self, scores: Scores, rows: Iterable[int]) -> None:
        """Charge this problem its `rows` of a batched PRM call (one call)."""
        self.prm_tokens += sum(scores.tokens[row] for row in rows)
        if scores.reused_tokens:
            self.prm_tokens_reused += sum(scores.reused_tokens[row] for row in rows)
        self.prm_calls += 1

    def flops(self, policy_params: int, value_params: int) -> float:
        """Model FLOPs, about 2 x parameters x computed tokens for each model, PRM included
        (tokens served from a prefix cache cost no FLOPs)."""
        policy_tokens = self.policy_prompt_tokens + self.policy_completion_tokens
        return 2.0 * (policy_params * policy_tokens + value_params * self.prm_tokens)

    def __add__(self, other: Usage) -> Usage:
        return Usage(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def to_dict(self) -> dict[str, float]:
        return {**asdict(self), "total_tokens": self.total_tokens}

"""Answer selection over candidate traces: majority, score-weighted vote, best score.

Answers are grouped by `answer_key` (numbers in canonical form), so ``"12.0"`` and
``"12"`` vote together. Ties go to the candidate seen first.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from reasoning_gym import ReasoningState

ANSWER_MODES = ("best", "vote")


def answer_key(answer: str | None) -> str | None:
    """A voting key: numbers in canonical form (``"12.0"`` and ``"12"`` vote together)."""
    if answer is None:
        return None
    text = answer.replace(",", "").replace("$", "").strip()
    try:
        value = float(text)
    except ValueError:
        return text
    return str(int(value)) if value.is_integer() else repr(value)


def weighted_vote(answers: Sequence[str | None], weights: Sequence[float]) -> str | None:
    """The answer key with the largest total weight (None answers abstain)."""
    totals: dict[str, float] = defaultdict(float)
    for answer, weight in zip(answers, weights, strict=True):
        key = answer_key(answer)
        if key is not None:
            totals[key] += weight
    return max(totals, key=totals.__getitem__) if totals else None


def majority(answers: Sequence[str | None]) -> str | None:
    """The most frequent non-empty answer key (ties: the one seen first)."""
    return weighted_vote(answers, [1.0] * len(answers))


def select(states: Sequence[ReasoningState], scores: Sequence[float], mode: str) -> int:
    """Index of the chosen candidate among `states` (at least one), scored by `scores`.

    - ``"best"``: the highest-scoring state that states an answer;
    - ``"vote"``: the answer with the largest total score over the states that
      state one, represented by its highest-scoring state.

    When no state states an answer, both pick the highest-scoring state.
    """
    if mode not in ANSWER_MODES:
        raise ValueError(f"answer mode must be one of {ANSWER_MODES}, got {mode!r}")
    if not states:
        raise ValueError("select needs at least one candidate")
    answered = [k for k, state in enumerate(states) if state.answer is not None]
    if mode == "vote" and answered:
        winner = weighted_vote([states[k].answer for k in answered], [scores[k] for k in answered])
        answered = [k for k in answered if answer_key(states[k].answer) == winner]
    pool = answered or range(len(states))
    return max(pool, key=lambda k: scores[k])  # max keeps the first of equal scores

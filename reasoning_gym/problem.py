"""The `Problem` record shared by every problem source, the environment and the agents."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One question with its oracle answer.

    Attributes:
        id: stable identifier, unique within its source (e.g. ``"synthetic-test-17"``,
            ``"gsm8k_train_sample.jsonl:3"``).
        question: the problem text shown to the policy.
        answer: the oracle final answer as a string (``"72"``, ``"\\frac{1}{2}"``).
        steps: optional reference solution, one step per element, without the
            ``"Step k: "`` prefix; the last element states the final answer.
        metadata: free-form extras (difficulty, source file, line, ``rel_tol`` for
            sources whose answers are compared with a numeric tolerance, ``puzzle``
            for planning tasks).
        task: the name of the task that records and grades its steps
            (`reasoning_gym.tasks`): ``"answer"`` (the default: the final answer is
            compared with `answer`) or ``"countdown"`` (moves are checked and the
            final expression is graded by a program; `answer` holds one solution).

    Problems are immutable and hashable (``metadata`` is excluded from the hash),
    so they can sit inside search states and dictionary keys.
    """

    id: str
    question: str
    answer: str
    steps: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    task: str = "answer"

    def __post_init__(self) -> None:
        if not isinstance(self.question, str) or not self.question.strip():
            raise ValueError(f"problem {self.id!r}: question must be a non-empty string")
        if not isinstance(self.answer, str) or not self.answer.strip():
            raise ValueError(f"problem {self.id!r}: answer must be a non-empty string")
        if not isinstance(self.task, str) or not self.task:
            raise ValueError(f"problem {self.id!r}: task must be a task name such as 'answer', got {self.task!r}")
        if not isinstance(self.steps, tuple):
            object.__setattr__(self, "steps", tuple(self.steps))

    @property
    def rel_tol(self) -> float | None:
        """Relative tolerance for numeric answers, or None for exact equivalence."""
        value = self.metadata.get("rel_tol")
        return None if value is None else float(value)

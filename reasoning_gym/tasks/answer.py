"""`AnswerTask`: the last step states an answer, graded by equivalence with the oracle answer."""

from __future__ import annotations

from collections.abc import Sequence

from reasoning_gym.problem import Problem
from reasoning_gym.steps import extract_answer
from reasoning_gym.tasks.base import Task, register_task
from reasoning_gym.verifier import Verifier, default_verifier


class AnswerTask(Task):
    """Word problems, GSM8K, MATH, SciBench: the default task (``Problem.task == "answer"``).

    Terminal when the last step states an answer ("The answer is X", ``\\boxed{X}``,
    ``#### X``); correct when the verifier finds X equivalent to ``problem.answer``
    (the tolerance: `rel_tol` if given, else ``problem.rel_tol``, else the verifier's).
    """

    name = "answer"

    def answer(self, problem: Problem, steps: Sequence[str]) -> str | None:
        return extract_answer(steps[-1]) if steps else None

    def grade_answer(self, problem: Problem, answer: str, verifier: Verifier | None, rel_tol: float | None) -> bool:
        tolerance = rel_tol if rel_tol is not None else problem.rel_tol
        return (verifier or default_verifier()).is_correct(answer, problem.answer, rel_tol=tolerance)


ANSWER_TASK = register_task(AnswerTask())

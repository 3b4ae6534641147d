"""The task seam: how a problem's steps are recorded, when a state is final, how it is graded.

A `Problem` names its task (``Problem.task``). The MDP functions (`apply_step`,
`is_terminal`, `grade`, `ReasoningState.answer`) and so the environment, the
search agents, self-training and the benchmarks all go through the task, never
through special cases:

- answer tasks (word problems, GSM8K, MATH, SciBench): the last step states an
  answer, compared with the oracle answer by the verifier (`AnswerTask`);
- planning tasks (Countdown, Game of 24): every step is a move checked by the
  task, which renders the numbers left as a game engine shows the board, and the
  final answer is an expression checked by a program (`CountdownTask`). Their
  states have an exact value (`Task.solvable`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

from reasoning_gym.steps import render_state

if TYPE_CHECKING:
    from reasoning_gym.problem import Problem
    from reasoning_gym.verifier import Verifier


class Task(ABC):
    """How states of one kind of problem evolve and are graded (stateless; one instance per name)."""

    name: str

    step_stops: tuple[str, ...] = ("\n",)
    """Where a policy's text for one step ends (it is cut before the first of them).

    A task whose engine writes the rest of a step (the result of a move and the
    board after it) stops the policy earlier, so the policy only chooses the move.
    Policies then sample whole solutions step by step, the engine writing between
    steps (`agents.models.stepwise`). Answer tasks end a step at the newline.
    """

    def render_step(self, problem: Problem, steps: Sequence[str], step: str) -> str:
        """The step as the state records it after `steps` (default: unchanged).

        `step` is already normalised (one line, no ``"Step k:"`` label). A task
        may rewrite it, e.g. to append the numbers left after a legal move.
        """
        return step

    def written_step(self, step: str) -> str:
        """What a policy wrote after ``"Step k:"`` for the recorded `step`: a space, then the
        text up to and including its first stop (the newline that ends a line appended
        when it has none). A policy samples new steps without the ones already taken
        by weighing these texts out (`agents.models.exclusion`).
        """
        ends = [(i, stop) for stop in self.step_stops if (i := step.find(stop)) >= 0]
        if not ends:
            return f" {step}{chr(10) if chr(10) in self.step_stops else self.step_stops[0]}"
        end, stop = min(ends)
        return f" {step[: end + len(stop)]}"

    def value_text(self, problem: Problem, steps: Sequence[str]) -> str:
        """What a value model (PRM) reads for the state `steps` (default: the observation,
        ``render_state(question, steps)``).

        A task whose value depends only on a compact position (a game's board)
        may render that position instead: the PRM then sees what decides the value
        side by side, and states reached by different move orders share one value.
        """
        return render_state(problem.question, steps)

    @abstractmethod
    def answer(self, problem: Problem, steps: Sequence[str]) -> str | None:
        """The final answer the last of `steps` states, or None."""

    def illegal(self, problem: Problem, steps: Sequence[str]) -> str | None:
        """Why the last of `steps` broke the task's rules (an illegal move ends the
        episode), or None (default: answer tasks have no rules beyond the answer)."""
        return None

    def is_terminal(self, problem: Problem, steps: Sequence[str]) -> bool:
        """Whether the episode has ended at `steps` (default: an answer is stated)."""
        return self.answer(problem, steps) is not None

    @abstractmethod
    def grade_answer(self, problem: Problem, answer: str, verifier: Verifier | None, rel_tol: float | None) -> bool:
        """Whether `answer` solves `problem`; never raises on malformed answers."""

    def grade(self, problem: Problem, steps: Sequence[str], verifier: Verifier | None, rel_tol: float | None) -> bool:
        """Whether the state `steps` states a correct final answer."""
        answer = self.answer(problem, steps)
        return answer is not None and self.grade_answer(problem, answer, verifier, rel_tol)

    def steps_to_solve(self, problem: Problem, steps: Sequence[str]) -> int | None:
        """The exact value of a state: the fewest further steps to a correct answer,
        0 when `steps` already state one, None when none can be reached.

        Raises:
            NotImplementedError: the task has no exact value oracle (answer tasks).
        """
        raise NotImplementedError(f"task {self.name!r} has no exact value oracle")

    def solvable(self, problem: Problem, steps: Sequence[str]) -> bool:
        """Whether a correct answer can still be reached from the state (`steps_to_solve` is not None)."""
        return self.steps_to_solve(problem, steps) is not None

    @property
    def has_oracle(self) -> bool:
        """Whether `steps_to_solve` (and so `solvable`) is implemented."""
        return type(self).steps_to_solve is not Task.steps_to_solve


_TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    """Make `task` available under ``task.name``."""
    if task.name in _TASKS and _TASKS[task.name] is not task:
        raise ValueError(f"task {task.name!r} is already registered")
    _TASKS[task.name] = task
    return task


def available_tasks() -> list[str]:
    return sorted(_TASKS)


def get_task(name: str) -> Task:
    """The registered task `name`; KeyError listing the known names otherwise."""
    try:
        return _TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; available: {', '.join(available_tasks())}") from None


def task_of(problem: Problem) -> Task:
    """The task `problem` names."""
    return get_task(problem.task)

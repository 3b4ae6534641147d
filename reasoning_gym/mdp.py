"""The reasoning MDP as pure functions: states, the transition and episode limits.

Search agents branch by calling `apply_step` on immutable `ReasoningState`s; they
never need a live environment. `ReasoningMathEnv` is a thin stateful wrapper over
the same functions, so a search tree and an episode agree step for step.
"""

from __future__ import annotations

import sys

from dataclasses import dataclass

from reasoning_gym.problem import Problem
from reasoning_gym.steps import normalize_step, render_state
from reasoning_gym.tasks import task_of
from reasoning_gym.verifier import Verifier


@dataclass(frozen=True)
class EpisodeLimits:
    """When an episode stops without a final answer, and which actions are valid.

    Attributes:
        max_steps: truncate after this many steps without a final answer.
        max_step_chars: longest valid action (characters, after normalisation).
        max_solution_chars: truncate once the steps together reach this length.
        max_question_chars: longest question the observation space admits.
    """

    max_steps: int = 10
    max_step_chars: int = 1000
    max_solution_chars: int = 4000
    max_question_chars: int = 4000

    def __post_init__(self) -> None:
        for name in ("max_steps", "max_step_chars", "max_solution_chars", "max_question_chars"):
            if getattr(self, name) < 1:
                raise ValueError(f"EpisodeLimits.{name} must be >= 1, got {getattr(self, name)}")

    @property
    def max_observation_chars(self) -> int:
        """An upper bound on the length of any rendered state under these limits."""
        per_step = self.max_step_chars + len("Step 9999: \n")
        return len(render_state("", ())) + self.max_question_chars + self.max_steps * per_step


# No step or length limit: a solution read as written, up to its first stated answer.
UNLIMITED = EpisodeLimits(
    max_steps=sys.maxsize, max_step_chars=sys.maxsize, max_solution_chars=sys.maxsize, max_question_chars=sys.maxsize
)


@dataclass(frozen=True)
class ReasoningState:
    """A node of the MDP: a problem and the steps written so far (immutable, hashable).

    The oracle answer travels inside `problem` so that a finished state can be
    graded, but it is never rendered into the observation (`text`).
    """

    problem: Problem
    steps: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """The observation: ``"Problem: ...\\nSolution:\\nStep 1: ...\\n"``."""
        return render_state(self.problem.question, self.steps)

    @property
    def value_text(self) -> str:
        """What a value model reads for this state (`Task.value_text`: the observation, or the task's board)."""
        return task_of(self.problem).value_text(self.problem, self.steps)

    @property
    def answer(self) -> str | None:
        """The final answer the last step states, if any (as the problem's task reads it)."""
        return task_of(self.problem).answer(self.problem, self.steps)

    @property
    def solution_chars(self) -> int:
        return sum(len(step) for step in self.steps)


def validate_action(action: object, limits: EpisodeLimits) -> str:
    """The normalised step for `action`, or a ValueError saying why it is invalid.

    Valid actions are strings that are non-empty after stripping a ``"Step k:"``
    label and whitespace, and at most `limits.max_step_chars` long after that.
    Newlines inside a step are folded into spaces (see `normalize_step`).
    """
    if not isinstance(action, str):
        raise ValueError(f"an action must be a str (one reasoning step), got {type(action).__name__}")
    step = normalize_step(action)
    if not step:
        raise ValueError("an action must contain text; got an empty or whitespace-only step")
    if len(step) > limits.max_step_chars:
        raise ValueError(
            f"step of {len(step)} characters exceeds max_step_chars={limits.max_step_chars}; "
            "cap the policy's new tokens or raise the limit"
        )
    return step


def is_terminal(state: ReasoningState) -> bool:
    """True when the episode ended at `state`: its last step states a final answer,
    or (planning tasks) it was an illegal move (see `reasoning_gym.tasks`)."""
    return task_of(state.problem).is_terminal(state.problem, state.steps)


def is_truncated(state: ReasoningState, limits: EpisodeLimits) -> bool:
    """True when a non-terminal state has hit the step or length limit."""
    if is_terminal(state):
        return False
    return len(state.steps) >= limits.max_steps or state.solution_chars >= limits.max_solution_chars


def apply_step(state: ReasoningState, action: object, limits: EpisodeLimits) -> ReasoningState:
    """The deterministic transition: `state` with the validated step appended.

    The problem's task records the step (`Task.render_step`): unchanged for answer
    tasks; planning tasks render a legal move with the numbers left.

    Raises:
        ValueError: the action is invalid (see `validate_action`) or `state` is
            already finished (terminal or truncated). `state` is never modified.
    """
    if is_terminal(state) or is_truncated(state, limits):
        raise ValueError("cannot step a finished state (it is terminal or truncated)")
    step = task_of(state.problem).render_step(state.problem, state.steps, validate_action(action, limits))
    return ReasoningState(state.problem, state.steps + (step,))


def grade(state: ReasoningState, verifier: Verifier | None = None, rel_tol: float | None = None) -> bool:
    """Whether `state` states a correct final answer, as the problem's task grades it.

    Answer tasks compare with the oracle answer; the tolerance is `rel_tol` if
    given, else the problem's own (`Problem.rel_tol`), else the verifier's default.
    Planning tasks check the answer expression with a program.
    """
    return task_of(state.problem).grade(state.problem, state.steps, verifier, rel_tol)


def grade_answer(problem: Problem, answer: str, verifier: Verifier | None = None, rel_tol: float | None = None) -> bool:
    """Whether `answer` (e.g. the winner of a vote) solves `problem`, as its task grades it."""
    return task_of(problem).grade_answer(problem, answer, verifier, rel_tol)


def solvable(state: ReasoningState) -> bool:
    """The exact value of `state`: whether a correct answer can still be reached from it.

    Raises:
        NotImplementedError: the problem's task has no exact oracle (answer tasks).
    """
    return task_of(state.problem).solvable(state.problem, state.steps)


def steps_to_solve(state: ReasoningState) -> int | None:
    """The fewest further steps from `state` to a correct answer (0: it states one), or None
    when no correct answer can be reached. Raises NotImplementedError for answer tasks."""
    return task_of(state.problem).steps_to_solve(state.problem, state.steps)

"""`CountdownTask`: reach a target from given numbers; moves checked, answers graded by a program.

A puzzle (``Problem.metadata["puzzle"]``, see `Puzzle`) gives numbers, a target
and `ArithmeticRules`. Game of 24 is the case of four numbers and target 24 with
negative and fractional intermediates allowed.

Steps (the Tree-of-Thoughts format). A move step combines two numbers left::

    Step 1: 13 - 9 = 4 (left: 4 4 10)
    Step 2: 10 - 4 = 6 (left: 4 6)
    Step 3: 4 * 6 = 24 (left: 24) The answer is (13 - 9) * (10 - 4)

The task is the game engine: it checks the move and renders the step itself,
``a op b = c (left: ...)`` with the numbers left in ascending order, whatever the
policy wrote after the result. A policy may write the move alone (``13 - 9``):
the engine computes the result, as a game shows the board after a move, so a
policy only has to choose moves. Policies stop there (`CountdownTask.step_stops`
is ``"="``): a tiny model's arithmetic slips (a last step "= target" whatever
the numbers) would otherwise hide what search is for, choosing moves. A policy
that does write the result or the ``(left: ...)`` list must get them right. The move that leaves one number also states the
final answer: the expression the moves built (`Board.expression`), so the policy
only chooses moves. A step that states an answer without a move (``The answer is
(13 - 9) * (10 - 4)``, as a prompted LLM writes it) is graded as written.

Terminal states: a stated answer (after the last move or in an answer step), or
an illegal step, which the engine records with its verdict, e.g.
``13 - 9 = 5 (illegal: 13 - 9 is not 5)`` (an illegal move is kept up to its
``(left: ...)`` list). A step is illegal when it is not a move and states no answer,
uses a number that is not left (each copy once), has wrong arithmetic, breaks the
rules (an operation not allowed, a negative or fractional result where the puzzle
forbids them, division by zero), or lists the wrong numbers left. An illegal step
ends the episode with reward 0 at once: the engine knows the move is impossible
when it is made, so no budget is spent continuing from a state that does not
exist in the game, and the first wrong step is exactly where a trace turns bad
(what a PRM must learn).

Grading (Tree of Thoughts' checker): the answer expression must use exactly the
puzzle's multiset of numbers, only allowed operations, legal intermediates, and
equal the target in exact arithmetic (`reasoning_gym.tasks.expression`). Anything
else, malformed text included, is wrong; grading never raises.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from reasoning_gym.problem import Problem
from reasoning_gym.steps import extract_answer
from reasoning_gym.tasks import solver
from reasoning_gym.tasks.base import Task, register_task
from reasoning_gym.tasks.expression import (
    ArithmeticRules,
    Exact,
    MAX_NUMBER_DIGITS,
    ExpressionError,
    evaluate_expression,
    format_number,
    parse_number,
)
from reasoning_gym.verifier import Verifier

_NUM = rf"-?\d{{1,{MAX_NUMBER_DIGITS}}}(?:/\d{{1,{MAX_NUMBER_DIGITS}}})?"  # every value the rules allow
_MOVE = re.compile(
    rf"^\s*({_NUM})\s*([-+*/x×÷])\s*({_NUM})(?:\s*=\s*({_NUM}))?\s*(?:\(\s*left\s*:?\s*([^)]*)\))?"
)
_OPERATOR_ALIASES = {"x": "*", "×": "*", "÷": "/"}


@dataclass(frozen=True)
class Puzzle:
    """The numbers, the target and the rules of one puzzle (kept in ``Problem.metadata["puzzle"]``)."""

    numbers: tuple[int, ...]
    target: int
    rules: ArithmeticRules = ArithmeticRules()

    def to_metadata(self) -> dict[str, Any]:
        return {
            "numbers": list(self.numbers),
            "target": self.target,
            "operations": self.rules.operations,
            "allow_negative": self.rules.allow_negative,
            "allow_fractions": self.rules.allow_fractions,
        }

    @classmethod
    def from_metadata(cls, values: Mapping[str, Any], where: str = "puzzle") -> Puzzle:
        try:
            numbers = tuple(int(n) for n in values["numbers"])
            target = int(values["target"])
            rules = ArithmeticRules(
                str(values.get("operations", "+-*/")),
                bool(values.get("allow_negative", True)),
                bool(values.get("allow_fractions", True)),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{where}: not a valid puzzle ({error!r}); expected numbers, target and rules") from None
        if len(numbers) < 2 or any(n < 0 for n in numbers):
            raise ValueError(f"{where}: a puzzle needs at least two non-negative numbers, got {numbers}")
        return cls(numbers, target, rules)

    @property
    def key(self) -> str:
        """The canonical puzzle, ``"4 9 10 13 -> 24"``: sorted numbers and target (what splits hash)."""
        return f"{' '.join(map(str, sorted(self.numbers)))} -> {self.target}"


@lru_cache(maxsize=1 << 14)
def puzzle_of(problem: Problem) -> Puzzle:
    """The puzzle of a countdown `problem` (ValueError naming the problem when it has none)."""
    values = problem.metadata.get("puzzle")
    if not isinstance(values, Mapping):
        raise ValueError(f"problem {problem.id!r} of task 'countdown' has no metadata['puzzle']")
    return Puzzle.from_metadata(values, where=f"problem {problem.id!r}")


@dataclass(frozen=True)
class Board:
    """The game position after some steps.

    Attributes:
        left: (value, expression) of each number left, the expression saying how
            the moves built it from the puzzle's numbers.
        answer: the final answer stated (canonical expression when it parses).
        illegal: why the last step was illegal, or None.
    """

    left: tuple[tuple[Exact, str], ...]
    answer: str | None = None
    illegal: str | None = None

    @property
    def values(self) -> solver.Numbers:
        return solver.normalize(value for value, _ in self.left)

    @property
    def finished(self) -> bool:
        return self.answer is not None or self.illegal is not None


def _wrap(expression: str) -> str:
    return f"({expression})" if " " in expression else expression


def _canonical_answer(text: str) -> str:
    try:
        return evaluate_expression(text).canonical
    except ExpressionError:
        return text.strip()


def _take(left: tuple[tuple[Exact, str], ...], value: Exact) -> tuple[str, tuple[tuple[Exact, str], ...]] | None:
    for index, (v, expression) in enumerate(left):
        if v == value:
            return expression, left[:index] + left[index + 1 :]
    return None


def _illegal(board: Board, shown: str, reason: str) -> tuple[Board, str]:
    """The finished board of an illegal step and its rendering, ``"{shown} (illegal: {reason})"``."""
    return Board(board.left, illegal=reason), f"{shown.strip()} (illegal: {reason})"


def play(board: Board, step: str, puzzle: Puzzle) -> tuple[Board, str]:
    """The board after `step` and the step as the engine renders it (see the module docstring)."""
    if board.finished:
        return Board(board.left, illegal="the game is already over"), step
    match = _MOVE.match(step)
    if match is None:
        stated = extract_answer(step)
        if stated is not None:
            return Board(board.left, answer=_canonical_answer(stated)), step
        return _illegal(board, step, "not a move (a op b = c) and states no answer")
    move = match[0]  # an illegal move is shown up to its (left: ...) list; what follows is dropped
    try:
        a, b = parse_number(match[1]), parse_number(match[3])
        claimed = None if match[4] is None else parse_number(match[4])
    except ExpressionError as error:
        return _illegal(board, move, str(error))
    op = _OPERATOR_ALIASES.get(match[2], match[2])
    first = _take(board.left, a)
    second = _take(first[1], b) if first else None
    if first is None or second is None:
        return _illegal(board, move, f"{match[1]} and {match[3]} are not both left")
    try:
        result = puzzle.rules.apply(a, op, b)
    except ExpressionError as error:
        return _illegal(board, move, str(error))
    if claimed is not None and result != claimed:
        return _illegal(board, move, f"{match[1]} {op} {match[3]} is not {match[4]}")
    expression = f"{_wrap(first[0])} {op} {_wrap(second[0])}"
    left = tuple(sorted(second[1] + ((result, expression),), key=lambda item: item[0]))
    if match[5] is not None:
        try:
            listed = solver.normalize(parse_number(token) for token in match[5].replace(",", " ").split())
        except ExpressionError:
            listed = None
        if listed != solver.normalize(value for value, _ in left):
            return _illegal(board, move, f"the numbers left are not {match[5].strip()}")
    rendered = f"{format_number(a)} {op} {format_number(b)} = {format_number(result)} (left: {' '.join(format_number(v) for v, _ in left)})"
    if len(left) == 1:
        return Board(left, answer=expression), f"{rendered} The answer is {expression}"
    return Board(left), rendered


def start_board(puzzle: Puzzle) -> Board:
    """The position before any move: every number of the puzzle, each its own expression."""
    return Board(tuple((n, str(n)) for n in sorted(puzzle.numbers)))


@lru_cache(maxsize=1 << 18)
def replay(problem: Problem, steps: tuple[str, ...]) -> Board:
    """The board after `steps` (already rendered) from the start of `problem`'s puzzle (memoised per prefix)."""
    if not steps:
        return start_board(puzzle_of(problem))
    return play(replay(problem, steps[:-1]), steps[-1], puzzle_of(problem))[0]


def board_text(puzzle: Puzzle, board: Board) -> str:
    """The position as a value model reads it: the rules, the target, then the numbers
    left, the stated answer's value and the engine's verdict on it, or that the
    last step was illegal::

        + - * / whole >= 0. make 42, left 4 66
        + - * / whole >= 0. make 42, answer 62, no
        + - * / whole >= 0. make 42, answer 42, yes
        + - * / whole >= 0. make 42, illegal

    Countdown is Markov in its board (the value of a state is whether the target
    can be made from the numbers left), so the history adds nothing. Why not the
    full text: a ~1M-parameter PRM did not learn to relate "(left: 62)" to a target
    stated 100 characters earlier (AUROC 0.63 on final states, where it only has
    to compare two numbers). Why the verdict: even next to the target, learning to
    compare two numbers was a coin toss over training seeds (final-state AUROC
    0.99, 0.83 and 0.66 for seeds 0-2). The grader needs no hidden answer here (the
    target is in the question), so the engine states the result as a game shows
    "you win"; what is left for the PRM is the question search asks, which moves
    can still make the target. An answer that does not use exactly the puzzle's
    numbers reads "answer invalid". Why these words: the bundled tiny policy's
    tokenizer has "make", "left" and "answer" as tokens but spells "Target" in six,
    and a shorter input is a cheaper training step (open boards 23 tokens, were 33).
    """
    rules = puzzle.rules
    kind = f" {rules.restriction}" if rules.restriction else ""
    head = f"{' '.join(rules.operations)}{kind}. make {format_number(puzzle.target)},"
    if board.illegal is not None:
        return f"{head} illegal\n"
    if board.answer is not None:
        try:
            evaluation = evaluate_expression(board.answer, rules)
        except ExpressionError:
            return f"{head} answer invalid\n"
        if sorted(evaluation.numbers) != sorted(puzzle.numbers):
            return f"{head} answer invalid\n"
        verdict = "yes" if evaluation.value == puzzle.target else "no"
        return f"{head} answer {format_number(evaluation.value)}, {verdict}\n"
    return f"{head} left {' '.join(format_number(v) for v in board.values)}\n"


def grade_expression(puzzle: Puzzle, answer: str) -> bool:
    """Tree of Thoughts' check: the expression uses exactly the puzzle's numbers and equals the target."""
    try:
        evaluation = evaluate_expression(answer, puzzle.rules)
    except ExpressionError:
        return False
    return sorted(evaluation.numbers) == sorted(puzzle.numbers) and evaluation.value == puzzle.target


class CountdownTask(Task):
    """Countdown and Game of 24 (``Problem.task == "countdown"``); see the module docstring."""

    name = "countdown"
    step_stops = ("=", "\n")  # the policy writes the move; the engine writes "= c (left: ...)"

    def written_step(self, step: str) -> str:
        # An illegal move is recorded as "11 * 5 (illegal: ...)": the policy wrote "11 * 5 =", as
        # it stops at "=" after a move. Text that is no move ("." or "The answer is ...") ended
        # at its newline, which the base class appends.
        shown = step.split(" (illegal: ", 1)[0]
        return super().written_step(shown if "=" in shown or not _MOVE.match(shown) else f"{shown} =")

    def render_step(self, problem: Problem, steps: Sequence[str], step: str) -> str:
        return play(replay(problem, tuple(steps)), step, puzzle_of(problem))[1]

    def value_text(self, problem: Problem, steps: Sequence[str]) -> str:
        """The board a value model reads (`board_text`), not the move history."""
        return board_text(puzzle_of(problem), replay(problem, tuple(steps)))

    def answer(self, problem: Problem, steps: Sequence[str]) -> str | None:
        return replay(problem, tuple(steps)).answer

    def is_terminal(self, problem: Problem, steps: Sequence[str]) -> bool:
        return replay(problem, tuple(steps)).finished

    def illegal(self, problem: Problem, steps: Sequence[str]) -> str | None:
        """Why the last step was illegal, or None."""
        return replay(problem, tuple(steps)).illegal

    def grade_answer(self, problem: Problem, answer: str, verifier: Verifier | None, rel_tol: float | None) -> bool:
        return grade_expression(puzzle_of(problem), answer)

    def steps_to_solve(self, problem: Problem, steps: Sequence[str]) -> int | None:
        """0 for a correct answer; one move per number left but one when the target can
        still be made (the last move states the answer); None otherwise."""
        board = replay(problem, tuple(steps))
        puzzle = puzzle_of(problem)
        if board.illegal is not None:
            return None
        if board.answer is not None:
            return 0 if grade_expression(puzzle, board.answer) else None
        return len(board.left) - 1 if solver.solvable(board.values, puzzle.target, puzzle.rules) else None


COUNTDOWN_TASK = register_task(CountdownTask())

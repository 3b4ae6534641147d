"""Planning-task sources: the seeded Countdown generator, Game of 24, and puzzle files.

Every problem is a `reasoning_gym.tasks.countdown.Puzzle` (numbers, target, rules)
wrapped in a `Problem` of task ``"countdown"`` with one reference solution drawn
by the exact solver (a uniformly random winning move at each state), its steps
rendered by the task exactly as the environment records them.

Splits hash the canonical puzzle (`Puzzle.key`: sorted numbers and target), so
the same puzzle never lands in two splits, whatever order or seed produced it.
Any source can leave out a user-given list of puzzles (``exclude=``: a file, a
problem set or puzzle keys), so that a published test set stays out of D_S0,
D_V0 and self-training.

Sources:

- ``countdown``: ``generate_puzzle(index, seed, config)`` is a pure function of
  its arguments (SHA-256-seeded), and emits only solvable puzzles; presets in
  `COUNTDOWN_PRESETS` from easy to hard.
- ``game24``: every multiset of four numbers from 1 to `max_number` (13) that
  makes 24 with + - * / over exact fractions (1,362 of 1,820; 566 of 715 for
  1 to 10), or the Tree-of-Thoughts CSV (``path=``, columns ``Rank,Puzzles,
  AMT (s),Solved rate,1-sigma Mean (s),1-sigma STD (s)``, puzzles ``"4 5 6 10"``;
  ToT's test set is rows 900-999: ``start=900, size=100``).
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Union

from reasoning_gym.problem import Problem
from reasoning_gym.sources.base import DEFAULT_SPLIT_FRACTIONS, SPLITS, ProblemSet, register_source, split_of
from reasoning_gym.sources.files import SourceFormatError
from reasoning_gym.tasks import solver
from reasoning_gym.tasks.countdown import Puzzle, play, start_board
from reasoning_gym.tasks.expression import GAME24_RULES, ArithmeticRules, format_number

_MAX_ATTEMPTS = 1000


@dataclass(frozen=True)
class CountdownConfig:
    """Knobs of the Countdown generator; one config is one difficulty.

    Attributes:
        count: how many numbers a puzzle gives (3 to 6).
        min_number, max_number: the range the numbers are drawn from (inclusive).
        min_target, max_target: the range of the target (inclusive).
        operations: allowed operations, a subset of ``"+-*/"``.
        allow_negative: whether intermediate results may be negative.
        allow_fractions: whether intermediate results may be non-integers
            (False: divisions must be exact).
    """

    count: int = 4
    min_number: int = 1
    max_number: int = 9
    min_target: int = 10
    max_target: int = 40
    operations: str = "+-*/"
    allow_negative: bool = False
    allow_fractions: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the field when the config is inconsistent."""
        if not 3 <= self.count <= 6:
            raise ValueError(f"CountdownConfig.count must be between 3 and 6, got {self.count}")
        if not 0 <= self.min_number <= self.max_number:
            raise ValueError(f"CountdownConfig.min_number ({self.min_number}) must be in [0, max_number ({self.max_number})]")
        if self.min_target > self.max_target:
            raise ValueError(f"CountdownConfig.min_target ({self.min_target}) must be <= max_target ({self.max_target})")
        if self.min_target < 0 and not self.allow_negative:
            raise ValueError("CountdownConfig.min_target is negative but allow_negative is False")
        self.rules  # validates operations

    @property
    def rules(self) -> ArithmeticRules:
        return ArithmeticRules(self.operations, self.allow_negative, self.allow_fractions)

    def key(self) -> str:
        return ",".join(str(getattr(self, f.name)) for f in fields(self))


COUNTDOWN_PRESETS: dict[str, CountdownConfig] = {
    "easy": CountdownConfig(count=3, max_number=13, min_target=10, max_target=60),
    "basic": CountdownConfig(count=4, max_number=9, min_target=10, max_target=40),
    "medium": CountdownConfig(count=4, max_number=13, min_target=10, max_target=100),
    "hard": CountdownConfig(count=5, max_number=25, min_target=50, max_target=500),
    "expert": CountdownConfig(count=6, max_number=25, min_target=100, max_target=999),
}
"""Named Countdown levels, all with whole, non-negative intermediates. ``"easy"``
(three numbers 1-13, targets 10-60; 3,194 solvable puzzles) is the default and the
level of the bundled planning models: calibrated so that a ~1M-parameter policy
has headroom (greedy about a third, pass@16 well above). On ``"basic"`` (four
numbers 1-9, targets 10-40) the same policy's first move is no better than a
random legal move (README, "The planning task")."""

CountdownLevel = Union[str, CountdownConfig, Mapping[str, Any]]


def resolve_countdown(level: CountdownLevel) -> tuple[str, CountdownConfig]:
    """``(name, config)`` for a preset name, a `CountdownConfig` or a dict of its fields."""
    if isinstance(level, CountdownConfig):
        return next((name for name, preset in COUNTDOWN_PRESETS.items() if preset == level), "custom"), level
    if isinstance(level, Mapping):
        known = {f.name for f in fields(CountdownConfig)}
        unknown = sorted(set(level) - known)
        if unknown:
            raise ValueError(f"unknown CountdownConfig keys {unknown}; expected a subset of {sorted(known)}")
        return resolve_countdown(CountdownConfig(**level))
    if isinstance(level, str) and level.strip().lower() in COUNTDOWN_PRESETS:
        return level.strip().lower(), COUNTDOWN_PRESETS[level.strip().lower()]
    raise ValueError(f"unknown countdown difficulty {level!r}; expected one of {', '.join(COUNTDOWN_PRESETS)} "
                     "or a dict of CountdownConfig fields")


def question_text(puzzle: Puzzle) -> str:
    """``"Use 4 9 10 13 and + - * / to make 24."`` (plus the rule on intermediates when restricted)."""
    numbers = " ".join(map(str, sorted(puzzle.numbers)))
    text = f"Use {numbers} and {' '.join(puzzle.rules.operations)} to make {puzzle.target}."
    restriction = puzzle.rules.restriction
    if restriction:
        text += f" Every result must be {restriction.replace('whole', 'a whole number')}."
    return text


def solution_steps(puzzle: Puzzle, moves: Sequence[solver.Move]) -> tuple[str, ...]:
    """The steps of `moves` as the countdown task renders them (the last one states the expression)."""
    board = start_board(puzzle)
    steps = []
    for move in moves:
        board, step = play(board, f"{format_number(move.a)} {move.op} {format_number(move.b)} = {format_number(move.result)}", puzzle)
        if board.illegal:
            raise AssertionError(f"solver move {move} is illegal: {board.illegal}")
        steps.append(step)
    return tuple(steps)


def puzzle_problem(puzzle: Puzzle, problem_id: str, rng: random.Random, **metadata: Any) -> Problem:
    """A countdown `Problem` for a solvable `puzzle` with a random solver solution as its reference."""
    moves = solver.random_solution(solver.normalize(puzzle.numbers), puzzle.target, puzzle.rules, rng)
    if moves is None:
        raise ValueError(f"puzzle {puzzle.key} cannot be solved under {puzzle.rules}")
    steps = solution_steps(puzzle, moves)
    answer = steps[-1].split("The answer is ", 1)[1]
    return Problem(problem_id, question_text(puzzle), answer, steps,
                   metadata={"puzzle": puzzle.to_metadata(), **metadata}, task="countdown")


def unreferenced_problem(puzzle: Puzzle, problem_id: str) -> Problem:
    """A countdown `Problem` for `puzzle`, solvable or not, with no reference solution
    (``answer`` is ``"(none given)"``; the task grades expressions, not this field):
    a puzzle whose states are labelled by the exact oracle alone."""
    return Problem(problem_id, question_text(puzzle), "(none given)", (), metadata={"puzzle": puzzle.to_metadata()},
                   task="countdown")


def _stable_int(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "big")


def generate_puzzle(index: int, seed: int = 0, config: CountdownLevel = "easy") -> Problem:
    """Countdown problem `index` of generator `seed`: a pure function of the three, always solvable.

    Numbers and target are drawn uniformly from the config's ranges until the
    exact solver finds a solution; the reference steps are one random solution.
    """
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise ValueError(f"index must be a non-negative int, got {index!r}")
    name, cfg = resolve_countdown(config)
    return _problem_of_draw(name, seed, index, *_draw_puzzle(name, cfg, seed, index))


def _draw_puzzle(name: str, cfg: CountdownConfig, seed: int, index: int) -> tuple[Puzzle, random.Random]:
    """Puzzle `index` of generator `seed` and the generator's state after drawing it, which
    then picks the reference solution (`_problem_of_draw`)."""
    rng = random.Random(_stable_int("rest-mcts-countdown", seed, index, cfg.key()))
    rules = cfg.rules
    for _ in range(_MAX_ATTEMPTS):
        numbers = tuple(sorted(rng.randint(cfg.min_number, cfg.max_number) for _ in range(cfg.count)))
        target = rng.randint(cfg.min_target, cfg.max_target)
        if solver.solvable(solver.normalize(numbers), target, rules):
            return Puzzle(numbers, target, rules), rng
    raise RuntimeError(f"countdown {name}: no solvable puzzle in {_MAX_ATTEMPTS} draws (seed {seed}, index {index}); "
                       "widen the target range")


def _problem_of_draw(name: str, seed: int, index: int, puzzle: Puzzle, rng: random.Random) -> Problem:
    return puzzle_problem(puzzle, f"countdown-{name}-{seed}-{index}", rng, difficulty=name, seed=seed, index=index)


# --- excluded puzzles ------------------------------------------------------------------


def _puzzle_key(numbers: Iterable[int], target: int) -> str:
    return f"{' '.join(map(str, sorted(numbers)))} -> {target}"


def _parse_numbers(text: str, path: Path, line: int, field: str) -> list[int]:
    try:
        numbers = [int(token) for token in text.replace(",", " ").split()]
    except ValueError:
        raise SourceFormatError(path, f"puzzle {text!r} is not whitespace-separated integers", line=line, field=field) from None
    if len(numbers) < 2:
        raise SourceFormatError(path, f"puzzle {text!r} has fewer than two numbers", line=line, field=field)
    return numbers


def read_puzzle_file(path: str | Path, target: int = 24) -> list[tuple[list[int], int, int]]:
    """``(numbers, target, line)`` for each puzzle in `path`.

    Formats, by suffix: ``.csv`` with a ``Puzzles`` column (the Tree-of-Thoughts
    file; an optional ``target`` column, else `target`), ``.jsonl`` with
    ``{"numbers": [...], "target": N}`` per line, anything else one puzzle per
    line, ``"4 5 6 10"`` or ``"4 5 6 10 -> 24"``. Errors name the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"puzzle file not found: {path}")
    rows: list[tuple[list[int], int, int]] = []
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or "Puzzles" not in reader.fieldnames:
                raise SourceFormatError(path, f"no 'Puzzles' column (columns: {reader.fieldnames})", line=1, field="Puzzles")
            for row in reader:
                line = reader.line_num
                value = target
                if row.get("target") not in (None, ""):
                    try:
                        value = int(row["target"])
                    except ValueError:
                        raise SourceFormatError(path, f"target {row['target']!r} is not an integer", line=line, field="target") from None
                rows.append((_parse_numbers(row["Puzzles"] or "", path, line, "Puzzles"), value, line))
        return rows
    for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        if path.suffix == ".jsonl":
            try:
                record = json.loads(text)
                rows.append((_parse_numbers(" ".join(map(str, record["numbers"])), path, line, "numbers"), int(record["target"]), line))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
                raise SourceFormatError(path, f"expected {{\"numbers\": [...], \"target\": N}} ({error})", line=line) from None
            continue
        numbers, _, stated = text.partition("->")
        try:
            value = int(stated) if stated.strip() else target
        except ValueError:
            raise SourceFormatError(path, f"target {stated.strip()!r} is not an integer", line=line) from None
        rows.append((_parse_numbers(numbers, path, line, "numbers"), value, line))
    return rows


Exclusion = Union[None, str, Path, ProblemSet, Sequence[Union[Problem, str]]]


def excluded_keys(exclude: Exclusion, target: int = 24) -> frozenset[str]:
    """Puzzle keys to leave out: from a file (`read_puzzle_file`), problems of task countdown,
    or key strings such as ``"4 5 6 10 -> 24"`` (a bare ``"4 5 6 10"`` means `target`)."""
    if exclude is None:
        return frozenset()
    if isinstance(exclude, (str, Path)):
        return frozenset(_puzzle_key(numbers, value) for numbers, value, _ in read_puzzle_file(exclude, target))
    keys = set()
    for item in exclude:
        if isinstance(item, Problem):
            keys.add(Puzzle.from_metadata(item.metadata.get("puzzle") or {}, where=f"problem {item.id!r}").key)
        else:
            numbers, _, stated = str(item).partition("->")
            keys.add(_puzzle_key((int(n) for n in numbers.split()), int(stated) if stated.strip() else target))
    return frozenset(keys)


def _check_split(split: str | None, fractions: Sequence[float]) -> str | None:
    split_of("", fractions)  # validates the fractions
    if split == "all":
        return None
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}, 'all' or None")
    return split


def in_split(
    puzzle: Puzzle,
    split: str | None,
    excluded: frozenset[str] = frozenset(),
    fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
) -> bool:
    """Whether a source would keep `puzzle` in `split` (None: any split): its key hashes
    there and is not in `excluded` (`excluded_keys`). Holds for unsolvable puzzles too."""
    return puzzle.key not in excluded and (split is None or split_of(puzzle.key, fractions) == split)


@register_source("countdown")
def countdown_source(
    split: str | None = "train",
    size: int = 1000,
    seed: int = 0,
    difficulty: CountdownLevel = "easy",
    exclude: Exclusion = None,
    fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
) -> ProblemSet:
    """`size` distinct puzzles of one split, walking ``generate_puzzle(0, 1, 2, ...)``.

    A puzzle is kept when its key hashes into `split` (None or "all": every
    split), it is not in `exclude` and not already kept.

    Raises:
        ValueError: bad split, size, fractions or difficulty.
        RuntimeError: fewer than `size` distinct puzzles exist in the split (the
            message says how many were found).
    """
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ValueError(f"size must be a non-negative int, got {size!r}")
    split = _check_split(split, fractions)
    name, config = resolve_countdown(difficulty)
    excluded = excluded_keys(exclude)
    share = 1.0 if split is None else dict(zip(SPLITS, fractions))[split]
    if share <= 0:
        raise ValueError(f"split {split!r} has fraction 0 in {tuple(fractions)}; it can hold no problems")
    # The walk also passes every excluded puzzle it meets (a training set that excludes the
    # first puzzles of the same seed's walk must look past all of them). A level is finite
    # and its rarest puzzles (three equal numbers) come up far less often than the rest, so
    # past `limit` the walk goes on while it still finds puzzles: it gives up only when it
    # has gone four times as far as its last find without a new one (requests the split
    # cannot meet pay for that; the rest stop where they did before).
    limit = int((size + len(excluded)) / share * 4) + 2000
    problems: list[Problem] = []
    seen: set[str] = set()
    index = last_find = 0
    while len(problems) < size:
        if index >= limit and index - last_find > max(4 * last_find, 2000):
            raise RuntimeError(f"countdown {name}: only {len(problems)} distinct {split or 'all'} puzzles in the first "
                               f"{index} indices (none new after index {last_find}); ask for fewer or widen the ranges")
        puzzle, rng = _draw_puzzle(name, config, seed, index)
        index += 1
        if puzzle.key in seen or not in_split(puzzle, split, excluded, fractions):
            continue  # the reference solution is drawn only for a kept puzzle: most are passed over
        seen.add(puzzle.key)
        problems.append(_problem_of_draw(name, seed, index - 1, puzzle, rng))
        last_find = index - 1
    return ProblemSet(f"countdown-{name}-{seed}-{split or 'all'}", tuple(problems))


def solvable_24_puzzles(max_number: int = 13, target: int = 24) -> list[tuple[int, ...]]:
    """Every sorted 4-multiset of 1..`max_number` that makes `target` under Game-of-24 rules."""
    return [
        numbers
        for numbers in itertools.combinations_with_replacement(range(1, max_number + 1), 4)
        if solver.solvable(solver.normalize(numbers), target, GAME24_RULES)
    ]


@register_source("game24")
def game24_source(
    split: str | None = "train",
    size: int | None = None,
    seed: int = 0,
    max_number: int = 13,
    path: str | Path | None = None,
    start: int = 0,
    exclude: Exclusion = None,
    fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
) -> ProblemSet:
    """Game of 24 puzzles: generated (every solvable multiset, shuffled by `seed`) or from `path`.

    With `path` (the Tree-of-Thoughts CSV or any `read_puzzle_file` format), rows
    are kept in file order from row `start`; pass ``split=None`` to keep every
    row. `size` None keeps all. Puzzles the solver cannot solve raise a
    SourceFormatError naming the line.
    """
    split = _check_split(split, fractions)
    if size is not None and size < 0:
        raise ValueError(f"size must be >= 0 or None, got {size!r}")
    excluded = excluded_keys(exclude)
    rng = random.Random(_stable_int("rest-mcts-game24", seed, max_number))
    if path is None:
        if not 4 <= max_number <= 100:
            raise ValueError(f"max_number must be between 4 and 100, got {max_number}")
        candidates = [(numbers, None) for numbers in solvable_24_puzzles(max_number)]
        rng.shuffle(candidates)
        name = f"game24-1to{max_number}-{seed}"
    else:
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        candidates = [(tuple(numbers), line) for numbers, _, line in read_puzzle_file(path, 24)[start:]]
        name = f"game24-{Path(path).name}"
    problems: list[Problem] = []
    for numbers, line in candidates:
        if size is not None and len(problems) >= size:
            break
        puzzle = Puzzle(tuple(sorted(numbers)), 24, GAME24_RULES)
        if not in_split(puzzle, split, excluded, fractions):
            continue
        puzzle_id = f"{name}:{line}" if line is not None else f"game24-{'-'.join(map(str, puzzle.numbers))}"
        item_rng = random.Random(_stable_int("rest-mcts-game24-solution", seed, puzzle.key))
        try:
            problems.append(puzzle_problem(puzzle, puzzle_id, item_rng, difficulty="game24"))
        except ValueError as error:
            raise SourceFormatError(path or name, str(error), line=line) from None
    return ProblemSet(f"{name}-{split or 'all'}", tuple(problems))

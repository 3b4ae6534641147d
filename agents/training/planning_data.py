"""The bootstrap datasets of Algorithm 1 for planning tasks (Countdown, Game of 24).

D_S0 holds solver solutions of training puzzles: `solutions` independent random
solutions per puzzle (a uniformly random winning move at each state), rendered
exactly as the environment records them, so pi_0 sees many ways to the target.

D_V0 holds the states of pi_0's own samples on training puzzles, every prefix
of the reference solutions, and the states of random legal walks or every state
legal moves reach (cheap, no model call, mostly off the path to the target),
optionally the open states of the same numbers with other targets
(`target_variant_rows`), each labelled with the ReST-MCTS* quality
value computed from exact distances to a correct answer
(`reasoning_gym.steps_to_solve` decides which steps lie on a path to one; see
`value_targets.trace_quality_values`). Labelling pi_0's own states is what makes
V_0 judge the states search will meet, wrong moves and illegal steps included.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import NamedTuple

from datasets import Dataset
from tqdm.auto import tqdm

from agents.models.base import Policy, SamplingConfig
from agents.search.traces import prefixes, solution_state
from agents.training.value_targets import trace_quality_values
from agents.training.value_training import live_repeats
from reasoning_gym import Problem, ReasoningState, render_state, steps_to_solve
from reasoning_gym.sources.puzzles import puzzle_problem, solution_steps, unreferenced_problem
from reasoning_gym.tasks import solver
from reasoning_gym.tasks.countdown import Puzzle, puzzle_of


def solution_texts(problems: Sequence[Problem], eos: str, solutions: int, seed: int) -> list[str]:
    """`solutions` rendered random solver solutions per problem (the first is its reference)."""
    rng = random.Random(seed)
    texts = []
    for problem in problems:
        texts.append(render_state(problem.question, problem.steps) + eos)
        for _ in range(solutions - 1):
            other = puzzle_problem(puzzle_of(problem), problem.id, rng)
            texts.append(render_state(other.question, other.steps) + eos)
    rng.shuffle(texts)
    return texts


def policy_dataset(problems: Sequence[Problem], eos: str, solutions: int, seed: int) -> Dataset:
    """D_S0 as a ``{"text"}`` dataset (see the module docstring)."""
    if not problems:
        raise ValueError("D_S0 needs at least one training puzzle")
    return Dataset.from_dict({"text": solution_texts(problems, eos, solutions, seed)})


def labelled_states(state: ReasoningState) -> list[tuple[ReasoningState, float]]:
    """Every prefix of the trace `state` with its exact quality value."""
    root = steps_to_solve(ReasoningState(state.problem))
    if root is None:
        raise ValueError(f"problem {state.problem.id!r} cannot be solved; it has no value targets")
    states = prefixes(state)
    return list(zip(states, trace_quality_values(root, [steps_to_solve(s) for s in states])))


def random_walks(problem: Problem, walks: int, rng: random.Random) -> list[ReasoningState]:
    """`walks` traces of uniformly random legal moves from the start to the last number.

    Cheap states with exact labels (no model call): most leave the path to the
    target early, so they teach V_0 which boards can still make it.
    """
    puzzle = puzzle_of(problem)
    traces = []
    for _ in range(walks):
        numbers, moves = solver.normalize(puzzle.numbers), []
        while len(numbers) > 1:
            options = solver.legal_moves(numbers, puzzle.rules)
            if not options:
                break
            moves.append(rng.choice(options))
            numbers = solver.after(numbers, moves[-1])
        traces.append(ReasoningState(problem, solution_steps(puzzle, moves)))
    return traces


def legal_states(problem: Problem) -> list[ReasoningState]:
    """Every state that legal moves reach from the start of `problem`'s puzzle (depth first)."""
    puzzle = puzzle_of(problem)
    states: list[ReasoningState] = []

    def visit(numbers: solver.Numbers, moves: list[solver.Move]) -> None:
        for move in solver.legal_moves(numbers, puzzle.rules):
            states.append(ReasoningState(problem, solution_steps(puzzle, [*moves, move])))
            left = solver.after(numbers, move)
            if len(left) > 1:
                visit(left, [*moves, move])

    visit(solver.normalize(puzzle.numbers), [])
    return states


def target_variants(
    problem: Problem, count: int, targets: Sequence[int], keep: Callable[[Puzzle], bool], rng: random.Random
) -> list[Problem]:
    """Up to `count` puzzles with `problem`'s numbers and rules and another target
    drawn from `targets` (distinct, uniformly), solvable or not, each one `keep` accepts.

    `keep` is what holds a published test set out: a variant may be another split's
    puzzle (see `reasoning_gym.sources.puzzles.in_split`).
    """
    puzzle = puzzle_of(problem)
    others = [target for target in targets if target != puzzle.target]
    variants = (Puzzle(puzzle.numbers, target, puzzle.rules) for target in rng.sample(others, min(count, len(others))))
    return [unreferenced_problem(v, f"{problem.id}/target-{v.target}") for v in variants if keep(v)]


def target_variant_rows(
    problems: Sequence[Problem],
    count: int,
    targets: Sequence[int],
    keep: Callable[[Puzzle], bool],
    seed: int = 0,
    show_progress: bool = True,
) -> dict[ReasoningState, float]:
    """{state: quality value} over every open state (a move still to make) of
    `count` target variants of each problem (`target_variants`), labelled exactly:
    0 throughout a variant that cannot be solved.

    The value of an open board is a function of its numbers and the target, so a
    training puzzle's boards under other targets teach V_0 which targets each board
    can still make, the arithmetic it otherwise learns only for the few targets of
    training puzzles. Final states are left out: the engine states their verdict.
    """
    rows: dict[ReasoningState, float] = {}
    rng = random.Random(seed)
    for problem in tqdm(problems, desc="label target variants", disable=not show_progress):
        for variant in target_variants(problem, count, targets, keep, rng):
            moves_left = len(puzzle_of(variant).numbers) - 1
            open_states = [state for state in legal_states(variant) if len(state.steps) < moves_left]
            if steps_to_solve(ReasoningState(variant)) is None:
                rows.update((state, 0.0) for state in open_states)
            else:
                rows.update(labelled_states(state)[-1] for state in open_states)
    return rows


def value_rows(
    policy: Policy,
    problems: Sequence[Problem],
    samples: int,
    sampling: SamplingConfig,
    walk_problems: Sequence[Problem] = (),
    walks: int = 0,
    seed: int = 0,
    all_states: bool = False,
    batch_problems: int = 64,
    show_progress: bool = True,
) -> dict[ReasoningState, float]:
    """{state: quality value} over pi_0's `samples` solutions per problem of `problems`
    and their reference prefixes, plus `walks` random legal walks per problem of
    `walk_problems` and, with `all_states`, every legal state of each of them.

    One row per distinct state, not per distinct `value_text`: on a task whose PRM
    reads the board, many states share a board (every correct final state of a
    target reads "make 42, answer 42, yes"). Before the engine stated its
    verdict, merging them left V_0 too few correct final states to learn the
    comparison; `value_dataset(per_board=True)` merges them now, with the verdict
    in the text one row per target is enough.
    """
    rows: dict[ReasoningState, float] = {}
    rng = random.Random(seed)
    for problem in walk_problems:
        for trace in random_walks(problem, walks, rng):
            rows.update(labelled_states(trace))
        if all_states:
            rows.update(labelled_states(state)[-1] for state in legal_states(problem))
    for start in tqdm(range(0, len(problems), batch_problems), desc="label pi_0 samples", disable=not show_progress):
        chunk = list(problems[start : start + batch_problems])
        batch_sampling = replace(sampling, seed=None if sampling.seed is None else sampling.seed + start)
        generation = policy.sample_solutions([ReasoningState(p) for p in chunk], samples, batch_sampling)
        for problem, texts in zip(chunk, generation.texts):
            traces = [solution_state(problem, text) for text in texts]
            traces.append(ReasoningState(problem, problem.steps))
            for trace in traces:
                rows.update(labelled_states(trace))
    return rows


class _ValueRow(NamedTuple):
    """One D_V0 row; rows sort by `order` (the state's text, or its board per board)."""

    order: str
    text: str
    target: float
    depth: int
    finished: bool


def value_dataset(
    rows: dict[ReasoningState, float],
    seed: int,
    per_board: bool = False,
    balance: bool = False,
    finished_fraction: float = 1.0,
) -> Dataset:
    """D_V0 as a shuffled ``{"text", "target"}`` dataset; ``text`` is what the PRM reads (`value_text`).

    One row per state, or with `per_board` one row per distinct ``value_text``
    labelled with the mean value of its states (what regression to the
    per-state rows would predict for that input, with every input weighed once).

    With `balance`, live and dead rows weigh alike at each depth: every row still
    on a path to a correct answer (value > 0) is repeated as `live_repeats` says.

    `finished_fraction` is the share of rows of finished states (those that state
    an answer) kept, each row (a repeat too) drawn independently, so live and dead
    ones keep their proportion. Why: the engine states its verdict on a finished
    expression, which the PRM reads off the text, yet on Countdown `easy` finished
    boards are 44% of the balanced rows (51 correct ones repeated 147 times each);
    dropping most of them spends the training steps on the open boards search ranks.
    """
    if not rows:
        raise ValueError("D_V0 is empty: no labelled state")
    if not 0 < finished_fraction <= 1:
        raise ValueError(f"finished_fraction must be in (0, 1], got {finished_fraction}")
    if per_board:
        boards: dict[str, tuple[int, bool, list[float]]] = {}
        for state, value in rows.items():
            boards.setdefault(state.value_text, (len(state.steps), state.answer is not None, []))[2].append(value)
        items = sorted(_ValueRow(board, board, sum(values) / len(values), depth, finished)
                       for board, (depth, finished, values) in boards.items())  # fmt: skip
    else:
        items = sorted((_ValueRow(state.text, state.value_text, value, len(state.steps), state.answer is not None)
                        for state, value in rows.items()), key=lambda item: item.order)  # fmt: skip
    if balance:
        repeats = live_repeats([item.target for item in items], [item.depth for item in items])
        items = [item for item, count in zip(items, repeats) for _ in range(count)]
    if finished_fraction < 1:
        draw = random.Random(seed + 1)
        items = [item for item in items if not item.finished or draw.random() < finished_fraction]
    random.Random(seed).shuffle(items)
    return Dataset.from_dict({"text": [item.text for item in items], "target": [item.target for item in items]})

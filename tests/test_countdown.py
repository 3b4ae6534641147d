"""The planning task family: Countdown and Game of 24 (grader, move engine, oracle, sources)."""

from __future__ import annotations

import itertools
import json
import random
import re
import time
from fractions import Fraction
from pathlib import Path

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

from reasoning_gym import (
    EpisodeLimits,
    Problem,
    ReasoningMathEnv,
    ReasoningState,
    apply_step,
    grade,
    grade_answer,
    is_terminal,
    make_source,
    solvable,
    split_of,
)
from reasoning_gym.sources.base import SPLITS
from reasoning_gym.sources.files import SourceFormatError
from reasoning_gym.sources.puzzles import (
    COUNTDOWN_PRESETS,
    CountdownConfig,
    generate_puzzle,
    puzzle_problem,
    solution_steps,
    solvable_24_puzzles,
)
from reasoning_gym.tasks import solver
from reasoning_gym.tasks.countdown import CountdownTask, Puzzle, grade_expression, puzzle_of
from reasoning_gym.tasks.expression import GAME24_RULES, ArithmeticRules, ExpressionError, evaluate_expression

BASIC = COUNTDOWN_PRESETS["basic"].rules
TASK = CountdownTask()
LIMITS = EpisodeLimits()
TOT_HEADER = "Rank,Puzzles,AMT (s),Solved rate,1-sigma Mean (s),1-sigma STD (s)"


# --- independent references --------------------------------------------------------------


def exact_value(expression: str) -> Fraction:
    """The value of a + - * / expression by Python's own parser over Fractions (not the library's)."""
    code = re.sub(r"\d+", r"F(\g<0>)", expression)
    return eval(code, {"F": Fraction, "__builtins__": {}})  # noqa: S307 (test-built arithmetic only)


def literals(expression: str) -> list[int]:
    return sorted(int(n) for n in re.findall(r"\d+", expression))


def combine(a: Fraction, op: str, b: Fraction, rules: dict) -> Fraction | None:
    """``a op b`` under a puzzle's rules (metadata dict), or None when they forbid it."""
    if op not in rules["operations"] or (op == "/" and b == 0):
        return None
    value = {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else None}[op]
    if value < 0 and not rules["allow_negative"]:
        return None
    if value.denominator != 1 and not rules["allow_fractions"]:
        return None
    return value


def brute(values: list[Fraction], target: int, rules: dict) -> bool:
    """Plain recursion over every pair and operation; no memo, no library solver."""
    if len(values) == 1:
        return values[0] == target
    for i, j in itertools.combinations(range(len(values)), 2):
        rest = values[:i] + values[i + 1 : j] + values[j + 1 :]
        a, b = values[i], values[j]
        for x, op, y in ((a, "+", b), (a, "*", b), (a, "-", b), (b, "-", a), (a, "/", b), (b, "/", a)):
            value = combine(x, op, y, rules)
            if value is not None and brute(rest + [value], target, rules):
                return True
    return False


def fmt(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


# --- helpers -------------------------------------------------------------------------------


def problem_for(numbers, target=24, rules=GAME24_RULES, name="p") -> Problem:
    return puzzle_problem(Puzzle(tuple(numbers), target, rules), f"{name}-{numbers}-{target}", random.Random(0))


def run(problem: Problem, *actions: str) -> ReasoningState:
    state = ReasoningState(problem)
    for action in actions:
        state = apply_step(state, action, LIMITS)
    return state


def keys_of(problems) -> set[str]:
    return {puzzle_of(p).key for p in problems}


def write_puzzles(path: Path, form: str, puzzles: list[tuple[tuple[int, ...], int]]) -> Path:
    """`puzzles` (numbers, target) in one `read_puzzle_file` format, numbers written in reverse order."""
    rows = [(list(reversed(numbers)), target) for numbers, target in puzzles]
    if form == "csv":  # Tree-of-Thoughts columns, plus `target` when a target is not 24
        extra = any(target != 24 for _, target in rows)
        lines = [TOT_HEADER + (",target" if extra else "")]
        for rank, (numbers, target) in enumerate(rows, start=1):
            lines.append(f"{rank},{' '.join(map(str, numbers))},4.4,94.00%,4.36,1.72" + (f",{target}" if extra else ""))
    elif form == "jsonl":
        lines = [json.dumps({"numbers": numbers, "target": target}) for numbers, target in rows]
    else:
        lines = ["# puzzles to leave out", ""] + [f"{' '.join(map(str, numbers))} -> {target}" for numbers, target in rows]
    file = path / f"excluded.{form}"
    file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return file


@pytest.fixture(scope="module")
def all_game24():
    return make_source("game24", split=None)


# --- 1. the grader on every Game-of-24 puzzle ------------------------------------------------


def test_solvable_24_counts_are_the_known_ones():
    multisets = list(itertools.combinations_with_replacement(range(1, 14), 4))
    solvable13 = solvable_24_puzzles(13)
    assert len(multisets) == 1820 and len(solvable13) == 1362
    assert len(solvable_24_puzzles(10)) == 566
    assert (1, 1, 1, 1) not in solvable13 and {(3, 3, 8, 8), (1, 5, 5, 5), (4, 5, 6, 10)} <= set(solvable13)


def test_grader_accepts_a_solution_of_every_solvable_24_puzzle(all_game24):
    assert len(all_game24) == 1362
    assert sorted(tuple(puzzle_of(p).numbers) for p in all_game24) == solvable_24_puzzles(13)
    for problem in all_game24:
        puzzle = puzzle_of(problem)
        assert exact_value(problem.answer) == 24 and literals(problem.answer) == sorted(puzzle.numbers), problem
        assert grade_expression(puzzle, problem.answer), problem
        assert grade(ReasoningState(problem, problem.steps)), problem
        assert grade(ReasoningState(problem, (f"The answer is {problem.answer}",))), problem


def splice(text: str, span: tuple[int, int], replacement: str) -> str:
    return text[: span[0]] + replacement + text[span[1] :]


def test_grader_rejects_corrupted_solutions_of_every_24_puzzle():
    rng = random.Random(24)
    twice = ops_rejected = 0
    for numbers in solvable_24_puzzles(13):
        puzzle = Puzzle(numbers, 24, GAME24_RULES)
        moves = solver.random_solution(solver.normalize(numbers), 24, GAME24_RULES, rng)
        answer = solution_steps(puzzle, moves)[-1].split("The answer is ", 1)[1]
        assert grade_expression(puzzle, answer), answer
        spots = [m.span() for m in re.finditer(r"\d+", answer)]
        # a number that is not in the puzzle
        wrong = rng.choice([n for n in range(14) if n not in numbers])
        assert not grade_expression(puzzle, splice(answer, rng.choice(spots), str(wrong)))
        # a number used twice: replace a literal with a different one that appears once
        once = [n for n in numbers if numbers.count(n) == 1]
        options = [(span, n) for span in spots for n in once if int(answer[span[0] : span[1]]) != n]
        if options:
            span, n = rng.choice(options)
            assert not grade_expression(puzzle, splice(answer, span, str(n)))
            twice += 1
        # one operator changed: graded True exactly when the value is still 24
        rejected = 0
        for match in re.finditer(r" ([-+*/]) ", answer):
            for op in "+-*/".replace(match[1], ""):
                changed = splice(answer, match.span(1), op)
                try:
                    value = exact_value(changed)
                except ZeroDivisionError:
                    value = None
                try:
                    assert evaluate_expression(changed).value == value
                except ExpressionError:
                    assert value is None
                assert grade_expression(puzzle, changed) == (value == 24), changed
                rejected += value != 24
        assert rejected > 0, answer
        ops_rejected += rejected
        # still worth 24, but not the puzzle's numbers: an extra, a repeated or a missing number
        n = rng.choice(numbers)
        for changed in (f"({answer}) * 1", f"({answer}) + {n} - {n}", f"({answer}) * ({n} / {n})", "24",
                        f"{n} * 24 / {n}"):
            assert exact_value(changed) == 24 and not grade_expression(puzzle, changed), changed
    assert twice > 1000 and ops_rejected > 3 * 1362


# --- 2. Game-of-24 semantics --------------------------------------------------------------


@pytest.mark.parametrize(
    "numbers, expression, negative, fractional",
    [((4, 5, 6, 10), "(4 * 5) - (6 - 10)", True, False), ((3, 3, 8, 8), "8 / (3 - (8 / 3))", False, True)],
)
def test_negative_and_fractional_intermediates(numbers, expression, negative, fractional):
    assert exact_value(expression) == 24
    assert grade_expression(Puzzle(numbers, 24, GAME24_RULES), expression)
    assert grade_answer(problem_for(numbers), expression)
    # a countdown preset (whole, non-negative intermediates) rejects it
    assert not grade_expression(Puzzle(numbers, 24, BASIC), expression)
    unsolvable_in_basic = Problem(f"basic-{numbers}", "Make 24, whole numbers >= 0.", "none",
                                  metadata={"puzzle": Puzzle(numbers, 24, BASIC).to_metadata()}, task="countdown")
    assert not grade_answer(unsolvable_in_basic, expression)
    # each rule on its own rejects exactly what it forbids
    assert grade_expression(Puzzle(numbers, 24, ArithmeticRules(allow_negative=False)), expression) is not negative
    assert grade_expression(Puzzle(numbers, 24, ArithmeticRules(allow_fractions=False)), expression) is not fractional


def test_3388_needs_fractions():
    metadata = {"operations": "+-*/", "allow_negative": True, "allow_fractions": False}
    assert brute([Fraction(n) for n in (3, 3, 8, 8)], 24, {**metadata, "allow_fractions": True})
    assert not brute([Fraction(n) for n in (3, 3, 8, 8)], 24, metadata)
    assert solver.solvable((3, 3, 8, 8), 24, GAME24_RULES)
    assert not solver.solvable((3, 3, 8, 8), 24, ArithmeticRules(allow_fractions=False))


def test_precedence_aliases_and_exact_numbers():
    puzzle = Puzzle((4, 5, 6, 10), 24)
    assert grade_expression(puzzle, "4 + 5 * 6 - 10")  # 4 + 30 - 10
    assert not grade_expression(puzzle, "(4 + 5) * 6 - 10")
    assert grade_expression(puzzle, " ((4 × 5)) + 10 − 6 ")
    assert not grade_expression(puzzle, "4 * 5 + 10 - 6 + 0")  # an extra number
    assert not grade_expression(puzzle, "4 * 5 + 4")  # numbers missing
    assert evaluate_expression("(4*5) - (6-10)").canonical == evaluate_expression("4 * 5 - (6 - 10)").canonical


# --- 3. grader safety ---------------------------------------------------------------------

HOSTILE = [
    "10 / (6 - 6) * 4 + 5",
    "4 + * 5 6 10",
    "4 5 6 10",
    "",
    "((4 * 5) + 10 - 6",
    "(4 * 5) + 10) - 6",
    "-4 + 5 * 6 - 10 + 4",
    "4 * (-5) + 6 * 10",
    "four * 5 + 10 - 6",
    "4 * 5 + 10 - 6; import os",
    "1 + " * 2560 + "1",  # 10 kB
    "(" * 10_000 + "24" + ")" * 10_000,
    "(" * 60 + "4 * 5 + 10 - 6" + ")" * 60,  # short, but nested too deep
    "1" * 1000,
    "1234567 - 1234543",
    "999999 * 999999 * 999999 * 999999 * 999999",
    "4 / 5 / 6 / 10 / 999999 / 999999 / 999999",
    "4 ** 5 + 6 - 10",
]


def test_hostile_answers_grade_false_fast_and_raise_only_expression_error():
    puzzle = Puzzle((4, 5, 6, 10), 24)
    problem = problem_for((4, 5, 6, 10))
    start = time.perf_counter()
    for text in HOSTILE:
        assert grade_expression(puzzle, text) is False, text[:60]
        assert grade_answer(problem, text) is False, text[:60]
        with pytest.raises(ExpressionError):
            evaluate_expression(text)
    assert time.perf_counter() - start < 1.0
    assert grade_expression(puzzle, None) is False


def test_hostile_answer_steps_give_reward_zero():
    """Within the action space (steps up to `max_step_chars`) a hostile answer ends the episode
    unsolved; a longer step is outside it and refused, as for every task."""
    env = ReasoningMathEnv([problem_for((4, 5, 6, 10))])
    for text in filter(None, HOSTILE):
        env.reset(options={"index": 0})
        action = f"The answer is {text}"
        if len(action) > env.limits.max_step_chars:
            with pytest.raises(ValueError, match="max_step_chars"):
                env.step(action)
            continue
        _, reward, terminated, truncated, info = env.step(action)
        assert (reward, terminated, truncated, info["correct"]) == (0.0, True, False, False), text[:60]


# --- 4. the step format and the MDP ---------------------------------------------------------


@pytest.fixture(scope="module")
def p24():
    return problem_for((4, 9, 10, 13), name="game24")


@pytest.fixture(scope="module")
def basic():
    return problem_for((4, 9, 10, 13), rules=BASIC, name="basic")


def test_moves_render_the_numbers_left_ascending(p24):
    state = run(p24, "Step 1: 13 - 9 = 4")
    assert state.steps == ("13 - 9 = 4 (left: 4 4 10)",)
    assert not is_terminal(state) and state.answer is None and solvable(state) and TASK.illegal(p24, state.steps) is None
    state = run(p24, "13 - 9 = 4", "10 - 4 = 6", "4 * 6 = 24")
    assert state.steps == (
        "13 - 9 = 4 (left: 4 4 10)",
        "10 - 4 = 6 (left: 4 6)",
        "4 * 6 = 24 (left: 24) The answer is (13 - 9) * (10 - 4)",
    )
    assert is_terminal(state) and grade(state) and solvable(state) and state.answer == "(13 - 9) * (10 - 4)"
    # negative and fractional results are shown as -4 and 8/3, still in ascending order
    assert run(problem_for((4, 5, 6, 10)), "6 - 10 = -4").steps == ("6 - 10 = -4 (left: -4 4 5)",)
    state = run(problem_for((3, 3, 8, 8)), "8 / 3 = 8/3", "3 - 8/3 = 1/3", "8 / 1/3 = 24")
    assert state.steps[:2] == ("8 / 3 = 8/3 (left: 8/3 3 8)", "3 - 8/3 = 1/3 (left: 1/3 8)")
    assert grade(state) and state.answer == "8 / (3 - (8 / 3))"


@pytest.mark.parametrize("listed", ["(left: 10 4 4)", "(left: 4, 10, 4)", "(left: 4 4 10)", "(left:4 10 4)"])
def test_a_correct_left_list_in_any_order_is_accepted(p24, listed):
    state = run(p24, f"13 - 9 = 4 {listed}")
    assert state.steps == ("13 - 9 = 4 (left: 4 4 10)",) and not is_terminal(state)


ILLEGAL = [
    ("game24", ["13 - 9 = 4 (left: 4 10)"]),  # wrong left list
    ("game24", ["13 - 9 = 4 (left: 4 4 9 10)"]),
    ("game24", ["13 - 7 = 6"]),  # 7 is not a number of the puzzle
    ("game24", ["13 - 9 = 4", "13 + 4 = 17"]),  # 13 is used up
    ("game24", ["13 - 13 = 0"]),  # one 13, used twice
    ("game24", ["13 - 9 = 5"]),  # wrong arithmetic
    ("game24", ["13 - 9 = 4", "4 * 4 = 17"]),
    ("game24", ["10 / 4 = 2"]),
    ("basic", ["9 - 13 = -4"]),  # negative result
    ("basic", ["13 / 4 = 13/4"]),  # fractional result
    ("basic", ["13 - 9 = 4", "4 - 10 = -6"]),
    ("game24", ["Let me think about 13 and 9."]),  # not a move, no answer
    ("game24", ["13 - 9 = 4", "Now I try the 10."]),
]


@pytest.mark.parametrize("which, actions", ILLEGAL)
def test_illegal_steps_end_the_episode_unsolved(p24, basic, which, actions):
    problem = {"game24": p24, "basic": basic}[which]
    before = run(problem, *actions[:-1])
    assert not is_terminal(before) and solvable(before)
    state = apply_step(before, actions[-1], LIMITS)
    assert is_terminal(state) and not grade(state) and not solvable(state)
    reason = TASK.illegal(problem, state.steps)
    assert isinstance(reason, str) and reason
    # The engine records its verdict in the step, and the recorded step replays to the same verdict.
    assert state.steps[-1].endswith(f"(illegal: {reason})")
    assert TASK.illegal(problem, tuple(state.steps)) == reason and state.answer is None
    with pytest.raises(ValueError, match="finished"):
        apply_step(state, "13 - 9 = 4", LIMITS)


def test_an_illegal_move_drops_what_the_policy_wrote_after_it(p24):
    state = run(p24, "13 - 9 = 5 (left: 4 5 10) The answer is (13 - 9) * (10 - 4)")
    assert state.steps[-1] == "13 - 9 = 5 (left: 4 5 10) (illegal: 13 - 9 is not 5)"
    assert state.answer is None and not grade(state)


def test_moves_legal_in_game24_are_illegal_in_basic(p24, basic):
    for action in ("9 - 13 = -4", "13 / 4 = 13/4"):
        assert not is_terminal(run(p24, action)) and is_terminal(run(basic, action))


def test_the_last_move_states_the_answer_and_grades_by_the_target(p24, basic):
    for problem in (p24, basic):
        right = run(problem, "13 - 9 = 4", "10 - 4 = 6", "6 * 4 = 24")
        wrong = run(problem, "13 - 9 = 4", "10 - 4 = 6", "4 + 6 = 10")
        assert is_terminal(right) and grade(right) and solvable(right) and TASK.illegal(problem, right.steps) is None
        assert is_terminal(wrong) and not grade(wrong) and not solvable(wrong) and TASK.illegal(problem, wrong.steps) is None
        assert wrong.answer == "(13 - 9) + (10 - 4)" and wrong.steps[-1].endswith("The answer is (13 - 9) + (10 - 4)")


def test_an_answer_step_is_graded_as_written(p24):
    for prefix in ((), ("10 - 4 = 6",), ("13 + 10 = 23",)):
        right = run(p24, *prefix, "The answer is (13 - 9) * (10 - 4)")
        assert is_terminal(right) and grade(right) and solvable(right) and TASK.illegal(p24, right.steps) is None
        for wrong in ("(13 - 9) * (10 + 4)", "24", "(13 - 9) * (10 - 4) * 1"):
            state = run(p24, *prefix, f"The answer is {wrong}")
            assert is_terminal(state) and not grade(state) and not solvable(state)


@pytest.mark.parametrize(
    "negative, fractions, rule, board",
    [
        (True, True, "", "+ - * /."),
        (True, False, " Every result must be a whole number.", "+ - * / whole."),
        (False, False, " Every result must be a whole number >= 0.", "+ - * / whole >= 0."),
        (False, True, " Every result must be >= 0.", "+ - * / >= 0."),
    ],
)
def test_question_and_board_state_the_rule_on_intermediates(negative, fractions, rule, board):
    problem = problem_for((4, 9, 10, 13), rules=ArithmeticRules(allow_negative=negative, allow_fractions=fractions))
    assert problem.question == f"Use 4 9 10 13 and + - * / to make 24.{rule}"
    assert ReasoningState(problem).value_text == f"{board} make 24, left 4 9 10 13\n"


def test_value_models_read_the_board_and_transpositions_share_it(p24, basic):
    """The PRM's view of a countdown state is its board next to the target, not the history."""
    one, other = run(p24, "13 - 9 = 4", "10 - 4 = 6"), run(p24, "10 - 4 = 6", "13 - 9 = 4")
    assert one.text != other.text and one.value_text == other.value_text == "+ - * /. make 24, left 4 6\n"
    assert ReasoningState(basic).value_text == "+ - * / whole >= 0. make 24, left 4 9 10 13\n"
    assert run(p24, "13 - 9 = 4", "10 - 4 = 6", "4 + 6 = 10").value_text.endswith("make 24, answer 10, no\n")
    assert run(p24, "The answer is (13 - 9) * (10 - 4)").value_text.endswith("make 24, answer 24, yes\n")
    assert run(p24, "The answer is 24").value_text.endswith("make 24, answer invalid\n")  # not the puzzle's numbers
    assert run(p24, "The answer is (13 - 9) *").value_text.endswith("make 24, answer invalid\n")
    assert run(p24, "13 - 9 = 5").value_text.endswith("make 24, illegal\n")
    fractions = run(problem_for((3, 3, 8, 8)), "8 / 3 = 8/3")
    assert fractions.value_text == "+ - * /. make 24, left 8/3 3 8\n"
    word = Problem("w", "What is 2 + 3?", "5")
    assert ReasoningState(word, ("2 + 3 = 5",)).value_text == ReasoningState(word, ("2 + 3 = 5",)).text


def test_moves_with_results_beyond_six_digits_can_be_written():
    """A custom config may allow numbers whose products exceed 6 digits; such legal moves must be playable."""
    rules = CountdownConfig(max_number=1000, min_target=1).rules
    puzzle = Puzzle((1000, 1000, 1000, 1000), 1, rules)
    problem = puzzle_problem(puzzle, "big", random.Random(0))
    state = run(problem, "1000 * 1000 = 1000000")
    assert state.steps == ("1000 * 1000 = 1000000 (left: 1000 1000 1000000)",) and solvable(state)
    state = run(problem, "1000 * 1000 = 1000000", "1000000 / 1000 = 1000 (left: 1000 1000)", "1000 / 1000 = 1")
    assert grade(state) and exact_value(state.answer) == 1 and literals(state.answer) == [1000] * 4
    assert is_terminal(run(problem, "1000 * 1000 = 100000"))  # a wrong claim is not read as a prefix
    for seed in range(20):  # every solver solution replays, whichever moves it draws
        assert grade(ReasoningState(problem, puzzle_problem(puzzle, f"big{seed}", random.Random(seed)).steps))


# --- 5. through the environment ------------------------------------------------------------


@pytest.mark.parametrize("source", ["countdown", "game24"])
def test_env_passes_check_env_and_replays_every_reference(source):
    env = gym.make("ReasoningMath-v0", source=source, split="test", size=20)
    check_env(env.unwrapped, skip_render_check=False)
    env = env.unwrapped
    assert len(env.problems) == 20
    for index, problem in enumerate(env.problems):
        env.reset(options={"index": index})
        for k, step in enumerate(problem.steps):
            last = k == len(problem.steps) - 1
            _, reward, terminated, truncated, info = env.step(step)
            assert (reward, terminated, truncated) == ((1.0, True, False) if last else (0.0, False, False)), problem
        assert info["correct"] is True and info["answer"] == problem.answer
    env.reset(options={"index": 0})
    _, reward, terminated, truncated, info = env.step("99 + 99 = 198")
    assert (reward, terminated, truncated, info["correct"]) == (0.0, True, False, False)


# --- 6. the oracle against brute force -------------------------------------------------------


def random_walk(problem: Problem, rng: random.Random):
    """(state, brute-force value) along one random walk of legal and illegal moves."""
    rules = problem.metadata["puzzle"]
    target = rules["target"]
    values = [Fraction(n) for n in rules["numbers"]]
    state = ReasoningState(problem)
    yield state, brute(values, target, rules), False
    while not is_terminal(state):
        i, j = rng.sample(range(len(values)), 2)
        a, b = values[i], values[j]
        legal = [(op, combine(a, op, b, rules)) for op in "+-*/" if combine(a, op, b, rules) is not None]
        forbidden = [op for op in "+-*/" if combine(a, op, b, rules) is None]
        roll = rng.random()
        if legal and roll < 0.75:
            op, result = rng.choice(legal)
            state = apply_step(state, f"{fmt(a)} {op} {fmt(b)} = {fmt(result)}", LIMITS)
            values = [v for k, v in enumerate(values) if k not in (i, j)] + [result]
            yield state, brute(values, target, rules), False
            continue
        if forbidden and roll < 0.85:  # a rule broken (negative, fraction, division by zero)
            op = rng.choice(forbidden)
            shown = fmt(a / b) if op == "/" and b else fmt({"+": a + b, "-": a - b, "*": a * b, "/": a}[op])
            step = f"{fmt(a)} {op} {fmt(b)} = {shown}"
        elif roll < 0.93:  # wrong arithmetic
            step = f"{fmt(a)} + {fmt(b)} = {fmt(a + b + 1)}"
        else:  # a number that is not left
            step = f"{fmt(max(values) + 1)} + {fmt(a)} = {fmt(max(values) + 1 + a)}"
        state = apply_step(state, step, LIMITS)
        yield state, False, True


def test_solvable_matches_brute_force_on_random_states():
    rng = random.Random(6)
    problems = (
        [generate_puzzle(i, 11, "basic") for i in range(8)]
        + [generate_puzzle(i, 11, "medium") for i in range(8)]
        + list(make_source("game24", split=None, size=8, seed=11))
    )
    outcomes = {True: 0, False: 0, "illegal": 0}
    for problem in problems:
        for _ in range(6):
            for state, expected, illegal in random_walk(problem, rng):
                assert solvable(state) == expected, state.steps
                assert (TASK.illegal(problem, state.steps) is not None) == illegal, state.steps
                outcomes["illegal" if illegal else expected] += 1
    assert min(outcomes.values()) >= 20, outcomes


# --- 7. the generator -------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["easy", "basic", "medium"])
def test_generator_is_deterministic_and_emits_solvable_puzzles_in_range(preset):
    config = COUNTDOWN_PRESETS[preset]
    problems = [generate_puzzle(i, 7, preset) for i in range(30)]
    again = [generate_puzzle(i, 7, preset) for i in range(30)]
    assert problems == again and [p.metadata for p in problems] == [p.metadata for p in again]
    assert [p.question for p in problems] != [p.question for p in (generate_puzzle(i, 8, preset) for i in range(30))]
    assert problems[0] == generate_puzzle(0, 7, config)  # a preset name and its config are the same generator
    for index, problem in enumerate(problems):
        puzzle = problem.metadata["puzzle"]
        assert (problem.metadata["seed"], problem.metadata["index"], problem.task) == (7, index, "countdown")
        assert len(puzzle["numbers"]) == config.count
        assert all(config.min_number <= n <= config.max_number for n in puzzle["numbers"])
        assert config.min_target <= puzzle["target"] <= config.max_target
        assert (puzzle["operations"], puzzle["allow_negative"], puzzle["allow_fractions"]) == (
            config.operations, config.allow_negative, config.allow_fractions)
        assert brute([Fraction(n) for n in puzzle["numbers"]], puzzle["target"], puzzle), problem
        assert grade(ReasoningState(problem, problem.steps)) and len(problem.steps) == config.count - 1


@pytest.mark.parametrize(
    "kwargs, field",
    [({"count": 2}, "count"), ({"count": 7}, "count"), ({"min_target": 50, "max_target": 40}, "min_target")],
)
def test_countdown_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"CountdownConfig\.{field}"):
        CountdownConfig(**kwargs)
    with pytest.raises(ValueError, match=field):
        make_source("countdown", size=1, difficulty=kwargs)


def test_unknown_difficulty_and_config_keys_are_named():
    with pytest.raises(ValueError, match="easy, basic, medium"):
        generate_puzzle(0, 0, "impossible")
    with pytest.raises(ValueError, match="numbers"):
        generate_puzzle(0, 0, {"numbers": 4})


# --- 8. splits --------------------------------------------------------------------------------


def test_countdown_splits_never_share_a_puzzle():
    sets = {split: make_source("countdown", split=split, size=30, seed=1) for split in SPLITS}
    for split, problems in sets.items():
        keys = [puzzle_of(p).key for p in problems]
        assert len(set(keys)) == 30 and all(split_of(key) == split for key in keys)
    for first, second in itertools.combinations(SPLITS, 2):
        assert not keys_of(sets[first]) & keys_of(sets[second])
    # whatever the seed or difficulty, a test puzzle is never a training puzzle
    other = make_source("countdown", split="test", size=30, seed=2, difficulty="easy")
    assert not keys_of(other) & keys_of(make_source("countdown", split="train", size=300, seed=2, difficulty="easy"))


def test_a_split_can_be_asked_for_every_puzzle_it_holds_and_no_more():
    """The walk finds even a level's rarest puzzles (three equal numbers come up 1/6 as often
    as three different ones) and says how many exist when asked for more."""
    level = CountdownConfig(count=3, max_number=6, min_target=10, max_target=30)
    every = {Puzzle(numbers, target, level.rules).key
             for numbers in itertools.combinations_with_replacement(range(1, 7), 3)
             for target in range(10, 31) if solver.solvable(solver.normalize(numbers), target, level.rules)}
    held = {key for key in every if split_of(key) == "train"}
    assert 150 < len(held) < len(every)
    # (a walk of a fixed length, size / share * 4 + 2000 indices, found 188 of these 191)
    found = make_source("countdown", split="train", size=len(held), seed=0, difficulty=level)
    assert {puzzle_of(p).key for p in found} == held
    with pytest.raises(RuntimeError, match=f"only {len(held)} distinct train puzzles"):
        make_source("countdown", split="train", size=len(held) + 1, seed=0, difficulty=level)


def test_reordered_numbers_land_in_the_same_split(tmp_path):
    orders = [(4, 5, 6, 10), (10, 6, 5, 4), (6, 4, 10, 5)]
    assert len({Puzzle(numbers, 24).key for numbers in orders}) == 1
    others = [(1, 2, 3, 4), (2, 3, 4, 5), (1, 1, 4, 6), (3, 3, 8, 8), (2, 2, 2, 3), (1, 3, 4, 6)]
    file = tmp_path / "mixed.txt"
    file.write_text("\n".join(" ".join(map(str, n)) for n in orders + others) + "\n", encoding="utf-8")
    lines = {split: [int(p.id.rsplit(":", 1)[1]) for p in make_source("game24", path=file, split=split)] for split in SPLITS}
    assert sorted(sum(lines.values(), [])) == list(range(1, 10))  # every line in exactly one split
    home = split_of(Puzzle((4, 5, 6, 10), 24).key)
    assert {1, 2, 3} <= set(lines[home])
    for line, numbers in enumerate(others, start=4):
        assert line in lines[split_of(Puzzle(numbers, 24).key)]


# --- 9. excluding puzzles -------------------------------------------------------------------


def exclusion(tmp_path: Path, form: str, problems) -> object:
    if form == "problems":
        return problems
    if form == "keys":
        return [puzzle_of(p).key for p in problems]
    return write_puzzles(tmp_path, form, [(puzzle_of(p).numbers, puzzle_of(p).target) for p in problems])


FORMS = ["csv", "jsonl", "txt", "problems", "keys"]


@pytest.mark.parametrize("form", FORMS)
def test_countdown_exclusion_leaves_out_the_listed_puzzles(tmp_path, form):
    base = make_source("countdown", split="train", size=40, seed=2)
    dropped = base[::4]
    excluded = keys_of(dropped)
    assert len(excluded) == 10 and excluded <= keys_of(base)
    kept = make_source("countdown", split="train", size=40, seed=2, exclude=exclusion(tmp_path, form, dropped))
    assert len(kept) == 40 and not keys_of(kept) & excluded
    assert list(kept)[:30] == [p for p in base if puzzle_of(p).key not in excluded]


def test_countdown_exclusion_of_the_same_walk_looks_past_it():
    """Excluding the first 1,600 puzzles of a seed's own walk (the self-training set of
    configs/countdown/self_train_1600_unsolved.yaml) still yields puzzles from that seed."""
    first = make_source("countdown", split="train", size=1600, seed=1)
    rest = make_source("countdown", split="train", size=300, seed=1, exclude=first)
    assert len(rest) == 300 and not keys_of(rest) & keys_of(first)


@pytest.mark.parametrize("form", FORMS)
def test_game24_exclusion_leaves_out_the_listed_puzzles(tmp_path, all_game24, form):
    listed = all_game24[:40]  # puzzles of every split
    excluded = keys_of(listed)
    base = make_source("game24", split="train")
    in_train = excluded & keys_of(base)
    assert in_train and len(in_train) < 40
    kept = make_source("game24", split="train", exclude=exclusion(tmp_path, form, listed))
    assert not keys_of(kept) & excluded and len(kept) == len(base) - len(in_train)
    assert list(kept) == [p for p in base if puzzle_of(p).key not in excluded]


def test_bare_keys_mean_target_24():
    kept = make_source("game24", split=None, exclude=["10 6 5 4", "8 8 3 3 -> 24"])
    assert len(kept) == 1360 and not {"4 5 6 10 -> 24", "3 3 8 8 -> 24"} & keys_of(kept)


# --- 10. the Tree-of-Thoughts CSV --------------------------------------------------------------


def tot_csv(path: Path, puzzles: list[str], header: str = TOT_HEADER) -> Path:
    rows = [f"{rank},{numbers},4.4,94.00%,4.36,1.72" for rank, numbers in enumerate(puzzles, start=1)]
    path.write_text("\n".join([header] + rows) + "\n", encoding="utf-8")
    return path


def test_tot_csv_rows_in_file_order_from_start(tmp_path):
    file = tot_csv(tmp_path / "24.csv", ["1 1 4 6", "10 4 6 5", "1 1 11 11", "3 3 8 8"])
    problems = make_source("game24", path=file, split=None, start=1, size=2)
    assert [puzzle_of(p).numbers for p in problems] == [(4, 5, 6, 10), (1, 1, 11, 11)]
    assert [p.id for p in problems] == ["game24-24.csv:3", "game24-24.csv:4"]
    assert all(grade(ReasoningState(p, p.steps)) for p in problems)
    assert len(make_source("game24", path=file, split=None)) == 4


@pytest.mark.parametrize(
    "rows, header, match",
    [
        (["1 1 4 6", "x y z"], TOT_HEADER, r"bad\.csv:3"),
        (["1 1 4 6", "1 1 11 11", "1 1 1 1"], TOT_HEADER, r"bad\.csv:4.*1 1 1 1"),
        (["1 1 4 6"], TOT_HEADER.replace("Puzzles", "Puzzle"), r"bad\.csv.*'Puzzles'"),
    ],
)
def test_tot_csv_errors_name_the_file_and_line(tmp_path, rows, header, match):
    file = tot_csv(tmp_path / "bad.csv", rows, header)
    with pytest.raises(SourceFormatError, match=match):
        make_source("game24", path=file, split=None)

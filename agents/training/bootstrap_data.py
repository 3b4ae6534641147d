"""The bootstrap datasets of Algorithm 1: D_S0 for pi_0 and D_V0 for V_0.

D_S0 holds reference solutions of synthetic training problems (plus a small share
of bare arithmetic drills, which teach the digit-level arithmetic faster than
word problems alone). D_V0 holds partial reference solutions labelled with the
ReST-MCTS* quality value (k / K along a correct K-step solution) and corrupted
next steps labelled by the value's negative branch, max(v - (1 - v) / m, 0).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from datasets import Dataset

from agents.training.value_targets import correct_path_values, wrong_step_value
from reasoning_gym import Problem, answer_step, extract_answer, render_state

_EQUATION = re.compile(r"^(\d+) ([-+*/]) (\d+) = (\d+)$")
_OPERATIONS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def solution_text(problem: Problem, eos: str) -> str:
    """A whole reference solution as the policy is trained to write it."""
    return render_state(problem.question, problem.steps) + eos


def drill_problem(rng: random.Random, max_value: int) -> Problem:
    """A bare arithmetic exercise in the step format, e.g. ``"What is 23 + 45?"``."""
    op = rng.choice("+-*/")
    if op == "/":
        b = rng.randint(2, 12)
        c = rng.randint(1, max(1, max_value // 2))
        a, result = b * c, c
    else:
        a, b = rng.randint(1, max_value), rng.randint(1, max_value)
        if op == "-" and b > a:
            a, b = b, a
        if op == "*":
            b = rng.randint(2, 12)
        result = _OPERATIONS[op](a, b)
    steps = (f"{a} {op} {b} = {result}", answer_step(str(result)))
    return Problem(f"drill-{a}{op}{b}", f"What is {a} {op} {b}?", str(result), steps)


def policy_dataset(problems: Sequence[Problem], eos: str, drill_fraction: float, seed: int) -> Dataset:
    """D_S0 as a ``{"text"}`` dataset: reference solutions plus arithmetic drills."""
    rng = random.Random(seed)
    with_steps = [p for p in problems if p.steps]
    if not with_steps:
        raise ValueError("no problem has reference steps; D_S0 needs them")
    # Drill operands span the same range as the numbers the problems state.
    max_value = max(int(n) for p in with_steps for n in re.findall(r"\d+", p.question))
    drills = round(len(with_steps) * drill_fraction / max(1e-9, 1 - drill_fraction))
    texts = [solution_text(p, eos) for p in with_steps]
    texts += [solution_text(drill_problem(rng, max_value), eos) for _ in range(drills)]
    rng.shuffle(texts)
    return Dataset.from_dict({"text": texts})


def corrupt_step(step: str, rng: random.Random, known_numbers: Sequence[int]) -> str | None:
    """A plausible but wrong replacement for computation step `step`, or None.

    Wrong arithmetic (right operands, wrong result), a wrong operand (another
    number of the problem, result recomputed), or a wrong operator.
    """
    match = _EQUATION.match(step)
    if not match:
        return None
    a, op, b, c = int(match[1]), match[2], int(match[3]), int(match[4])
    kind = rng.choice(("arithmetic", "operand", "operator"))
    if kind == "operand" and op != "/":
        others = [n for n in known_numbers if n not in (a, b)]
        if others:
            new_a = rng.choice(others)
            new_c = _OPERATIONS[op](new_a, b)
            if new_c >= 0 and new_c != c:
                return f"{new_a} {op} {b} = {new_c}"
    if kind == "operator" and op != "/":
        new_op = rng.choice([o for o in "+-*" if o != op])
        new_c = _OPERATIONS[new_op](a, b)
        if new_c >= 0 and new_c != c:
            return f"{a} {new_op} {b} = {new_c}"
    delta = rng.randint(1, max(2, c // 5))
    wrong = c + delta if c < delta or rng.random() < 0.5 else c - delta
    return f"{a} {op} {b} = {wrong}"


def corrupt_answer(step_answer: str, rng: random.Random, intermediates: Sequence[int]) -> str:
    """A wrong final-answer step: an intermediate value or the answer off by a little."""
    answer = int(step_answer)
    candidates = [n for n in intermediates if n != answer]
    if candidates and rng.random() < 0.5:
        return answer_step(str(rng.choice(candidates)))
    delta = rng.randint(1, max(2, answer // 5))
    return answer_step(str(answer + delta if answer < delta or rng.random() < 0.5 else answer - delta))


def value_samples(problem: Problem, rng: random.Random) -> list[tuple[str, float]]:
    """(state text, target) pairs for one problem: every correct prefix and a wrong step at each depth."""
    steps = problem.steps
    total = len(steps)
    values = correct_path_values(total)
    numbers = [int(n) for n in re.findall(r"\d+", problem.question)]
    results = [int(m[4]) for m in map(_EQUATION.match, steps) if m]
    samples = [(render_state(problem.question, steps[:k]), values[k - 1]) for k in range(1, total + 1)]
    for k in range(1, total + 1):  # a wrong k-th step after k-1 correct ones
        parent_value = values[k - 2] if k > 1 else 0.0
        target = wrong_step_value(parent_value, total - k + 1)
        if extract_answer(steps[k - 1]) is not None:
            wrong = corrupt_answer(problem.answer, rng, results)
        elif rng.random() < 0.25:  # premature final answer, never the right value
            early = [n for n in results[: k - 1] + numbers if str(n) != problem.answer]
            wrong = answer_step(str(rng.choice(early))) if early else None
        else:
            wrong = corrupt_step(steps[k - 1], rng, numbers + results[: k - 1])
        if wrong and wrong != steps[k - 1]:
            samples.append((render_state(problem.question, steps[: k - 1] + (wrong,)), target))
    return samples


def value_dataset(problems: Sequence[Problem], seed: int) -> Dataset:
    """D_V0 as a ``{"text", "target"}`` dataset (see `value_samples`)."""
    rng = random.Random(seed)
    rows = [sample for p in problems if p.steps for sample in value_samples(p, rng)]
    if not rows:
        raise ValueError("no problem has reference steps; D_V0 needs them")
    rng.shuffle(rows)
    texts, targets = zip(*rows)
    return Dataset.from_dict({"text": list(texts), "target": list(targets)})

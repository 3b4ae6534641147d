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


def drill_problem(equation: str) -> Problem:
    """A bare arithmetic exercise for one step equation, e.g. ``"What is 23 + 45?"``."""
    question = equation.split(" = ")[0]
    result = equation.split(" = ")[1]
    return Problem(f"drill-{question}", f"What is {question}?", result, (equation, answer_step(result)))


def policy_dataset(problems: Sequence[Problem], eos: str, drill_fraction: float, seed: int) -> Dataset:
    """D_S0 as a ``{"text"}`` dataset: reference solutions plus arithmetic drills.

    Drills restate step equations drawn from the problems' own reference solutions,
    so they practise exactly the operand ranges (intermediate results included)
    that the word problems need.
    """
    rng = random.Random(seed)
    with_steps = [p for p in problems if p.steps]
    if not with_steps:
        raise ValueError("no problem has reference steps; D_S0 needs them")
    equations = [step for p in with_steps for step in p.steps if _EQUATION.match(step)]
    drills = round(len(with_steps) * drill_fraction / max(1e-9, 1 - drill_fraction)) if equations else 0
    texts = [solution_text(p, eos) for p in with_steps]
    texts += [solution_text(drill_problem(rng.choice(equations)), eos) for _ in range(drills)]
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

"""Exact search over arithmetic puzzles: can these numbers still make the target, and how.

A puzzle state is a multiset of exact rationals (the numbers left) and a target.
A move takes two numbers, combines them with one allowed operation and puts the
result back. `solvable` answers whether some sequence of moves ends with the
target as the only number left; it is memoised on the sorted multiset, so
labelling millions of states costs one search per distinct multiset.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from reasoning_gym.tasks.expression import ArithmeticRules, Exact, ExpressionError, exact

Numbers = tuple[Exact, ...]


@dataclass(frozen=True)
class Move:
    """``a op b = result``: `a` and `b` are values taken from the numbers left."""

    a: Exact
    op: str
    b: Exact
    result: Exact


def normalize(numbers: Iterable[Exact]) -> Numbers:
    """The canonical (sorted) multiset of `numbers`, integral values as ints (see `exact`)."""
    return tuple(sorted(exact(n) for n in numbers))


def remove(numbers: Numbers, *values: Exact) -> Numbers | None:
    """`numbers` without one copy of each of `values`, or None when one is missing."""
    left = list(numbers)
    for value in values:
        try:
            left.remove(value)
        except ValueError:
            return None
    return tuple(left)


@lru_cache(maxsize=1 << 18)
def legal_moves(numbers: Numbers, rules: ArithmeticRules) -> tuple[Move, ...]:
    """Every legal move from the sorted multiset `numbers` (each unordered pair once per distinct result form).

    Commutative operations are listed once per pair (larger operand first);
    subtraction and division both ways.
    """
    moves: list[Move] = []
    seen: set[tuple[Exact, str, Exact]] = set()
    for i in range(len(numbers)):
        for j in range(i + 1, len(numbers)):
            low, high = numbers[i], numbers[j]
            for a, op, b in ((high, "+", low), (high, "*", low), (high, "-", low), (low, "-", high), (high, "/", low), (low, "/", high)):
                if (a, op, b) in seen:
                    continue
                seen.add((a, op, b))
                try:
                    moves.append(Move(a, op, b, rules.apply(a, op, b)))
                except ExpressionError:
                    continue
    return tuple(moves)


def after(numbers: Numbers, move: Move) -> Numbers:
    """The sorted multiset after `move` (which must be legal from `numbers`)."""
    left = remove(numbers, move.a, move.b)
    if left is None:
        raise ValueError(f"move {move} uses numbers not in {numbers}")
    return normalize(left + (move.result,))


@lru_cache(maxsize=1 << 20)
def solvable(numbers: Numbers, target: Exact, rules: ArithmeticRules) -> bool:
    """Whether the sorted multiset `numbers` can be reduced to exactly `target` under `rules`."""
    if len(numbers) == 1:
        return numbers[0] == target
    if len(numbers) == 2:  # the last move, without building Move records
        a, b = numbers
        for x, op, y in ((a, "+", b), (a, "*", b), (a, "-", b), (b, "-", a), (a, "/", b), (b, "/", a)):
            try:
                if rules.apply(x, op, y) == target:
                    return True
            except ExpressionError:
                continue
        return False
    return any(solvable(after(numbers, move), target, rules) for move in legal_moves(numbers, rules))


def winning_moves(numbers: Numbers, target: Exact, rules: ArithmeticRules) -> list[Move]:
    """The legal moves from `numbers` after which the target can still be made."""
    return [move for move in legal_moves(numbers, rules) if solvable(after(numbers, move), target, rules)]


def random_solution(numbers: Numbers, target: Exact, rules: ArithmeticRules, rng: random.Random) -> list[Move] | None:
    """A solution drawn by picking a uniformly random winning move at each state; None if unsolvable.

    The legal moves are shuffled and the first winning one taken (uniform among
    winning moves, without deciding every move's value).
    """
    numbers = normalize(numbers)
    if not solvable(numbers, target, rules):
        return None
    moves: list[Move] = []
    while len(numbers) > 1:
        candidates = list(legal_moves(numbers, rules))
        rng.shuffle(candidates)
        move = next(move for move in candidates if solvable(after(numbers, move), target, rules))
        moves.append(move)
        numbers = after(numbers, move)
    return moves

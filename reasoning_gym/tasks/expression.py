"""Exact arithmetic on short expressions: a small parser over `Fraction`s, no `eval`.

Planning tasks grade a final answer such as ``(13 - 9) * (10 - 4)`` by evaluating
it. The grader must never raise, hang or allocate without bound on whatever text
a policy writes, so the parser here is a bounded recursive descent over

    expression := term (("+" | "-") term)*
    term       := factor (("*" | "/") factor)*
    factor     := NUMBER | "(" expression ")"

with non-negative integer literals (no unary minus: a sign would let an answer
change a number's value for free), ``x``/``×`` accepted for ``*`` and ``÷`` for
``/``. Limits: the text length (`MAX_EXPRESSION_CHARS`), literals of at most
`MAX_LITERAL_DIGITS` digits, nesting depth, and the magnitude of every
intermediate numerator and denominator (`MAX_MAGNITUDE`). Every failure is an
`ExpressionError`; callers that grade turn it into reward 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Union

MAX_EXPRESSION_CHARS = 256
MAX_LITERAL_DIGITS = 6
MAX_DEPTH = 32
MAX_MAGNITUDE = 10**12
MAX_NUMBER_DIGITS = len(str(MAX_MAGNITUDE))  # widest numerator/denominator a legal value can have

_TOKEN = re.compile(r"\s*(?:(\d+)|(.))")
_OPERATOR_ALIASES = {"x": "*", "×": "*", "∗": "*", "·": "*", "÷": "/", "−": "-"}
OPERATIONS = "+-*/"


class ExpressionError(ValueError):
    """The text is not a valid expression under the rules (the message says why)."""


@dataclass(frozen=True)
class ArithmeticRules:
    """Which operations are allowed and which intermediate values are legal.

    Attributes:
        operations: a non-empty subset of ``"+-*/"``.
        allow_negative: intermediate values may be negative (Game of 24: yes).
        allow_fractions: intermediate values may be non-integers (Game of 24: yes);
            when False every division must be exact.
    """

    operations: str = OPERATIONS
    allow_negative: bool = True
    allow_fractions: bool = True

    def __post_init__(self) -> None:
        if not self.operations or set(self.operations) - set(OPERATIONS) or len(set(self.operations)) != len(self.operations):
            raise ValueError(f"ArithmeticRules.operations must be distinct characters of {OPERATIONS!r}, got {self.operations!r}")

    @property
    def restriction(self) -> str:
        """The rule on intermediate values in words: ``"whole >= 0"``, ``"whole"``, ``">= 0"``
        or ``""`` (no restriction); the question and the board a PRM reads both state it."""
        return " ".join(word for word, applies in (("whole", not self.allow_fractions), (">= 0", not self.allow_negative)) if applies)

    def apply(self, a: Exact, op: str, b: Exact) -> Exact:
        """``a op b`` exactly, or ExpressionError when the rules forbid the operation or its result.

        Integral values stay Python ints (the solver's hot path: int arithmetic is
        far faster than `Fraction`'s); other rationals are Fractions.
        """
        if op not in self.operations:
            raise ExpressionError(f"operation {op!r} is not allowed (allowed: {self.operations})")
        if op == "+":
            value = a + b
        elif op == "-":
            value = a - b
        elif op == "*":
            value = a * b
        else:
            if b == 0:
                raise ExpressionError("division by zero")
            value = exact(Fraction(a) / b) if type(a) is not int or type(b) is not int or a % b else a // b
        if type(value) is not int:
            value = exact(value)
        if abs(value.numerator) > MAX_MAGNITUDE or value.denominator > MAX_MAGNITUDE:
            raise ExpressionError("an intermediate value is too large")
        if value < 0 and not self.allow_negative:
            raise ExpressionError(f"{format_number(a)} {op} {format_number(b)} is negative, which the rules forbid")
        if value.denominator != 1 and not self.allow_fractions:
            raise ExpressionError(f"{format_number(a)} {op} {format_number(b)} is not an integer, which the rules forbid")
        return value


GAME24_RULES = ArithmeticRules()

Exact = Union[int, Fraction]


def exact(value: int | Fraction) -> Exact:
    """`value` as an int when it is integral, else as a Fraction (equal values hash alike)."""
    if type(value) is int:
        return value
    value = Fraction(value)
    return value.numerator if value.denominator == 1 else value


def format_number(value: Fraction | int) -> str:
    """``13``, ``-4``, ``8/3``: integers plainly, other rationals as numerator/denominator."""
    value = Fraction(value)
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


_NUMBER = re.compile(r"^\s*(-?\d{1,%d})(?:\s*/\s*(\d{1,%d}))?\s*$" % (MAX_NUMBER_DIGITS, MAX_NUMBER_DIGITS))


def parse_number(text: str) -> Exact:
    """The value of ``"13"``, ``"-4"`` or ``"8/3"`` (as `format_number` writes them); ExpressionError otherwise."""
    match = _NUMBER.match(text)
    if not match or (match[2] is not None and int(match[2]) == 0):
        raise ExpressionError(f"not a number: {text[:40]!r}")
    return exact(Fraction(int(match[1]), int(match[2]) if match[2] else 1))


@dataclass(frozen=True)
class Evaluation:
    """An evaluated expression: its exact value, the literals it uses (in order) and a canonical text."""

    value: Fraction
    numbers: tuple[int, ...]
    canonical: str


def _tokens(text: str) -> list[str]:
    tokens: list[str] = []
    for match in _TOKEN.finditer(text):
        number, other = match.groups()
        if number is not None:
            if len(number) > MAX_LITERAL_DIGITS:
                raise ExpressionError(f"number {number[:12]}... has more than {MAX_LITERAL_DIGITS} digits")
            tokens.append(number)
        elif other is not None and not other.isspace():
            token = _OPERATOR_ALIASES.get(other, other)
            if token not in "+-*/()":
                raise ExpressionError(f"unexpected character {other!r}")
            tokens.append(token)
    return tokens


class _Parser:
    """Recursive descent over a token list; builds (value, literals, text) bottom-up."""

    def __init__(self, tokens: list[str], rules: ArithmeticRules) -> None:
        self.tokens, self.rules, self.pos = tokens, rules, 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise ExpressionError("the expression ends too early")
        self.pos += 1
        return token

    def expression(self, depth: int) -> tuple[Fraction, list[int], str, bool]:
        return self._chain(depth, "+-", self.term)

    def term(self, depth: int) -> tuple[Fraction, list[int], str, bool]:
        return self._chain(depth, "*/", self.factor)

    def _chain(self, depth, operators, operand):
        value, numbers, text, compound = operand(depth)
        while self.peek() is not None and self.peek() in operators:
            op = self.take()
            right, right_numbers, right_text, right_compound = operand(depth)
            value = self.rules.apply(value, op, right)
            left = f"({text})" if compound else text
            text = f"{left} {op} {f'({right_text})' if right_compound else right_text}"
            numbers, compound = numbers + right_numbers, True
        return value, numbers, text, compound

    def factor(self, depth: int) -> tuple[Fraction, list[int], str, bool]:
        if depth > MAX_DEPTH:
            raise ExpressionError(f"parentheses nested deeper than {MAX_DEPTH}")
        token = self.take()
        if token == "(":
            result = self.expression(depth + 1)
            if self.take() != ")":
                raise ExpressionError("missing ')'")
            return result
        if token.isdigit():
            return int(token), [int(token)], token, False
        raise ExpressionError(f"unexpected {token!r}")


def evaluate_expression(text: str, rules: ArithmeticRules = GAME24_RULES) -> Evaluation:
    """Evaluate `text` exactly under `rules`; ExpressionError (never anything else) when it is invalid.

    The canonical text puts every compound operand in parentheses with single
    spaces around operators, e.g. ``"(13 - 9) * (10 - 4)"``, so equal expressions
    written with other spacing or redundant parentheses vote together.
    """
    if not isinstance(text, str):
        raise ExpressionError(f"an expression must be a str, got {type(text).__name__}")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(f"expression of {len(text)} characters exceeds {MAX_EXPRESSION_CHARS}")
    parser = _Parser(_tokens(text), rules)
    if not parser.tokens:
        raise ExpressionError("empty expression")
    value, numbers, canonical, _ = parser.expression(0)
    if parser.peek() is not None:
        raise ExpressionError(f"unexpected {parser.peek()!r} after the expression")
    return Evaluation(value, tuple(numbers), canonical)

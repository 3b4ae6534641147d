"""Procedural, seeded multi-step arithmetic word problems: the project's offline default data.

Each problem is a short story about people and things ("Tom has 3 boxes with 15
pencils each. Ann has 34 pencils. She gives away 12. How many pencils do Tom and
Ann have together?") with a reference solution in the bundled step format::

    3 * 15 = 45
    34 - 12 = 22
    45 + 22 = 67
    The answer is 67

Templates. Every arithmetic operation has several sentence templates, so a model
must read the text to know which operation to apply: addition ("buys 5 more",
"finds 5 more", "Ben gives her 5 more"), subtraction ("gives away 3", "eats 3",
"loses 3"), multiplication ("has 3 boxes with 15 pencils each", "Each of Ann's
4 shelves holds 12 books", "then has 3 times as many as before", "Each apple
costs 4 dollars. How many dollars ...?") and exact division ("shares them
equally among 4 friends. How many does each friend get?", "packs them into bags
of 6. How many bags ...?", "keeps only a third of them"). Names, pronouns,
objects and containers vary too. Three structures share the templates:

- chain: one person's amount changes step by step;
- combine: two people's amounts are computed separately and then added ("how
  many together", possibly followed by more steps for "they") or subtracted
  ("how many more does Tom have than Ann");
- relative: a second person's amount is stated relative to the first ("Ann has
  5 more / 3 times as many / half as many pencils as Tom"), then possibly
  combined with it.

Each computation step is exactly ``"{a} {op} {b} = {c}"`` with ``op`` one of
``+ - * /``, in the order the story states them; the last step is
``answer_step(answer)``. Every intermediate value is a non-negative integer no
larger than ``SyntheticConfig.max_result``, every number written in the text is
at most ``SyntheticConfig.max_value``, and divisions are exact with a divisor of
at least 2.

Determinism. Problem ``index`` of generator ``seed`` under a config is a pure
function of the three: its ``random.Random`` is seeded from a SHA-256 hash of
``(seed, index, config)`` (never Python's salted ``hash()``), so the same call
gives the same problem in every process and on every machine, and problems can
be generated lazily, in any order, by index.

Splits. The ``"synthetic"`` source walks indices 0, 1, 2, ... and keeps the
problems whose question text hashes into the requested split
(`reasoning_gym.sources.base.split_of`), so train, validation and test sets can
never share a question, whatever seeds or difficulties they were drawn with.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

from reasoning_gym.problem import Problem
from reasoning_gym.sources.base import DEFAULT_SPLIT_FRACTIONS, SPLITS, ProblemSet, register_source, split_of
from reasoning_gym.steps import answer_step

OPERATIONS = ("+", "-", "*", "/")
MAX_SUPPORTED_OPS = 10
_MAX_ATTEMPTS = 500


@dataclass(frozen=True)
class SyntheticConfig:
    """Knobs of the generator; one config describes one difficulty.

    Attributes:
        min_ops: fewest arithmetic operations (computation steps) per problem, >= 1.
        max_ops: most operations per problem, ``min_ops <= max_ops <= 10``. The
            number of operations of each problem is drawn uniformly from
            ``[min_ops, max_ops]``; the reference solution has exactly that many
            computation steps plus the answer step.
        max_value: largest number written in the question text (>= 2).
        max_result: largest value any step may produce, intermediate results and
            the answer included (``>= max_value``).
        operations: the operations problems may use, a non-empty subset of
            ``("+", "-", "*", "/")`` ("/" is exact division by a divisor >= 2).
            Lists and strings such as ``"+-"`` are accepted and normalised to a
            tuple in canonical order.

    Configs are frozen and hashable; ``validate()`` is called on construction and
    raises ValueError naming the offending field.
    """

    min_ops: int = 2
    max_ops: int = 3
    max_value: int = 30
    max_result: int = 200
    operations: tuple[str, ...] = OPERATIONS

    def __post_init__(self) -> None:
        ops = self.operations
        if isinstance(ops, str):
            ops = tuple(ops.replace(",", "").replace(" ", ""))
        if isinstance(ops, (list, tuple, set, frozenset)):
            unknown = [op for op in ops if op not in OPERATIONS]
            if not unknown:
                ops = tuple(op for op in OPERATIONS if op in ops)
        object.__setattr__(self, "operations", ops)
        self.validate()

    def validate(self) -> None:
        """Raise ValueError, naming the field, if the config is inconsistent or infeasible."""
        for name in ("min_ops", "max_ops", "max_value", "max_result"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"SyntheticConfig.{name} must be an int, got {value!r}")
        if self.min_ops < 1:
            raise ValueError(f"SyntheticConfig.min_ops must be >= 1, got {self.min_ops}")
        if self.max_ops < self.min_ops:
            raise ValueError(f"SyntheticConfig.max_ops ({self.max_ops}) must be >= min_ops ({self.min_ops})")
        if self.max_ops > MAX_SUPPORTED_OPS:
            raise ValueError(f"SyntheticConfig.max_ops must be <= {MAX_SUPPORTED_OPS}, got {self.max_ops}")
        if self.max_value < 2:
            raise ValueError(f"SyntheticConfig.max_value must be >= 2, got {self.max_value}")
        if self.max_result < self.max_value:
            raise ValueError(
                f"SyntheticConfig.max_result ({self.max_result}) must be >= max_value ({self.max_value})"
            )
        ops = self.operations
        if not isinstance(ops, tuple) or not ops or any(op not in OPERATIONS for op in ops) or len(set(ops)) != len(ops):
            raise ValueError(
                f"SyntheticConfig.operations must be a non-empty subset of {OPERATIONS}, got {self.operations!r}"
            )
        # Every problem must be realisable within the value limits.
        feasible = (
            "+" in ops
            or ("*" in ops and self.max_result >= 2 ** (self.max_ops + 1))
            or ("-" in ops and self.max_value >= self.max_ops + 2)
            or ("/" in ops and self.max_value >= 2 ** (self.max_ops + 1))
        )
        if not feasible:
            raise ValueError(
                f"SyntheticConfig.operations {ops} cannot make {self.max_ops}-step problems within "
                f"max_value={self.max_value}, max_result={self.max_result}; add '+' or raise the limits"
            )

    def key(self) -> str:
        """A stable text form of the config, part of the seed of every problem."""
        return f"{self.min_ops},{self.max_ops},{self.max_value},{self.max_result},{''.join(self.operations)}"


DIFFICULTIES: dict[str, SyntheticConfig] = {
    "basic": SyntheticConfig(min_ops=2, max_ops=3, max_value=10, max_result=100),
    "easy": SyntheticConfig(min_ops=2, max_ops=3, max_value=30, max_result=200),
    "medium": SyntheticConfig(min_ops=2, max_ops=4, max_value=99, max_result=1000),
    "hard": SyntheticConfig(min_ops=3, max_ops=6, max_value=999, max_result=10_000),
}
"""Named presets. ``"basic"`` (numbers up to 10) is what the bundled ~1M-parameter
models are trained on by default. ``"mixed"`` (accepted wherever a difficulty is)
draws the level of problem ``i`` deterministically from ``(seed, i)`` among easy,
medium and hard; ``"mixed:basic,easy"`` draws among the presets it names."""

LEVELS: dict[int, str] = {1: "easy", 2: "medium", 3: "hard"}
"""Integer aliases of the presets."""

MIXED = "mixed"

Difficulty = str | int | SyntheticConfig | Mapping

# --------------------------------------------------------------------------- wording

_NAMES = (
    ("Tom", "he"), ("Ann", "she"), ("Ben", "he"), ("Mia", "she"), ("Sam", "he"), ("Lily", "she"),
    ("Max", "he"), ("Emma", "she"), ("Leo", "he"), ("Zoe", "she"), ("Jack", "he"), ("Nina", "she"),
    ("Omar", "he"), ("Rosa", "she"), ("Ivan", "he"), ("Kate", "she"),
)
_PRONOUNS = {"he": ("he", "him", "his"), "she": ("she", "her", "her"), "they": ("they", "them", "their")}

# (plural, singular, kind, containers as (singular, plural))
_ITEMS = (
    ("apples", "apple", "food", (("basket", "baskets"), ("bag", "bags"), ("box", "boxes"))),
    ("pencils", "pencil", "thing", (("box", "boxes"), ("pack", "packs"), ("case", "cases"))),
    ("marbles", "marble", "thing", (("bag", "bags"), ("jar", "jars"))),
    ("cookies", "cookie", "food", (("box", "boxes"), ("jar", "jars"), ("tray", "trays"))),
    ("stickers", "sticker", "thing", (("sheet", "sheets"), ("pack", "packs"))),
    ("books", "book", "thing", (("shelf", "shelves"), ("box", "boxes"))),
    ("cards", "card", "thing", (("deck", "decks"), ("pack", "packs"))),
    ("eggs", "egg", "food", (("carton", "cartons"), ("basket", "baskets"))),
    ("candies", "candy", "food", (("bag", "bags"), ("jar", "jars"))),
    ("balloons", "balloon", "thing", (("bag", "bags"), ("pack", "packs"))),
    ("coins", "coin", "thing", (("jar", "jars"), ("purse", "purses"))),
    ("flowers", "flower", "thing", (("vase", "vases"), ("pot", "pots"))),
    ("shells", "shell", "thing", (("bucket", "buckets"), ("bag", "bags"))),
    ("oranges", "orange", "food", (("crate", "crates"), ("bag", "bags"))),
    ("crayons", "crayon", "thing", (("box", "boxes"), ("cup", "cups"))),
    ("cupcakes", "cupcake", "food", (("tray", "trays"), ("box", "boxes"))),
)

_FRACTIONS = {2: "half", 3: "a third", 4: "a quarter", 5: "a fifth", 6: "a sixth",
              7: "a seventh", 8: "an eighth", 9: "a ninth", 10: "a tenth"}
_SCALE_VERBS = {2: "doubles", 3: "triples", 4: "quadruples"}

# Templates. Placeholders: {s} subject (name or pronoun), {o} object pronoun,
# {p} possessive, {name}, {friend}, {items}/{item}, {boxes}/{box}, numbers {n}/{a}/{b},
# {frac}. <verb> is a third-person-singular verb that is conjugated for "they".
_START = (
    "{name} <has> {n} {items}.",
    "{name} <starts> with {n} {items}.",
    "{name} <buys> {n} {items}.",
    "{name} <collects> {n} {items}.",
    "There are {n} {items} in {name}'s {box}.",
    "{name} <gets> {n} {items} as a gift.",
)
# (template, operand order): "ab" writes the step "a * b", "ba" writes "b * a".
_START_GROUPS = (
    ("{name} <has> {a} {boxes} with {b} {items} each.", "ab"),
    ("{name} <buys> {a} {boxes} of {items} with {b} in each.", "ab"),
    ("Each of {name}'s {a} {boxes} holds {b} {items}.", "ab"),
    ("{name} <fills> {a} {boxes} with {b} {items} each.", "ab"),
    ("There are {b} {items} in each of {name}'s {a} {boxes}.", "ba"),
    ("{name} <collects> {b} {items} a day for {a} days.", "ba"),
    ("{name} <has> {a} {boxes}, and each {box} holds {b} {items}.", "ab"),
)
_ADD = (
    "{s} <buys> {n} more.",
    "{s} <finds> {n} more {items}.",
    "{friend} gives {o} {n} more.",
    "{s} <gets> {n} more {items} as a gift.",
    "{s} <wins> {n} more {items} in a game.",
    "{s} <picks> up {n} more.",
    "{s} <makes> {n} more {items}.",
    "Later, {s} <collects> {n} more.",
    "{s} <receives> {n} {items} from {friend}.",
)
_SUB = (
    "{s} <gives> away {n}.",
    "{s} <loses> {n} of them.",
    "{s} <gives> {n} to {friend}.",
    "{s} <sells> {n} of them.",
    "{s} <donates> {n} {items}.",
    "{n} of {p} {items} get lost.",
    "{friend} takes {n} of {p} {items}.",
)
_SUB_FOOD = ("{s} <eats> {n}.", "{n} of them go bad.")
_SUB_THING = ("{s} <uses> {n}.", "{n} of them break.")
_SCALE = (
    "Then {s} <has> {n} times as many {items} as before.",
    "{s} <buys> more, so now {s} <has> {n} times as many.",
    "{p} pile of {items} grows to {n} times its size.",
)
_ADD_GROUPS = (
    ("{s} <buys> {a} more {boxes} with {b} {items} each.", "ab"),
    ("{s} <gets> {a} {boxes} of {b} {items} as a gift.", "ab"),
    ("{friend} gives {o} {a} {boxes} with {b} {items} in each.", "ab"),
    ("{s} <collects> {b} more {items} a day for {a} days.", "ba"),
)
_SUB_GROUPS = (
    ("{s} <gives> away {a} {boxes} with {b} {items} each.", "ab"),
    ("{s} <gives> {b} {items} to each of {a} friends.", "ba"),
    ("{s} <sells> {a} {boxes} of {b} {items}.", "ab"),
    ("{s} <uses> {b} {items} a day for {a} days.", "ba"),
)
_DIV_MID = (
    "{s} <splits> them into {n} equal piles and <keeps> one pile.",
    "{s} <puts> them equally into {n} {boxes} and <keeps> just one {box}.",
    "{s} <divides> them into {n} equal groups and <gives> away all but one group.",
)
_DIV_MID_FRAC = (  # need a fraction word for n
    "{s} <keeps> only {frac} of them and <gives> away the rest.",
    "{s} <loses> all but {frac} of them.",
)
# (sentence, question)
_DIV_FINAL = (
    ("{s} <shares> them equally among {n} friends.", "How many {items} does each friend get?"),
    ("{s} <packs> them into {boxes} of {n}.", "How many {boxes} <does> {s} fill?"),
    ("{s} <puts> them in {n} equal rows.", "How many {items} are in each row?"),
    ("{s} <splits> them evenly into {n} {boxes}.", "How many {items} go in each {box}?"),
    ("{s} <gives> {n} {items} to each friend until none are left.", "How many friends get {items}?"),
    ("{s} <divides> them equally among {n} children.", "How many {items} does each child get?"),
    ("{s} <uses> {n} {items} every day.", "For how many days <does> {s} have {items}?"),
)
_MUL_FINAL = (
    ("Each {item} costs {n} dollars.", "How many dollars do {p} {items} cost in total?"),
    ("{s} <sells> each {item} for {n} cents.", "How many cents <does> {s} get?"),
    ("Each {item} weighs {n} grams.", "How many grams do {p} {items} weigh in total?"),
    ("Each {item} is worth {n} points.", "How many points are {p} {items} worth?"),
)
_QUESTION = (
    "How many {items} <does> {s} have now?",
    "How many {items} <does> {name} have in the end?",
    "How many {items} <does> {s} have?",
    "Now how many {items} <does> {name} have?",
)
_QUESTION_AFTER_SUB = ("How many {items} <does> {s} have left?", "How many {items} are left?")
_RELATIVE = {
    "+": ("{name} <has> {n} more {items} than {other}.", "{name} <has> {n} {items} more than {other}."),
    "-": ("{name} <has> {n} fewer {items} than {other}.", "{name} <has> {n} {items} less than {other}."),
    "*": ("{name} <has> {n} times as many {items} as {other}.",),
    "/": ("{name} <has> {frac} as many {items} as {other}.",),
}
_TOGETHER = (
    "How many {items} do {a_name} and {b_name} have together?",
    "How many {items} do they have in total?",
    "How many {items} do {a_name} and {b_name} have altogether?",
    "Together, how many {items} do they have?",
)
_JOIN = (
    "They put all their {items} together.",
    "{a_name} and {b_name} combine their {items}.",
    "They put their {items} into one big {box}.",
)
_DIFFERENCE = (
    "How many more {items} does {big} have than {small}?",
    "How many fewer {items} does {small} have than {big}?",
    "How many {items} does {small} need to have as many as {big}?",
)

_VERB = re.compile(r"<(\w+)>")
_IRREGULAR_PLURAL = {"has": "have", "does": "do", "is": "are"}


def _conjugate(text: str, plural: bool) -> str:
    def verb(match: re.Match) -> str:
        word = match.group(1)
        if not plural:
            return word
        if word in _IRREGULAR_PLURAL:
            return _IRREGULAR_PLURAL[word]
        return word[:-3] + "y" if word.endswith("ies") else word[:-1]

    return _VERB.sub(verb, text)


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:]


# --------------------------------------------------------------------------- generation


class _Retry(Exception):
    """The random choices led to a dead end; start the problem again."""


@dataclass
class _Actor:
    name: str
    pronoun: str  # "he", "she" or "they"
    mentioned: bool = False

    @property
    def plural(self) -> bool:
        return self.pronoun == "they"


class _Story:
    """Sentences and steps of one problem under construction."""

    def __init__(self, rng: random.Random, config: SyntheticConfig, item: tuple, friend: str) -> None:
        self.rng = rng
        self.config = config
        self.ops = set(config.operations)
        self.items, self.item, self.kind, containers = item
        self.box, self.boxes = rng.choice(containers)
        self.friend = friend
        self.sentences: list[str] = []
        self.steps: list[str] = []
        self.question: str | None = None
        self.last_op: str | None = None
        self.shrink_only = "+" not in self.ops and "*" not in self.ops

    # -- bookkeeping

    def step(self, a: int, op: str, b: int) -> int:
        if op == "+":
            c = a + b
        elif op == "-":
            c = a - b
        elif op == "*":
            c = a * b
        else:
            if b < 2 or a % b:
                raise _Retry
            c = a // b
        if c < 0 or c > self.config.max_result:
            raise _Retry
        self.steps.append(f"{a} {op} {b} = {c}")
        self.last_op = op
        return c

    def say(self, template: str, actor: _Actor | None, **values) -> str:
        if actor is not None:
            subject, obj, poss = _PRONOUNS[actor.pronoun]
            if not actor.mentioned or self.rng.random() < 0.2:
                subject = actor.name
            # after a sentence naming someone else, name the actor again rather than use a pronoun
            actor.mentioned = "{friend}" not in template
            values = {"s": subject, "o": obj, "p": poss, "name": actor.name, **values}
        text = template.format(items=self.items, item=self.item, box=self.box, boxes=self.boxes,
                               friend=self.friend, **values)
        # "1 more apples" -> "1 more apple"; only a count of exactly one is singular
        text = re.sub(rf"(?<![\d.])1 ((?:more |fewer )?){self.items}\b", rf"1 \g<1>{self.item}", text)
        return _sentence(_conjugate(text, actor is not None and actor.plural))

    # -- number helpers

    @property
    def factor_cap(self) -> int:
        """Largest count of groups or divisor: keeps products of two stated numbers sensible."""
        return min(self.config.max_value, max(5, math.isqrt(self.config.max_result)))

    def _divisors(self, v: int, cap: int, min_quotient: int = 2) -> list[int]:
        cap = min(cap, v // min_quotient)
        return [d for d in range(2, cap + 1) if v % d == 0]

    def _groups(self, room: int) -> tuple[int, int]:
        """Random (count, per group) with both >= 2, b <= max_value and count * per <= room."""
        a_hi = min(self.factor_cap, room // 2)
        if a_hi < 2:
            raise _Retry
        a = self.rng.randint(2, a_hi)
        b = self.rng.randint(2, min(self.config.max_value, room // a))
        return a, b

    # -- story pieces

    def start(self, actor: _Actor, budget: int) -> tuple[int, int]:
        """Introduce `actor`'s amount; returns (value, operations used)."""
        cfg, rng = self.config, self.rng
        if "*" in self.ops and budget >= 1 and rng.random() < (0.6 if self.shrink_only else 0.35):
            room = cfg.max_result
            if "+" not in self.ops and budget > 1:  # leave room for later doublings
                room = max(4, cfg.max_result >> min(budget - 1, 20))
            a, b = self._groups(room)
            template, order = rng.choice(_START_GROUPS)
            self.sentences.append(self.say(template, actor, a=a, b=b))
            return (self.step(a, "*", b) if order == "ab" else self.step(b, "*", a)), 1
        hi = cfg.max_value
        if "+" not in self.ops and "*" in self.ops:
            hi = max(2, min(hi, cfg.max_result >> min(budget + 1, 20)))
        lo = 2
        if self.shrink_only:
            if "-" in self.ops:
                lo = min(cfg.max_value, budget + 2)
            else:  # division only: a number with many small factors
                prod, half = 1, cfg.max_value // 2
                for _ in range(budget):
                    f = rng.choice((2, 2, 3))
                    if prod * f > half:
                        f = 2 if prod * 2 <= half else 1
                    prod *= f
                n = prod * rng.randint(2, max(2, cfg.max_value // prod))  # <= max_value as prod <= half
                self.sentences.append(self.say(rng.choice(_START), actor, n=n))
                return n, 0
        n = rng.randint(lo, hi)
        self.sentences.append(self.say(rng.choice(_START), actor, n=n))
        return n, 0

    def move(self, actor: _Actor, v: int, budget: int, final: bool) -> tuple[int, int]:
        """One change of `actor`'s amount `v`; returns (new value, operations used)."""
        cfg, rng, ops = self.config, self.rng, self.ops
        candidates: list[tuple[str, float]] = []
        if "+" in ops:
            candidates.append(("add", 1.0))
        if "-" in ops:
            candidates.append(("sub", 1.0))
        if "*" in ops:
            candidates.append(("scale", 0.4))
            if budget >= 2 and "+" in ops:
                candidates.append(("add_groups", 0.4))
            if budget >= 2 and "-" in ops:
                candidates.append(("sub_groups", 0.3))
            if final and budget == 1:
                candidates.append(("mul_final", 0.6))
        if "/" in ops:
            candidates.append(("div_mid", 0.7))
            if final and budget == 1:
                candidates.append(("div_final", 1.5))
        later = budget - 1  # operations still to come after a one-step move
        while candidates:
            names, weights = zip(*candidates)
            choice = rng.choices(names, weights)[0]
            candidates = [c for c in candidates if c[0] != choice]
            if choice == "add":
                hi = min(cfg.max_value, cfg.max_result - v)
                if hi < 1 or (hi < 2 and candidates):  # avoid "1 more apples" where possible
                    continue
                n = rng.randint(min(2, hi), hi)
                self.sentences.append(self.say(rng.choice(_ADD), actor, n=n))
                return self.step(v, "+", n), 1
            if choice == "sub":
                reserve = later if self.shrink_only else 0
                hi = min(cfg.max_value, v - 1 - reserve)
                if hi < 1 or (hi < 2 and candidates):
                    continue
                n = rng.randint(min(2, hi), hi)
                extra = _SUB_FOOD if self.kind == "food" else _SUB_THING
                self.sentences.append(self.say(rng.choice(_SUB + extra), actor, n=n))
                return self.step(v, "-", n), 1
            if choice == "scale":
                hi = min(5, cfg.max_value, cfg.max_result // v)
                if "+" not in ops and later:
                    hi = min(hi, cfg.max_result // (v * 2 ** min(later, 20)))
                if hi < 2:
                    continue
                n = rng.randint(2, hi)
                templates = _SCALE + (("{s} <%s> {p} {items}." % _SCALE_VERBS[n],) if n in _SCALE_VERBS else ())
                self.sentences.append(self.say(rng.choice(templates), actor, n=n))
                return self.step(v, "*", n), 1
            if choice in ("add_groups", "sub_groups"):
                room = cfg.max_result - v if choice == "add_groups" else v - 1
                if room < 4:
                    continue
                a, b = self._groups(room)
                template, order = rng.choice(_ADD_GROUPS if choice == "add_groups" else _SUB_GROUPS)
                self.sentences.append(self.say(template, actor, a=a, b=b))
                p = self.step(a, "*", b) if order == "ab" else self.step(b, "*", a)
                return self.step(v, "+" if choice == "add_groups" else "-", p), 2
            if choice == "mul_final":
                hi = min(cfg.max_value, self.factor_cap, cfg.max_result // v)
                if hi < 2:
                    continue
                n = rng.randint(2, hi)
                sentence, question = rng.choice(_MUL_FINAL)
                self.sentences.append(self.say(sentence, actor, n=n))
                self.question = self.say(question, actor)
                return self.step(v, "*", n), 1
            if choice in ("div_mid", "div_final"):
                divisors = self._divisors(v, self.factor_cap)
                if not divisors:
                    continue
                n = divisors[0] if self.shrink_only and rng.random() < 0.7 else rng.choice(divisors)
                if choice == "div_final":
                    sentence, question = rng.choice(_DIV_FINAL)
                    self.sentences.append(self.say(sentence, actor, n=n))
                    self.question = self.say(question, actor)
                else:
                    templates = _DIV_MID + (_DIV_MID_FRAC if n in _FRACTIONS else ())
                    self.sentences.append(self.say(rng.choice(templates), actor, n=n, frac=_FRACTIONS.get(n)))
                return self.step(v, "/", n), 1
        raise _Retry

    def chain(self, actor: _Actor, v: int | None, budget: int, final: bool) -> int:
        """Start (if `v` is None) and change `actor`'s amount using exactly `budget` operations."""
        if v is None:
            v, used = self.start(actor, budget)
            budget -= used
        while budget > 0:
            v, used = self.move(actor, v, budget, final)
            budget -= used
        return v

    def ask(self, actor: _Actor) -> None:
        """The default closing question about `actor`'s amount."""
        if self.question is not None:
            return
        templates = _QUESTION + (_QUESTION_AFTER_SUB if self.last_op == "-" else ())
        self.question = self.say(self.rng.choice(templates), actor)

    def relative(self, a: _Actor, va: int, b: _Actor, budget: int) -> int:
        """State `b`'s amount relative to `a`'s (one operation)."""
        cfg, rng = self.config, self.rng
        options = [op for op in OPERATIONS if op in self.ops]
        rng.shuffle(options)
        for op in options:
            if op == "+":
                hi = min(cfg.max_value, cfg.max_result - va)
                n = rng.randint(1, hi) if hi >= 1 else 0
            elif op == "-":
                hi = min(cfg.max_value, va - 1 - (budget - 1 if self.shrink_only else 0))
                n = rng.randint(1, hi) if hi >= 1 else 0
            elif op == "*":
                hi = min(5, cfg.max_value, cfg.max_result // max(va, 1))
                n = rng.randint(2, hi) if hi >= 2 else 0
            else:
                divisors = [d for d in self._divisors(va, 10) if d in _FRACTIONS]
                n = rng.choice(divisors) if divisors else 0
            if not n:
                continue
            template = rng.choice(_RELATIVE[op])
            self.sentences.append(self.say(template, b, n=n, other=a.name, frac=_FRACTIONS.get(n)))
            return self.step(va, op, n)
        raise _Retry


def _build(rng: random.Random, config: SyntheticConfig, k: int) -> tuple[str, list[str], int, str]:
    """One attempt at a problem with exactly `k` operations: (question, steps, answer, structure)."""
    people = rng.sample(_NAMES, 3)
    a = _Actor(*people[0])
    b = _Actor(*people[1])
    story = _Story(rng, config, rng.choice(_ITEMS), friend=people[2][0])
    ops = story.ops
    can_combine = bool(ops & {"+", "-"})
    structures = [("chain", 0.45), ("relative", 0.2)] + ([("combine", 0.35)] if can_combine else [])
    structure = rng.choices(*zip(*structures))[0]

    if structure == "chain":
        answer = story.chain(a, None, k, final=True)
        story.ask(a)
    else:
        combine = None
        if structure == "combine" or (can_combine and k >= 2 and rng.random() < 0.5):
            combine = rng.choice(sorted(ops & {"+", "-"}))
        rest = k - (1 if combine else 0) - (1 if structure == "relative" else 0)
        if rest < 0:
            raise _Retry
        tail = 0
        if combine == "+" and rest >= 1 and rng.random() < 0.35:
            tail = rng.randint(1, max(1, rest // 2))
        rest -= tail
        left = rng.randint(0, rest)
        va = story.chain(a, None, left, final=False)
        if structure == "relative":
            vb = story.relative(a, va, b, rest - left + 1)
            vb = story.chain(b, vb, rest - left, final=combine is None)
        else:
            vb = story.chain(b, None, rest - left, final=False)
        if combine is None:
            answer = vb
            story.ask(b)
        elif combine == "+":
            total = story.step(va, "+", vb)
            names = {"a_name": a.name, "b_name": b.name}
            if tail:
                they = _Actor(f"{a.name} and {b.name}", "they", mentioned=True)
                story.sentences.append(story.say(rng.choice(_JOIN), they, **names))
                answer = story.chain(they, total, tail, final=True)
                story.ask(they)
            else:
                answer = total
                story.question = story.say(rng.choice(_TOGETHER), None, **names)
        else:
            if va == vb:
                raise _Retry
            (big, vbig), (small, vsmall) = sorted(((a, va), (b, vb)), key=lambda pair: -pair[1])
            answer = story.step(vbig, "-", vsmall)
            story.question = story.say(rng.choice(_DIFFERENCE), None, big=big.name, small=small.name)
    if len(story.steps) != k:  # guard: the planner must spend exactly the budget
        raise AssertionError(f"planned {k} operations, wrote {len(story.steps)}")
    question = " ".join(story.sentences + [story.question])
    return question, story.steps, answer, structure


def _stable_int(*parts: object) -> int:
    text = "|".join(str(part) for part in parts)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def _config_from_mapping(values: Mapping) -> SyntheticConfig:
    known = {f.name for f in fields(SyntheticConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown SyntheticConfig keys {unknown}; expected a subset of {sorted(known)}")
    return SyntheticConfig(**values)


def resolve_difficulty(difficulty: Difficulty) -> tuple[str, SyntheticConfig | None]:
    """Turn a difficulty argument into ``(name, config)``.

    Accepts a preset name (``"easy"``, ``"medium"``, ``"hard"``), ``"mixed"``
    or ``"mixed:basic,easy"`` (returned with config None: the level is drawn per
    problem among easy/medium/hard, or among the named presets), an int alias
    1/2/3, a `SyntheticConfig` (named after the preset it equals, else
    ``"custom"``) or a dict of `SyntheticConfig` fields.

    Raises:
        ValueError: unknown name or level (the message lists the presets), or
            unknown dict keys, or an invalid config.
    """
    if isinstance(difficulty, SyntheticConfig):
        for name, preset in DIFFICULTIES.items():
            if preset == difficulty:
                return name, preset
        return "custom", difficulty
    if isinstance(difficulty, Mapping):
        return resolve_difficulty(_config_from_mapping(difficulty))
    if isinstance(difficulty, int) and not isinstance(difficulty, bool):
        if difficulty not in LEVELS:
            raise ValueError(f"unknown difficulty level {difficulty}; expected one of {sorted(LEVELS)} "
                             f"({', '.join(LEVELS.values())})")
        return LEVELS[difficulty], DIFFICULTIES[LEVELS[difficulty]]
    if isinstance(difficulty, str):
        key = difficulty.strip().lower()
        if key == MIXED or key.startswith(MIXED + ":"):
            mixed_levels(key)  # validates the named presets
            return key, None
        if key in DIFFICULTIES:
            return key, DIFFICULTIES[key]
        if key.isdigit() and int(key) in LEVELS:
            return LEVELS[int(key)], DIFFICULTIES[LEVELS[int(key)]]
    raise ValueError(f"unknown difficulty {difficulty!r}; expected one of {', '.join([*DIFFICULTIES, MIXED])}, "
                     f"a level {sorted(LEVELS)}, a SyntheticConfig or a dict of its fields")


def mixed_levels(name: str = MIXED) -> tuple[str, ...]:
    """The presets a mixed difficulty draws from: ``"mixed"`` easy, medium and hard;
    ``"mixed:basic,easy"`` the presets it names (ValueError naming an unknown one)."""
    if name == MIXED:
        return tuple(LEVELS.values())
    levels = tuple(level.strip() for level in name.removeprefix(MIXED + ":").split(",") if level.strip())
    unknown = [level for level in levels if level not in DIFFICULTIES]
    if not levels or unknown:
        raise ValueError(
            f"mixed difficulty {name!r}: {'unknown preset(s) ' + ', '.join(unknown) if unknown else 'no preset named'}; "
            f"expected 'mixed:' followed by comma-separated presets of {', '.join(DIFFICULTIES)}"
        )
    return levels


def mixed_level(index: int, seed: int = 0, name: str = MIXED) -> str:
    """The preset that problem `index` of the mixed set `name` with `seed` is drawn from (uniformly)."""
    levels = mixed_levels(name)
    return levels[_stable_int("rest-mcts-synthetic-mixed", seed, index) % len(levels)]


def generate_problem(index: int, seed: int = 0, config: Difficulty = DIFFICULTIES["easy"]) -> Problem:
    """Problem number `index` of generator `seed` under `config`.

    A pure function of ``(seed, index, config)``: a ``random.Random`` seeded
    from a SHA-256 hash of the three draws the number of operations, the
    structure, the wording and the numbers. `config` may also be anything
    `resolve_difficulty` accepts (a preset name, ``"mixed"``, ``"mixed:basic,easy"``,
    1/2/3, a dict).

    Returns:
        A `Problem` with id ``"synthetic-{name}-{seed}-{index}"`` (name: the
        preset, the mix or ``"custom"``), the integer answer as a string,
        reference ``steps`` ``("a op b = c", ..., "The answer is X")`` and
        metadata ``{"difficulty", "num_ops", "seed", "index", "structure"}``
        (for a mix, ``"difficulty"`` is the level drawn for this index).
    """
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise ValueError(f"index must be a non-negative int, got {index!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int, got {seed!r}")
    name, cfg = resolve_difficulty(config)
    level = name
    if cfg is None:
        level = mixed_level(index, seed, name)
        cfg = DIFFICULTIES[level]
    rng = random.Random(_stable_int("rest-mcts-synthetic", seed, index, cfg.key()))
    k = rng.randint(cfg.min_ops, cfg.max_ops)
    for _ in range(_MAX_ATTEMPTS):
        try:
            question, steps, answer, structure = _build(rng, cfg, k)
            break
        except _Retry:
            continue
    else:  # pragma: no cover - validate() rules out infeasible configs
        raise RuntimeError(f"could not generate a {k}-step problem under {cfg} (seed {seed}, index {index})")
    return Problem(
        id=f"synthetic-{name}-{seed}-{index}",
        question=question,
        answer=str(answer),
        steps=(*steps, answer_step(str(answer))),
        metadata={"difficulty": level, "num_ops": k, "seed": seed, "index": index, "structure": structure},
    )


@register_source("synthetic")
def synthetic_source(
    split: str | None = "train",
    size: int = 1000,
    seed: int = 0,
    difficulty: Difficulty = "easy",
    fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
) -> ProblemSet:
    """`size` generated problems of one split.

    Walks indices 0, 1, 2, ... of ``generate_problem(i, seed, difficulty)`` and
    keeps a problem when ``split_of(question, fractions) == split`` and its
    question text is not already in the set, until `size` are kept. Splits
    therefore never share a question. ``split=None`` or ``"all"`` keeps every
    (distinct) problem.

    Raises:
        ValueError: bad split, size, fractions or difficulty, or a split whose
            fraction is 0.
        RuntimeError: the generator cannot produce `size` distinct problems of
            the split (a config with too few possible problems).
    """
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ValueError(f"size must be a non-negative int, got {size!r}")
    name, config = resolve_difficulty(difficulty)
    resolved: Difficulty = name if config is None else config
    split_of("", fractions)  # validates the fractions
    if split == "all":
        split = None
    if split is not None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}, 'all' or None")
        share = dict(zip(SPLITS, fractions))[split]
        if share <= 0:
            raise ValueError(f"split {split!r} has fraction 0 in {tuple(fractions)}; it can hold no problems")
        limit = math.ceil(size / share * 4) + 1000
    else:
        limit = size * 4 + 1000
    problems: list[Problem] = []
    seen: set[str] = set()
    index = 0
    while len(problems) < size:
        if index >= limit:
            raise RuntimeError(
                f"synthetic source: only {len(problems)} distinct {split or 'all'} problems in the first "
                f"{limit} indices for difficulty {difficulty!r}; widen the config"
            )
        problem = generate_problem(index, seed, resolved)
        index += 1
        if problem.question in seen:
            continue
        if split is not None and split_of(problem.question, fractions) != split:
            continue
        seen.add(problem.question)
        problems.append(problem)
    return ProblemSet(f"synthetic-{name}-{seed}-{split or 'all'}", tuple(problems))

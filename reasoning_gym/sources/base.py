"""Problem sets, hash-based splits and the registry of problem sources."""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import overload

from reasoning_gym.problem import Problem

SPLITS = ("train", "validation", "test")
DEFAULT_SPLIT_FRACTIONS = (0.8, 0.1, 0.1)


def split_of(question: str, fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS) -> str:
    """The split ("train", "validation" or "test") that `question` belongs to.

    Decided by a SHA-256 hash of the whitespace-normalised question text, so the
    same text always lands in the same split and splits can never overlap, whatever
    the generator seed, index or source file it came from.
    """
    if len(fractions) != len(SPLITS) or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"split fractions must be 3 non-negative numbers summing to 1, got {tuple(fractions)}")
    key = " ".join(question.split()).encode("utf-8")
    point = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64
    cumulative = 0.0
    for name, fraction in zip(SPLITS, fractions):
        cumulative += fraction
        if point < cumulative:
            return name
    return SPLITS[-1]


@dataclass(frozen=True)
class ProblemSet(Sequence[Problem]):
    """An ordered, immutable collection of problems from one source.

    Attributes:
        name: where the problems came from (source name, file path).
        problems: the problems, in source order.
        skipped: how many malformed records were skipped while loading (only
            non-zero when the loader was asked to skip bad records).
    """

    name: str
    problems: tuple[Problem, ...]
    skipped: int = 0

    def __len__(self) -> int:
        return len(self.problems)

    @overload
    def __getitem__(self, index: int) -> Problem: ...
    @overload
    def __getitem__(self, index: slice) -> ProblemSet: ...
    def __getitem__(self, index: int | slice) -> Problem | ProblemSet:
        if isinstance(index, slice):
            return ProblemSet(self.name, self.problems[index], self.skipped)
        return self.problems[index]

    def __iter__(self) -> Iterator[Problem]:
        return iter(self.problems)

    def split(self, name: str, fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS) -> ProblemSet:
        """The problems whose question hashes into split `name` (see `split_of`)."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        kept = tuple(p for p in self.problems if split_of(p.question, fractions) == name)
        return ProblemSet(f"{self.name}[{name}]", kept, self.skipped)


SourceFactory = Callable[..., ProblemSet]
_SOURCES: dict[str, SourceFactory] = {}


def register_source(name: str) -> Callable[[SourceFactory], SourceFactory]:
    """Decorator: register a factory ``(**kwargs) -> ProblemSet`` under `name`."""

    def decorate(factory: SourceFactory) -> SourceFactory:
        if name in _SOURCES and _SOURCES[name] is not factory:
            raise ValueError(f"problem source {name!r} is already registered")
        _SOURCES[name] = factory
        return factory

    return decorate


def available_sources() -> list[str]:
    """Names accepted by `make_source`, sorted."""
    return sorted(_SOURCES)


def make_source(name: str, **kwargs) -> ProblemSet:
    """Build the problem set of registered source `name` with its keyword arguments.

    Raises:
        KeyError: `name` is not registered; the message lists the known names.
    """
    try:
        factory = _SOURCES[name]
    except KeyError:
        raise KeyError(f"unknown problem source {name!r}; available: {', '.join(available_sources())}") from None
    return factory(**kwargs)


def source_kwargs(name: str, **candidates) -> dict:
    """The `candidates` that source `name`'s factory accepts, None values dropped.

    Lets generic callers (configs, the bootstrap) offer ``size``, ``seed``,
    ``difficulty``, ``path``... to any source; ``size`` is passed as ``limit`` to
    file loaders, which take that instead. KeyError for an unknown source.
    """
    parameters = _parameters(name)
    if "size" in candidates and "size" not in parameters and "limit" in parameters:
        candidates["limit"] = candidates.pop("size")
    return {key: value for key, value in candidates.items() if key in parameters and value is not None}


def required_parameters(name: str) -> set[str]:
    """The keyword arguments source `name` cannot do without (e.g. ``{"path"}`` for file loaders)."""
    return {key for key, parameter in _parameters(name).items() if parameter.default is inspect.Parameter.empty}


def _parameters(name: str) -> dict[str, inspect.Parameter]:
    factory = _SOURCES.get(name)
    if factory is None:
        raise KeyError(f"unknown problem source {name!r}; available: {', '.join(available_sources())}")
    return dict(inspect.signature(factory).parameters)

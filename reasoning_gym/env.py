"""`ReasoningMathEnv`: the reasoning MDP behind the Gymnasium API (id ``ReasoningMath-v0``).

One episode is one problem. The observation is the text of the state (question plus
steps so far, never the oracle answer); an action is the text of one step. The
reward is 1.0 when a stated final answer matches the oracle, else 0.0; process
rewards come from a PRM outside the environment. The LLM also lives outside, so the
same environment serves search agents, RL agents and dataset replay.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import gymnasium as gym
from gymnasium import spaces

from reasoning_gym.mdp import (
    EpisodeLimits,
    ReasoningState,
    apply_step,
    grade,
    is_terminal,
    is_truncated,
)
from reasoning_gym.problem import Problem
from reasoning_gym.sources import ProblemSet, make_source
from reasoning_gym.verifier import Verifier, default_verifier

_REPLACEMENT = "\ufffd"


@lru_cache(maxsize=1)
def text_charset() -> frozenset[str]:
    """Every Basic Multilingual Plane character except surrogates.

    Gymnasium's `spaces.Text` defaults to alphanumerics; word problems need
    punctuation, LaTeX, newlines and non-English text. Characters beyond the BMP
    (rare in math, e.g. emoji) appear as U+FFFD in observations; the state keeps them.
    """
    return frozenset(chr(c) for c in range(0x10000) if not 0xD800 <= c <= 0xDFFF)


@lru_cache(maxsize=8)
def _text_space_prototype(max_length: int, min_length: int) -> spaces.Text:
    return spaces.Text(max_length, min_length=min_length, charset=text_charset())


def text_space(max_length: int, min_length: int) -> spaces.Text:
    """A `spaces.Text` over `text_charset()`, with its own random generator.

    Indexing a 63k-character set takes a third of a second, so the index is built
    once per shape and shared (read-only) by shallow copies.
    """
    space = copy.copy(_text_space_prototype(max_length, min_length))
    space._np_random = None  # each copy seeds its own generator on first use
    return space


def _fit_charset(text: str) -> str:
    return "".join(ch if ord(ch) < 0x10000 and not 0xD800 <= ord(ch) <= 0xDFFF else _REPLACEMENT for ch in text)


def _as_problem(value: Problem | Mapping[str, Any]) -> Problem:
    if isinstance(value, Problem):
        return value
    if isinstance(value, Mapping):
        fields = dict(value)
        fields.setdefault("id", "custom")
        try:
            return Problem(**fields)
        except TypeError as error:
            raise ValueError(f"options['problem'] is not a valid Problem mapping: {error}") from None
    raise ValueError(f"options['problem'] must be a Problem or a mapping, got {type(value).__name__}")


class ReasoningMathEnv(gym.Env[str, str]):
    """Step-by-step math reasoning with an oracle-checked final answer.

    Args:
        source: a registered source name (``"synthetic"``, ``"gsm8k"``, ``"scibench"``,
            ``"reference"``, ``"math"``, ``"hf"``), a `ProblemSet`, or a sequence of
            `Problem`s.
        limits: step and length limits (`EpisodeLimits`); the keyword arguments
            ``max_steps``, ``max_step_chars``, ``max_solution_chars`` and
            ``max_question_chars`` override single fields.
        verifier: the answer checker; defaults to the shared `default_verifier()`.
        rel_tol: numeric tolerance that overrides each problem's own.
        render_mode: ``"ansi"`` (render returns the text) or ``"human"`` (prints it).
        **source_kwargs: passed to the source factory, e.g. ``split="test"``,
            ``difficulty="medium"``, ``path="gsm8k.jsonl"``.

    Spaces: observation and action are `spaces.Text` over the BMP character set;
    see `EpisodeLimits.max_observation_chars` and ``max_step_chars`` for lengths.

    Outcomes: ``terminated`` when a step states a final answer (reward 1.0 if it
    matches the oracle); ``truncated`` at ``max_steps`` steps or
    ``max_solution_chars`` characters without one. An invalid action (not a str,
    empty, longer than ``max_step_chars``) raises ValueError and leaves the state
    unchanged. ``info`` holds ``problem_id``, ``steps``, ``answer`` and, once
    terminated, ``correct``.
    """

    metadata = {"render_modes": ["ansi", "human"], "render_fps": 1}

    def __init__(
        self,
        source: str | ProblemSet | Sequence[Problem] = "synthetic",
        *,
        limits: EpisodeLimits | None = None,
        verifier: Verifier | None = None,
        rel_tol: float | None = None,
        render_mode: str | None = None,
        max_steps: int | None = None,
        max_step_chars: int | None = None,
        max_solution_chars: int | None = None,
        max_question_chars: int | None = None,
        **source_kwargs: Any,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.render_mode = render_mode
        overrides = {
            key: value
            for key, value in {
                "max_steps": max_steps,
                "max_step_chars": max_step_chars,
                "max_solution_chars": max_solution_chars,
                "max_question_chars": max_question_chars,
            }.items()
            if value is not None
        }
        base = limits or EpisodeLimits()
        self.limits = EpisodeLimits(**{**base.__dict__, **overrides})
        if isinstance(source, str):
            self.problems = make_source(source, **source_kwargs)
        else:
            if source_kwargs:
                raise TypeError(f"source keyword arguments {sorted(source_kwargs)} need a source name")
            self.problems = source if isinstance(source, ProblemSet) else ProblemSet("custom", tuple(source))
        if len(self.problems) == 0:
            raise ValueError(f"problem source {self.problems.name!r} is empty")
        self.verifier = verifier or default_verifier()
        self.rel_tol = rel_tol
        self.observation_space = text_space(self.limits.max_observation_chars, min_length=0)
        self.action_space = text_space(self.limits.max_step_chars, min_length=1)
        self._state: ReasoningState | None = None

    # --- the Gymnasium API -------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Start an episode on a problem.

        ``options={"index": i}`` picks problem i of the source, ``options={"problem": p}``
        takes a `Problem` (or a mapping with ``question`` and ``answer``); otherwise a
        problem is drawn with the environment's seeded generator.
        """
        super().reset(seed=seed)
        options = options or {}
        unknown = set(options) - {"index", "problem"}
        if unknown:
            raise ValueError(f"unknown reset option(s) {sorted(unknown)}; expected 'index' or 'problem'")
        if "problem" in options:
            problem = _as_problem(options["problem"])
        elif "index" in options:
            index = int(options["index"])
            if not 0 <= index < len(self.problems):
                raise IndexError(f"problem index {index} out of range for {len(self.problems)} problems")
            problem = self.problems[index]
        else:
            problem = self.problems[int(self.np_random.integers(len(self.problems)))]
        if len(problem.question) > self.limits.max_question_chars:
            raise ValueError(
                f"problem {problem.id!r} has {len(problem.question)} characters, more than "
                f"max_question_chars={self.limits.max_question_chars}"
            )
        self._state = ReasoningState(problem)
        return self._observation(), self._info()

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        state = self.get_state()
        self._state = apply_step(state, action, self.limits)
        terminated = is_terminal(self._state)
        truncated = is_truncated(self._state, self.limits)
        info = self._info()
        reward = 1.0 if terminated and info["correct"] else 0.0
        return self._observation(), reward, terminated, truncated, info

    def render(self) -> str | None:
        text = self.get_state().text
        if self.render_mode == "human":
            print(text)
            return None
        return text

    # --- branching for search ----------------------------------------------

    def get_state(self) -> ReasoningState:
        """The current immutable state; pass it to `set_state` to return here later."""
        if self._state is None:
            raise RuntimeError("call reset() before using the environment")
        return self._state

    def set_state(self, state: ReasoningState) -> None:
        """Jump to `state` (e.g. a node of a search tree)."""
        if not isinstance(state, ReasoningState):
            raise TypeError(f"set_state expects a ReasoningState, got {type(state).__name__}")
        self._state = state

    def is_correct(self, state: ReasoningState | None = None) -> bool:
        """Whether `state` (default: the current one) states the oracle answer."""
        return grade(state or self.get_state(), self.verifier, self.rel_tol)

    # --- helpers -------------------------------------------------------------

    def _observation(self) -> str:
        return _fit_charset(self.get_state().text)

    def _info(self) -> dict[str, Any]:
        state = self.get_state()
        info: dict[str, Any] = {"problem_id": state.problem.id, "steps": state.steps, "answer": state.answer}
        if is_terminal(state):
            info["correct"] = self.is_correct(state)
        return info

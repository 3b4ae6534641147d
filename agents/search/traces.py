"""Turning policy text into MDP states: whole solutions, step prefixes, finished traces.

Agents never build states by hand: they walk the MDP with `apply_step` under the
episode's `EpisodeLimits`, so every trace they return replays step for step in
`ReasoningMathEnv`.
"""

from __future__ import annotations

from reasoning_gym import (
    UNLIMITED,
    EpisodeLimits,
    Problem,
    ReasoningState,
    apply_step,
    is_terminal,
    is_truncated,
    split_steps,
)


def is_finished(state: ReasoningState, limits: EpisodeLimits) -> bool:
    """True when the episode is over at `state`: it states an answer or hit a limit."""
    return is_terminal(state) or is_truncated(state, limits)


def extend_state(state: ReasoningState, text: str, limits: EpisodeLimits = UNLIMITED) -> ReasoningState:
    """`state` followed by the steps of the free-text continuation `text`.

    Steps are applied one at a time until the state is finished (an answer or a
    limit); a step the environment would reject (longer than
    ``limits.max_step_chars``) ends the trace there, without an answer.
    """
    for step in split_steps(text):
        if is_finished(state, limits):
            break
        try:
            state = apply_step(state, step, limits)
        except ValueError:
            break
    return state


def solution_state(problem: Problem, text: str, limits: EpisodeLimits = UNLIMITED) -> ReasoningState:
    """The state a free-text solution reaches: its steps up to the first stated answer."""
    return extend_state(ReasoningState(problem), text, limits)


def prefixes(state: ReasoningState, start: int = 0) -> list[ReasoningState]:
    """The states after each step of `state` beyond the first `start` steps (K - start states)."""
    return [ReasoningState(state.problem, state.steps[:k]) for k in range(start + 1, len(state.steps) + 1)]

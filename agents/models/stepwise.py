"""Where a policy's step ends, and whole solutions sampled one step at a time.

A task names the strings at which a policy's text for one step ends
(`reasoning_gym.tasks.Task.step_stops`): the newline for answer tasks; for
Countdown also ``"="``, because its engine writes the result of a move and the
board after it. Whole solutions of such a task cannot be sampled in one call:
the engine must write between steps. `sample_solutions_by_task` routes them
through `sample_stepwise`, which asks the policy for one step at a time and
returns what the policy wrote, one ``"Step k: ..."`` line per step, so that
`agents.search.traces.solution_state` replays it into the same state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from agents.models.base import Generation, Policy, SamplingConfig
from reasoning_gym import UNLIMITED, ReasoningState, apply_step, format_step, is_terminal
from reasoning_gym.tasks import task_of

NEWLINE_STOPS = ("\n",)


def step_stops(state: ReasoningState) -> tuple[str, ...]:
    """The strings at which the policy's text for `state`'s next step ends."""
    return task_of(state.problem).step_stops


def cut_step(text: str, stops: Sequence[str]) -> str:
    """`text` up to (without) the first of `stops`."""
    end = min((i for i in (text.find(stop) for stop in stops) if i >= 0), default=len(text))
    return text[:end]


def group_by_stops(states: Sequence[ReasoningState]) -> dict[tuple[str, ...], list[int]]:
    """Indices of `states` grouped by their step stops (one group in any real batch)."""
    groups: dict[tuple[str, ...], list[int]] = {}
    for index, state in enumerate(states):
        groups.setdefault(step_stops(state), []).append(index)
    return groups


def merge(parts: Sequence[tuple[list[int], Generation]], size: int) -> Generation:
    """One `Generation` of `size` rows from generations over disjoint index lists."""
    if len(parts) == 1 and parts[0][0] == list(range(size)):
        return parts[0][1]  # one group in order: nothing to rearrange
    texts: list[list[str]] = [[] for _ in range(size)]
    prompt_tokens, completion_tokens, reused, calls = [0] * size, [0] * size, [0] * size, 0
    for indices, generation in parts:
        for row, index in enumerate(indices):
            texts[index] = generation.texts[row]
            prompt_tokens[index] = generation.prompt_tokens[row]
            completion_tokens[index] = generation.completion_tokens[row]
            if generation.reused_prompt_tokens:
                reused[index] = generation.reused_prompt_tokens[row]
        calls += generation.calls
    return Generation(texts, prompt_tokens, completion_tokens, calls, reused if any(reused) else [])


def sample_stepwise(policy: Policy, states: Sequence[ReasoningState], n: int, sampling: SamplingConfig) -> Generation:
    """`n` whole continuations per state, one batched `propose_steps` call per step.

    Each sample ends when its state is terminal, its step is empty or rejected,
    or it has used ``sampling.max_new_tokens`` completion tokens (a step is capped
    at what the most-spent live sample has left, so no sample overruns). The
    texts are what the policy wrote, ``"Step k: <move>\\n"`` per step; costs are
    the sums over the step calls. Greedy decoding samples once per state.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    copies = 1 if sampling.greedy else n
    rows = [state for state in states for _ in range(copies)]
    current = list(rows)
    written = [""] * len(rows)
    spent = [0] * len(rows)
    prompt_tokens, completion_tokens, reused = [0] * len(states), [0] * len(states), [0] * len(states)
    live = [i for i, state in enumerate(rows) if not is_terminal(state)]
    calls = 0
    for depth in range(sampling.max_new_tokens):
        if not live:
            break
        left = min(sampling.max_new_tokens - spent[i] for i in live)
        seed = None if sampling.seed is None else sampling.seed + depth
        generation = policy.propose_steps([current[i] for i in live], 1, replace(sampling, max_new_tokens=left, seed=seed))
        calls += generation.calls
        still = []
        for row, i in enumerate(live):
            owner = i // copies
            prompt_tokens[owner] += generation.prompt_tokens[row]
            completion_tokens[owner] += generation.completion_tokens[row]
            if generation.reused_prompt_tokens:
                reused[owner] += generation.reused_prompt_tokens[row]
            spent[i] += generation.completion_tokens[row]
            step = generation.texts[row][0]
            if not step:
                continue
            try:
                current[i] = apply_step(current[i], step, UNLIMITED)
            except ValueError:
                continue
            written[i] += format_step(len(current[i].steps), step) + "\n"
            if not is_terminal(current[i]) and spent[i] < sampling.max_new_tokens:
                still.append(i)
        live = still
    texts = [[written[i * copies + (j if copies > 1 else 0)] for j in range(n)] for i in range(len(states))]
    return Generation(texts, prompt_tokens, completion_tokens, calls, reused if any(reused) else [])


def sample_solutions_by_task(
    policy: Policy,
    states: Sequence[ReasoningState],
    n: int,
    sampling: SamplingConfig,
    whole: Callable[[Sequence[ReasoningState], int, SamplingConfig], Generation],
) -> Generation:
    """`policy.sample_solutions`: `whole` (one call) for newline-stepped tasks, `sample_stepwise` for the rest."""
    parts = []
    for stops, indices in group_by_stops(states).items():
        chosen = [states[i] for i in indices]
        sample = whole if stops == NEWLINE_STOPS else lambda s, k, c: sample_stepwise(policy, s, k, c)
        parts.append((indices, sample(chosen, n, sampling)))
    return merge(parts, len(states))

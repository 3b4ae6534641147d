"""A scripted policy and PRM: real implementations of the model protocols for search unit tests.

Costs are simple enough to compute by hand: a policy prompt costs
``len(state.text)`` tokens per sample, every sample costs `sample_tokens`
completion tokens (at most the sampling cap), and the PRM charges
``len(state.text)`` tokens per state. Every call is logged.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from agents.models.base import Generation, SamplingConfig, Scores
from reasoning_gym import ReasoningState


@dataclass
class Call:
    """One logged call: its kind, the steps of each state, samples per state, and its cost.

    `tokens` is completion tokens for a policy call and PRM tokens for a score call.
    """

    kind: str
    states: list[tuple[str, ...]]
    n: int
    tokens: int
    prompt_tokens: int = 0
    temperature: float | None = None
    exclude: list[tuple[str, ...]] | None = None  # per state, the steps the caller asked not to get again


class ScriptedPolicy:
    """Serves scripted proposals in order, per state (logging, not applying, any `exclude`).

    Args:
        steps: ``{state steps: [proposal, ...]}``; each request for that state
            takes the next proposals in order, then ``""`` (an empty proposal)
            once the script is used up. A state with no script gets fresh
            distinct filler steps (``"filler 1"``, ``"filler 2"``, ...).
        solutions: ``{problem id: [solution text, ...]}`` served in order, then "".
        sample_tokens: completion tokens charged per sample.
    """

    num_parameters = 1000

    def __init__(
        self,
        steps: Mapping[tuple[str, ...], Sequence[str]] | None = None,
        solutions: Mapping[str, Sequence[str]] | None = None,
        sample_tokens: int = 4,
    ) -> None:
        self._steps = {key: deque(value) for key, value in (steps or {}).items()}
        self._solutions = {key: deque(value) for key, value in (solutions or {}).items()}
        self._filler = 0
        self.sample_tokens = sample_tokens
        self.calls: list[Call] = []

    def propose_steps(
        self,
        states: Sequence[ReasoningState],
        n: int,
        sampling: SamplingConfig,
        exclude: Sequence[Sequence[str]] | None = None,
    ) -> Generation:
        texts = [[self._next_step(state) for _ in range(n)] for state in states]
        generation = self._generation("propose", states, n, sampling, texts)
        self.calls[-1].exclude = None if exclude is None else [tuple(steps) for steps in exclude]
        return generation

    def sample_solutions(self, states: Sequence[ReasoningState], n: int, sampling: SamplingConfig) -> Generation:
        texts = [[_pop(self._solutions.get(state.problem.id)) for _ in range(n)] for state in states]
        return self._generation("solutions", states, n, sampling, texts)

    def _next_step(self, state: ReasoningState) -> str:
        if state.steps in self._steps:
            return _pop(self._steps[state.steps])
        self._filler += 1
        return f"filler {self._filler}"

    def _generation(self, kind, states, n, sampling, texts) -> Generation:
        prompt = [n * len(state.text) for state in states]
        completion = [n * min(self.sample_tokens, sampling.max_new_tokens) for _ in states]
        self.calls.append(Call(kind, [state.steps for state in states], n, sum(completion), sum(prompt), sampling.temperature))
        return Generation(texts, prompt, completion)


@dataclass
class ScriptedPRM:
    """Values by the state's steps (`default` for unscripted states); ``len(state.text)`` tokens each."""

    values: Mapping[tuple[str, ...], float] = field(default_factory=dict)
    default: float = 0.1
    num_parameters: int = 100
    calls: list[Call] = field(default_factory=list)

    def score(self, states: Sequence[ReasoningState]) -> Scores:
        tokens = [len(state.text) for state in states]
        self.calls.append(Call("score", [state.steps for state in states], 1, sum(tokens)))
        return Scores([self.values.get(state.steps, self.default) for state in states], tokens)


def _pop(queue: deque[str] | None) -> str:
    return queue.popleft() if queue else ""

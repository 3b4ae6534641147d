"""Oracle value models for tasks with an exact state value (planning tasks): clearly not PRMs.

`OracleValue` scores a state by the ReST-MCTS* quality value computed from exact
distances to a correct answer (`reasoning_gym.steps_to_solve`), the very target a
learned PRM is trained to regress: k / K along a path that can still succeed,
the wrong-branch value once it cannot. It is the ceiling of value-guided search.

`NoisyOracleValue` adds seeded Gaussian noise of standard deviation `noise` to
that value (clipped to [0, 1]), the same noise for the same state text on every
call, so a benchmark can chart search accuracy against value quality (AUROC
against exact solvability falls as `noise` grows) and ask how good a PRM must
be for tree search to win.

Both cost no tokens and report ``num_parameters = 0``: an oracle is free, which
flatters it in FLOP comparisons; budgets compare policy completion tokens.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

from agents.models.base import Scores
from agents.training.value_targets import trace_quality_values
from reasoning_gym import ReasoningState, get_task


def oracle_value(state: ReasoningState) -> float:
    """The exact ReST-MCTS* quality value of `state` (0 for the root).

    Raises:
        NotImplementedError: the problem's task has no exact oracle (answer tasks).
    """
    task, problem = get_task(state.problem.task), state.problem
    if not state.steps:
        return 0.0
    root = task.steps_to_solve(problem, ())
    if root is None:
        return 0.0
    distances = [task.steps_to_solve(problem, state.steps[:k]) for k in range(1, len(state.steps) + 1)]
    return trace_quality_values(root, distances)[-1]


class OracleValue:
    """A `ValueModel` giving each state its exact quality value (see the module docstring)."""

    num_parameters = 0

    def score(self, states: Sequence[ReasoningState]) -> Scores:
        return Scores([self.value(state) for state in states], [0] * len(states), calls=0)

    def value(self, state: ReasoningState) -> float:
        return oracle_value(state)


class NoisyOracleValue(OracleValue):
    """`OracleValue` plus N(0, noise^2), clipped to [0, 1]; deterministic per (seed, state text)."""

    def __init__(self, noise: float, seed: int = 0) -> None:
        if noise < 0:
            raise ValueError(f"NoisyOracleValue.noise must be >= 0, got {noise}")
        self.noise = noise
        self.seed = seed

    def value(self, state: ReasoningState) -> float:
        digest = hashlib.sha256(f"{self.seed}|{state.text}".encode()).digest()
        draw = random.Random(int.from_bytes(digest[:8], "big")).gauss(0.0, self.noise) if self.noise else 0.0
        return min(1.0, max(0.0, oracle_value(state) + draw))


def oracle_from_spec(spec: str) -> OracleValue | None:
    """``"oracle"`` -> `OracleValue`; ``"noisy-oracle:SIGMA"`` or ``"noisy-oracle:SIGMA:SEED"``
    -> `NoisyOracleValue`; anything else -> None (not an oracle). ValueError for a bad SIGMA."""
    if spec == "oracle":
        return OracleValue()
    if not spec.startswith("noisy-oracle"):
        return None
    parts = spec.split(":")
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        return NoisyOracleValue(float(parts[1]), int(parts[2]) if len(parts) == 3 else 0)
    except ValueError:
        raise ValueError(f"value {spec!r}: expected 'noisy-oracle:SIGMA' or 'noisy-oracle:SIGMA:SEED' with SIGMA >= 0") from None

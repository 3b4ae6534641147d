"""The ReST-MCTS* quality value of a partial solution (DESIGN, "MCTS* in one paragraph").

    v_k = max(v_{k-1} + (1 - v_{k-1}) / (m_k + 1) * (1 - 2 r_k), 0),   v_0 = 0

m_k is the fewest further steps from step k to a correct answer and r_k is 0 on
a path that reaches a correct answer, 1 otherwise. Along a correct K-step
solution this is k / K. A wrong step branching off a node whose correct
continuation still needs m steps takes that sibling's distance, m - 1, so its
value is max(v - (1 - v) / m, 0).
"""

from __future__ import annotations


def quality_value(previous: float, distance: int, wrong: bool) -> float:
    """v_k from v_{k-1} = `previous`, m_k = `distance` and r_k = `wrong`."""
    if distance < 0:
        raise ValueError(f"distance to a correct answer must be >= 0, got {distance}")
    sign = -1.0 if wrong else 1.0
    return max(previous + (1.0 - previous) / (distance + 1) * sign, 0.0)


def correct_path_values(num_steps: int) -> list[float]:
    """Values v_1..v_K along a correct solution of K steps (k / K)."""
    values, previous = [], 0.0
    for k in range(1, num_steps + 1):
        previous = quality_value(previous, num_steps - k, wrong=False)
        values.append(previous)
    return values


def wrong_step_value(parent_value: float, parent_distance: int) -> float:
    """Value of a wrong step under a node with value v and distance m: max(v - (1 - v)/m, 0)."""
    if parent_distance < 1:
        raise ValueError("a node at distance 0 already states the correct answer; it has no wrong next step")
    return quality_value(parent_value, parent_distance - 1, wrong=True)



def trace_quality_values(root_distance: int, distances: list[int | None]) -> list[float]:
    """v_1..v_K along one trace, from exact distances (`reasoning_gym.steps_to_solve`).

    `root_distance` is the fewest steps from the problem to a correct answer and
    ``distances[k]`` that of the state after step k + 1 (None: unreachable). While
    a correct answer stays reachable, r = 0 and m is the distance. The first step
    after which it is not is a wrong sibling of the correct continuation (m = the
    parent's distance - 1, r = 1); each later step is one step further (m one less,
    never below 0) and also wrong.
    """
    values: list[float] = []
    previous, distance, wrong = 0.0, root_distance, False
    for step_distance in distances:
        wrong = wrong or step_distance is None
        distance = max(distance - 1, 0) if wrong else step_distance
        previous = quality_value(previous, distance, wrong)
        values.append(previous)
    return values

"""A new task plugs into the task seam alone: registered, it is played by the environment,
graded by the MDP functions, valued exactly by the oracle and searched by MCTS*, with no
change to shared code.

The task here, "reach": start at 0, each step adds 1 or 2 (written ``+1`` / ``+2``; the
engine appends the position), and the answer is the position once it reaches the target
or passes it; only landing exactly on the target is correct.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

from agents.models.oracle import OracleValue
from agents.search.budget import Budget
from agents.search.mcts_star import MCTSStar, MCTSStarConfig
from reasoning_gym import (
    EpisodeLimits,
    Problem,
    ReasoningMathEnv,
    ReasoningState,
    apply_step,
    grade,
    is_terminal,
    solvable,
    steps_to_solve,
)
from reasoning_gym.tasks.base import Task, get_task, register_task
from tests.scripted import ScriptedPolicy


class ReachTask(Task):
    name = "reach-test"

    def render_step(self, problem: Problem, steps: Sequence[str], step: str) -> str:
        position = self.position(steps)
        return f"{step} (at {position + int(step[1:])})" if step in ("+1", "+2") and position is not None else step

    def position(self, steps: Sequence[str]) -> int | None:
        """Where `steps` lead, or None after an illegal step."""
        total = 0
        for step in steps:
            move = step.split(" ")[0]
            if move not in ("+1", "+2"):
                return None
            total += int(move[1:])
        return total

    def illegal(self, problem: Problem, steps: Sequence[str]) -> str | None:
        return None if self.position(steps) is not None else f"{steps[-1]!r} is not +1 or +2"

    def answer(self, problem: Problem, steps: Sequence[str]) -> str | None:
        position = self.position(steps)
        return str(position) if position is not None and position >= int(problem.answer) else None

    def is_terminal(self, problem: Problem, steps: Sequence[str]) -> bool:
        return self.illegal(problem, steps) is not None or self.answer(problem, steps) is not None

    def grade_answer(self, problem: Problem, answer: str, verifier, rel_tol) -> bool:
        return answer.strip() == problem.answer

    def steps_to_solve(self, problem: Problem, steps: Sequence[str]) -> int | None:
        position, target = self.position(steps), int(problem.answer)
        if position is None or position > target:
            return None
        return math.ceil((target - position) / 2)


TASK = register_task(ReachTask())
LIMITS = EpisodeLimits(max_steps=10)


def reach(target: int) -> Problem:
    return Problem(f"reach-{target}", f"Reach {target} from 0 by steps of +1 or +2.", str(target), task=TASK.name)


def walk(problem: Problem, *steps: str) -> ReasoningState:
    state = ReasoningState(problem)
    for step in steps:
        state = apply_step(state, step, LIMITS)
    return state


def test_a_registered_task_is_found_by_name_and_names_are_unique():
    assert get_task("reach-test") is TASK
    with pytest.raises(ValueError, match="already registered"):
        register_task(ReachTask())


def test_the_mdp_functions_record_grade_and_value_through_the_task():
    problem = reach(5)
    right = walk(problem, "+2", "+2", "+1")
    assert right.steps == ("+2 (at 2)", "+2 (at 4)", "+1 (at 5)") and right.answer == "5"
    assert is_terminal(right) and grade(right) and steps_to_solve(right) == 0
    over = walk(problem, "+2", "+2", "+2")
    assert is_terminal(over) and not grade(over) and not solvable(over)
    wrong = walk(problem, "+3")
    assert is_terminal(wrong) and not grade(wrong) and steps_to_solve(wrong) is None
    assert [steps_to_solve(walk(problem, *["+1"] * k)) for k in range(5)] == [3, 2, 2, 1, 1]


def test_the_environment_plays_the_task():
    env = ReasoningMathEnv([reach(3)], max_steps=10)
    check_env(env, skip_render_check=True)
    env.reset(options={"index": 0})
    assert env.step("+2")[1:3] == (0.0, False)
    observation, reward, terminated, truncated, info = env.step("+1")
    assert (reward, terminated, truncated, info["correct"]) == (1.0, True, False, True)
    assert "+1 (at 3)" in observation
    env.reset(options={"index": 0})
    assert env.step("jump")[1:4] == (0.0, True, False)
    assert gym.make("ReasoningMath-v0", source=[reach(3)]).unwrapped.problems[0].task == "reach-test"


def test_mcts_star_with_the_exact_value_finds_the_path_the_policy_offers_second():
    """At each node the policy offers +1 first and +2 second. With exact values MCTS* prefers
    the child one step closer; only +2, +2 reaches 4 in two steps."""
    problem = reach(4)
    script = {(): ["+1", "+2"], ("+2 (at 2)",): ["+1", "+2"], ("+1 (at 1)",): ["+2", "+1"]}
    policy = ScriptedPolicy(steps=script, sample_tokens=2)
    config = MCTSStarConfig(iterations=20, branch=2, roll_forward_steps=0, max_retries=0, unvisited_bonus=0.0,
                            exploration=0.0, widen=False)  # fmt: skip
    [result] = MCTSStar(policy, OracleValue(), config).solve([problem], Budget(), LIMITS)
    assert result.answer == "4" and grade(result.trace) and result.stop_reason == "solved"
    assert result.trace.steps == ("+2 (at 2)", "+2 (at 4)")

"""reasoning_gym: the reasoning MDP as Gymnasium environments, problem sources and a verifier.

Importing it registers ``ReasoningMath-v0``. It does not import torch or
transformers, so any LLM stack can drive it.
"""

from reasoning_gym.mdp import (
    EpisodeLimits,
    UNLIMITED,
    ReasoningState,
    apply_step,
    grade,
    grade_answer,
    is_terminal,
    is_truncated,
    solvable,
    steps_to_solve,
)
from reasoning_gym.problem import Problem
from reasoning_gym.registration import ENV_ID, register_envs
from reasoning_gym.sources import ProblemSet, available_sources, make_source, split_of
from reasoning_gym.tasks import Task, available_tasks, get_task, task_of
from reasoning_gym.steps import answer_step, extract_answer, format_step, render_state, split_steps
from reasoning_gym.verifier import Verifier, answers_match, default_verifier

register_envs()

from reasoning_gym.env import ReasoningMathEnv  # noqa: E402  (after registration, imports gymnasium spaces)

__all__ = [
    "ENV_ID",
    "EpisodeLimits",
    "UNLIMITED",
    "Problem",
    "ProblemSet",
    "ReasoningMathEnv",
    "ReasoningState",
    "Verifier",
    "answer_step",
    "answers_match",
    "apply_step",
    "available_sources",
    "default_verifier",
    "extract_answer",
    "format_step",
    "grade",
    "grade_answer",
    "available_tasks",
    "get_task",
    "solvable",
    "steps_to_solve",
    "task_of",
    "Task",
    "is_terminal",
    "is_truncated",
    "make_source",
    "register_envs",
    "render_state",
    "split_of",
    "split_steps",
]

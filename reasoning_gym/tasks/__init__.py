"""Tasks: how a problem's steps are recorded, when a state is final and how it is graded.

Importing this package registers the built-in tasks (``"answer"``, ``"countdown"``).
"""

from reasoning_gym.tasks.base import Task, available_tasks, get_task, register_task, task_of
from reasoning_gym.tasks.answer import AnswerTask
from reasoning_gym.tasks.countdown import CountdownTask, Puzzle
from reasoning_gym.tasks.expression import ArithmeticRules, ExpressionError, evaluate_expression

__all__ = [
    "AnswerTask",
    "ArithmeticRules",
    "CountdownTask",
    "ExpressionError",
    "Puzzle",
    "Task",
    "available_tasks",
    "evaluate_expression",
    "get_task",
    "register_task",
    "task_of",
]

"""Registers ``ReasoningMath-v0`` with Gymnasium (done on ``import reasoning_gym``).

``gym.make("reasoning_gym:ReasoningMath-v0")`` imports this package first, so the
id also works in processes that never imported it (vector env workers, Ray actors).
"""

from __future__ import annotations

import gymnasium as gym

ENV_ID = "ReasoningMath-v0"


def register_envs() -> None:
    """Register the environment ids; safe to call more than once."""
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point="reasoning_gym.env:ReasoningMathEnv", disable_env_checker=False)

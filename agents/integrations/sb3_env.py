"""`CandidateChoiceEnv`: the text environment as a discrete-choice problem that stable-baselines3 can learn.

At every step the policy LLM proposes K next steps for the current state and the
PRM scores the state each one leads to. The agent sees a float vector of cheap
features of those K candidates and picks one by index; the wrapper plays the
chosen step in the wrapped `ReasoningMathEnv`, whose reward it passes on (1.0
when the finished episode is graded correct, else 0.0). An RL agent thus learns
*which* proposal to follow, from the same signals a search agent has, while the
LLM stays frozen:

    from stable_baselines3 import PPO
    env = CandidateChoiceEnv(ReasoningMathEnv("countdown", split="train", max_steps=6), policy, prm,
                             CandidateChoiceConfig(k=4, max_new_tokens=16))
    PPO("MlpPolicy", env, seed=0).learn(10_000)

Candidates. One batched ``policy.propose_steps([state], K, sampling)`` call per
step. Proposals are normalised and played with `apply_step` under the wrapped
environment's limits; those it rejects (empty, too long) are dropped, and
proposals that record the same step (the task may render two texts the same
way) are merged, counting how many of the K samples proposed them. The distinct
candidates are sorted by PRM score, best first (ties: first proposed), so slot
``i`` always means "the i-th best by the PRM" and an MLP need not learn a
permutation-invariant rule. Slots past the last distinct candidate are padding:
their features are all zero (``valid`` = 0), and choosing one plays slot 0, the
best-scored valid candidate (``info["fallback"]`` is then True).

Observation: ``Box(shape=(K * 7 + 3,), float32)``, `observation_layout` names
each entry. Per slot, in `CANDIDATE_FEATURES` order:

- ``prm``: PRM score of the candidate's child state, in [0, 1];
- ``prm_gap``: ``prm`` minus slot 0's ``prm``, in [-1, 0];
- ``valid``: 1 for a real candidate, 0 for padding;
- ``share``: fraction of the K samples that proposed it (the policy's own vote);
- ``length``: its characters / `CandidateChoiceConfig.length_scale`, capped at 1;
- ``ends``: 1 when playing it ends the episode (an answer, an illegal planning
  move, or the step or length limit);
- ``answers``: 1 when it states a final answer.

Then, in `GLOBAL_FEATURES` order: ``step`` (steps taken / ``max_steps``, capped
at 1), ``state_prm`` (PRM score of the current state) and ``valid_fraction``
(distinct valid candidates / K). After the final step the candidate slots are
all zero.

Outcomes: ``terminated`` and ``truncated`` are the wrapped environment's (a
stated answer; the step or length limit), plus one case of the wrapper's own:
when no proposal for a state is a valid action, the episode is truncated with
reward 0 (at once if that state follows a step; at the next step, whatever the
action, if it is the state after `reset`), with ``info["no_candidates"]`` True.

Determinism: on ``reset(seed=s)`` the wrapped environment draws the problem from
its seeded generator; the seed of every policy call is drawn from the same
generator, so the same seed and actions give the same episode. The policy call
runs inside `torch.random.fork_rng`, because `HFPolicy` seeds torch's global
generator, which an RL learner (PPO's action sampling) also draws from.

``info`` holds the wrapped environment's keys (``problem_id``, ``steps``,
``answer``, and ``correct`` once terminated) plus ``candidates`` (the step text
of each valid slot, in slot order), ``usage`` (the episode's model cost so far,
`agents.search.budget.Usage.to_dict`: policy prompt and completion tokens, PRM
tokens, calls and seconds spent in model calls) and, after a step, ``chosen``
(the slot played; None when no candidate was), ``fallback`` and ``no_candidates``.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from agents.models.base import Policy, SamplingConfig, ValueModel
from agents.search.budget import Usage
from reasoning_gym import ReasoningMathEnv, ReasoningState, apply_step, is_terminal, is_truncated
from reasoning_gym.steps import normalize_step

CANDIDATE_FEATURES = ("prm", "prm_gap", "valid", "share", "length", "ends", "answers")
GLOBAL_FEATURES = ("step", "state_prm", "valid_fraction")


@dataclass(frozen=True)
class CandidateChoiceConfig:
    """Options of `CandidateChoiceEnv`.

    Attributes:
        k: candidates proposed per step, the size of the action space.
        temperature: the policy's sampling temperature (0 makes all K proposals the
            same greedy step, leaving one candidate).
        top_p: nucleus sampling mass.
        max_new_tokens: cap on tokens per proposed step.
        length_scale: characters that map to ``length`` 1.0 (longer steps are capped).
    """

    k: int = 4
    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 48
    length_scale: int = 64

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"CandidateChoiceConfig.k must be >= 1, got {self.k}")
        if self.length_scale < 1:
            raise ValueError(f"CandidateChoiceConfig.length_scale must be >= 1, got {self.length_scale}")
        _ = self.sampling(None)  # a SamplingConfig validates the sampling fields, naming the bad one

    def sampling(self, seed: int | None) -> SamplingConfig:
        return SamplingConfig(self.temperature, self.top_p, self.max_new_tokens, seed)


@dataclass(frozen=True)
class Candidate:
    """One distinct proposal: the step as played, the state it leads to, its PRM score and votes."""

    step: str
    state: ReasoningState
    prm: float
    count: int
    ends: bool


def observation_layout(k: int) -> list[str]:
    """Names of the observation's entries for `k` candidates: ``"c{slot}.{feature}"``, then the globals."""
    return [f"c{slot}.{name}" for slot in range(k) for name in CANDIDATE_FEATURES] + list(GLOBAL_FEATURES)


def split_observation(observation: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(candidate features of shape (k, 7), global features of shape (3,)) of one observation."""
    cut = k * len(CANDIDATE_FEATURES)
    return observation[:cut].reshape(k, len(CANDIDATE_FEATURES)), observation[cut:]


class CandidateChoiceEnv(gym.Wrapper[np.ndarray, int, str, str]):
    """Choose one of K LLM-proposed steps per turn of a `ReasoningMathEnv` (see the module docstring).

    Args:
        env: a `ReasoningMathEnv`, or a wrapper of one (as ``gym.make("ReasoningMath-v0", ...)``
            returns). Its problem source, limits, verifier and seeded generator are used.
        policy: proposes the candidates (frozen; any `Policy` backend).
        value: the PRM that scores each candidate's child state and the current state.
        config: K and sampling options.

    Spaces: observation ``Box(K * 7 + 3,)`` float32 (`observation_layout`), action ``Discrete(K)``.
    """

    def __init__(
        self, env: gym.Env, policy: Policy, value: ValueModel, config: CandidateChoiceConfig | None = None
    ) -> None:
        super().__init__(env)
        if not isinstance(env.unwrapped, ReasoningMathEnv):
            raise TypeError(f"CandidateChoiceEnv wraps a ReasoningMathEnv, got {type(env.unwrapped).__name__}")
        self.text_env: ReasoningMathEnv = env.unwrapped
        self.policy = policy
        self.value = value
        self.config = config or CandidateChoiceConfig()
        k, per_slot = self.config.k, len(CANDIDATE_FEATURES)
        low = np.zeros((k, per_slot), dtype=np.float32)
        low[:, CANDIDATE_FEATURES.index("prm_gap")] = -1.0
        high = np.ones((k, per_slot), dtype=np.float32)
        high[:, CANDIDATE_FEATURES.index("prm_gap")] = 0.0
        self.observation_space = spaces.Box(
            low=np.concatenate([low.ravel(), np.zeros(len(GLOBAL_FEATURES), dtype=np.float32)]),
            high=np.concatenate([high.ravel(), np.ones(len(GLOBAL_FEATURES), dtype=np.float32)]),
            dtype=np.float32,
        )
        self.action_space = spaces.Discrete(k)
        self.candidates: list[Candidate] = []
        self.usage = Usage()
        self._state_prm = 0.0
        self._finished = True

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode on a problem of the wrapped environment (same `options`: ``index`` or ``problem``)."""
        _, info = self.env.reset(seed=seed, options=options)
        self.usage = Usage()
        self._finished = False
        self._propose(score_state=True)
        return self._observation(), self._info(info)

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Play candidate `action` (a padded slot plays slot 0) and propose the next candidates.

        Raises:
            ValueError: `action` is not in the action space.
            RuntimeError: the episode is over (call `reset`).
        """
        action = int(action)  # SB3 passes numpy integers
        if not self.action_space.contains(action):
            raise ValueError(f"action must be an int in [0, {self.config.k}), got {action}")
        if self._finished:
            raise RuntimeError("the episode is over; call reset()")
        if not self.candidates:
            self._finished = True
            info = self._info(self._text_info(), chosen=None, fallback=False, no_candidates=True)
            return self._observation(), 0.0, False, True, info
        fallback = action >= len(self.candidates)
        chosen = 0 if fallback else action
        candidate = self.candidates[chosen]
        _, reward, terminated, truncated, info = self.env.step(candidate.step)
        self._state_prm = candidate.prm
        if terminated or truncated:
            self.candidates = []
            no_candidates = False
        else:
            self._propose(score_state=False)
            no_candidates = not self.candidates
            truncated = no_candidates
        self._finished = terminated or truncated
        info = self._info(info, chosen=chosen, fallback=fallback, no_candidates=no_candidates)
        return self._observation(), float(reward), terminated, truncated, info

    # --- candidates ------------------------------------------------------------

    def _propose(self, score_state: bool) -> None:
        """Set `candidates` for the current state (and its PRM score when `score_state`)."""
        state, k = self.text_env.get_state(), self.config.k
        sampling = self.config.sampling(int(self.np_random.integers(2**31 - 1)))
        started = time.perf_counter()
        with torch.random.fork_rng():
            generation = self.policy.propose_steps([state], k, sampling)
        self.usage.add_generation(generation, [0])
        # Keyed by the step as the state records it: a task may render two texts the same way.
        distinct: dict[str, tuple[str, ReasoningState]] = {}
        votes: Counter[str] = Counter()
        for text in generation.texts[0]:
            step = normalize_step(text)
            try:
                child = apply_step(state, step, self.text_env.limits)
            except ValueError:
                continue  # empty or longer than the environment admits: not an action
            distinct.setdefault(child.steps[-1], (step, child))
            votes[child.steps[-1]] += 1
        children = [child for _, child in distinct.values()]
        to_score = [state, *children] if score_state else children
        if to_score:
            scores = self.value.score(to_score)
            self.usage.add_scores(scores, range(len(to_score)))
            values = list(scores.values)
            if score_state:
                self._state_prm = values.pop(0)
        else:
            values = []
        self.usage.wall_seconds += time.perf_counter() - started
        limits = self.text_env.limits
        candidates = [
            Candidate(step, child, float(prm), votes[key], is_terminal(child) or is_truncated(child, limits))
            for (key, (step, child)), prm in zip(distinct.items(), values)
        ]
        self.candidates = sorted(candidates, key=lambda candidate: -candidate.prm)  # stable: ties keep proposal order

    # --- observation and info ----------------------------------------------------

    def _observation(self) -> np.ndarray:
        k = self.config.k
        slots = np.zeros((k, len(CANDIDATE_FEATURES)), dtype=np.float32)
        best = self.candidates[0].prm if self.candidates else 0.0
        for slot, candidate in enumerate(self.candidates):
            slots[slot] = (
                candidate.prm,
                candidate.prm - best,
                1.0,
                candidate.count / k,
                min(len(candidate.step) / self.config.length_scale, 1.0),
                float(candidate.ends),
                float(candidate.state.answer is not None),
            )
        state = self.text_env.get_state()
        step = min(len(state.steps) / self.text_env.limits.max_steps, 1.0)
        extra = np.array([step, self._state_prm, len(self.candidates) / k], dtype=np.float32)
        return np.concatenate([slots.ravel(), extra])

    def _text_info(self) -> dict[str, Any]:
        state = self.text_env.get_state()
        return {"problem_id": state.problem.id, "steps": state.steps, "answer": state.answer}

    def _info(self, info: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {
            **info,
            "candidates": tuple(candidate.step for candidate in self.candidates),
            "usage": self.usage.to_dict(),
            **extra,
        }

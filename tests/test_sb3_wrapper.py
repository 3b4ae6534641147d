"""The stable-baselines3 wrapper: SB3's own env checker, the documented spaces and features,
rewards of scripted episodes worked out by hand, determinism, and PPO learning on it."""

from __future__ import annotations

import random
import warnings
from collections.abc import Sequence

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from scripted import ScriptedPolicy, ScriptedPRM
from stable_baselines3 import PPO
from stable_baselines3.common.env_checker import check_env

from agents.integrations.sb3_env import (
    CANDIDATE_FEATURES,
    GLOBAL_FEATURES,
    CandidateChoiceConfig,
    CandidateChoiceEnv,
    observation_layout,
    split_observation,
)
from agents.models.hf_policy import HFPolicy, HFPolicyConfig
from agents.models.hf_value import HFValueConfig, HFValueModel
from agents.models.tiny import TinyModelConfig, build_char_tokenizer, build_policy_model, build_value_model
from reasoning_gym import ENV_ID, UNLIMITED, Problem, ReasoningMathEnv, ReasoningState, apply_step, make_source
from reasoning_gym.sources.puzzles import puzzle_problem
from reasoning_gym.tasks.countdown import Puzzle, puzzle_of

SMALL = TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_positions=512)
FEATURE = {name: index for index, name in enumerate(CANDIDATE_FEATURES)}
WORD = Problem("w", "What is 6 * 7?", "42")


@pytest.fixture(scope="module")
def tiny_models() -> tuple[HFPolicy, HFValueModel]:
    """A random-weight tiny Llama policy and PRM (real transformers models, no download)."""
    tokenizer = build_char_tokenizer()
    torch.manual_seed(0)
    policy = HFPolicy(build_policy_model(SMALL, tokenizer), tokenizer, HFPolicyConfig(prompt_format="plain"))
    value = HFValueModel(build_value_model(SMALL, tokenizer), tokenizer, HFValueConfig(batch_size=8))
    return policy, value


@pytest.fixture(scope="module")
def puzzle() -> Problem:
    """Use 3 6 7 8 to make 28: 8 * 7, 6 / 3, 56 / 2 solves it."""
    rules = puzzle_of(make_source("countdown", size=1)[0]).rules
    return puzzle_problem(Puzzle(numbers=(3, 6, 7, 8), target=28, rules=rules), "p", random.Random(0))


def after(problem: Problem, *moves: str) -> tuple[str, ...]:
    """The recorded steps after playing `moves` (the keys of a scripted policy and PRM)."""
    state = ReasoningState(problem)
    for move in moves:
        state = apply_step(state, move, UNLIMITED)
    return state.steps


def scripted_env(
    problems: list[Problem], policy: ScriptedPolicy | None = None, prm: ScriptedPRM | None = None, k: int = 4, **limits
) -> CandidateChoiceEnv:
    """The wrapper over `problems` with a scripted policy and PRM (unscripted: filler steps, value 0.1)."""
    text_env = ReasoningMathEnv(problems, **limits)
    return CandidateChoiceEnv(text_env, policy or ScriptedPolicy(), prm or ScriptedPRM(), CandidateChoiceConfig(k=k))


def tiny_env(
    models: tuple[HFPolicy, HFValueModel], source: Sequence[Problem], k: int = 3, **limits
) -> CandidateChoiceEnv:
    """The wrapper with the tiny random models, sampling at temperature 1, 6 tokens per step."""
    config = CandidateChoiceConfig(k=k, temperature=1.0, max_new_tokens=6)
    return CandidateChoiceEnv(ReasoningMathEnv(source, **limits), *models, config)


def test_sb3_check_env_passes_without_warnings_on_tiny_models(tiny_models):
    env = tiny_env(tiny_models, make_source("countdown", split="test", size=5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # SB3 warns about anything it could not learn well
        check_env(env)


def test_spaces_and_layout_are_as_documented(tiny_models):
    env = tiny_env(tiny_models, make_source("countdown", split="test", size=5), k=5)
    assert env.action_space == spaces.Discrete(5)
    box = env.observation_space
    assert isinstance(box, spaces.Box) and box.dtype == np.float32 and box.shape == (5 * 7 + 3,)
    layout = observation_layout(5)
    assert len(layout) == box.shape[0] and layout[:2] == ["c0.prm", "c0.prm_gap"]
    assert layout[-3:] == list(GLOBAL_FEATURES)
    gap = [i for i, name in enumerate(layout) if name.endswith(".prm_gap")]
    assert (box.low[gap] == -1).all() and (box.high[gap] == 0).all()
    rest = [i for i in range(len(layout)) if i not in gap]
    assert (box.low[rest] == 0).all() and (box.high[rest] == 1).all()
    observation, info = env.reset(seed=0)
    assert box.contains(observation) and set(info) >= {"problem_id", "steps", "candidates", "usage"}


def test_wraps_the_registered_environment_and_nothing_else():
    env = CandidateChoiceEnv(gym.make(ENV_ID, source=[WORD]), ScriptedPolicy(), ScriptedPRM(), CandidateChoiceConfig(2))
    assert env.reset(seed=0)[1]["candidates"] == ("filler 1", "filler 2")
    with pytest.raises(TypeError, match="ReasoningMathEnv"):
        CandidateChoiceEnv(gym.make("CartPole-v1"), ScriptedPolicy(), ScriptedPRM())


def test_a_scripted_episode_scores_sorts_merges_pads_and_rewards_as_worked_out(puzzle):
    script = {
        (): ["9 + 9", "8 * 7", "8*7", ""],  # 9 is not a number left: illegal, ends the episode; "" is no action
        after(puzzle, "8 * 7"): ["6 / 3", "3 + 6", "6 / 3", "6 / 3"],
        after(puzzle, "8 * 7", "6 / 3"): ["56 - 2", "56 / 2", "56 + 2", "56 / 2"],
    }
    values = {
        after(puzzle, "8 * 7"): 0.8,
        after(puzzle, "9 + 9"): 0.3,
        after(puzzle, "8 * 7", "6 / 3"): 0.9,
        after(puzzle, "8 * 7", "3 + 6"): 0.2,
        after(puzzle, "8 * 7", "6 / 3", "56 - 2"): 0.7,  # the PRM prefers a wrong answer
        after(puzzle, "8 * 7", "6 / 3", "56 / 2"): 0.6,
    }
    policy, prm = ScriptedPolicy(steps=script, sample_tokens=4), ScriptedPRM(values, default=0.1)
    env = scripted_env([puzzle], policy, prm, max_steps=6)

    observation, info = env.reset(seed=0)
    slots, extra = split_observation(observation, 4)
    assert info["candidates"] == ("8 * 7", "9 + 9")  # "8*7" merged into "8 * 7"; sorted by PRM
    np.testing.assert_allclose(slots[:, FEATURE["prm"]], [0.8, 0.3, 0, 0])
    np.testing.assert_allclose(slots[:, FEATURE["prm_gap"]], [0, -0.5, 0, 0], atol=1e-6)
    np.testing.assert_array_equal(slots[:, FEATURE["valid"]], [1, 1, 0, 0])
    np.testing.assert_allclose(slots[:, FEATURE["share"]], [0.5, 0.25, 0, 0])
    np.testing.assert_allclose(slots[:, FEATURE["length"]], [5 / 64, 5 / 64, 0, 0])
    np.testing.assert_array_equal(slots[:, FEATURE["ends"]], [0, 1, 0, 0])  # the illegal move ends it
    np.testing.assert_array_equal(slots[:, FEATURE["answers"]], [0, 0, 0, 0])
    np.testing.assert_allclose(extra, [0, 0.1, 0.5])  # no step yet, the root's PRM score, 2 of 4 valid

    observation, reward, terminated, truncated, info = env.step(3)  # padding: plays slot 0
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert info["chosen"] == 0 and info["fallback"] and info["steps"] == after(puzzle, "8 * 7")
    assert info["candidates"] == ("6 / 3", "3 + 6")
    np.testing.assert_allclose(split_observation(observation, 4)[1], [1 / 6, 0.8, 0.5])

    observation, reward, terminated, truncated, info = env.step(0)
    assert info["candidates"] == ("56 - 2", "56 / 2", "56 + 2")
    slots, _ = split_observation(observation, 4)
    np.testing.assert_array_equal(slots[:, FEATURE["answers"]], [1, 1, 1, 0])
    np.testing.assert_array_equal(slots[:, FEATURE["ends"]], [1, 1, 1, 0])

    observation, reward, terminated, truncated, info = env.step(1)  # not the PRM's favourite
    assert (reward, terminated, truncated) == (1.0, True, False)
    assert info["correct"] and info["answer"] == "(8 * 7) / (6 / 3)" and not info["fallback"]
    slots, extra = split_observation(observation, 4)
    assert info["candidates"] == () and not slots.any()
    np.testing.assert_allclose(extra, [3 / 6, 0.6, 0])
    # every model call of the episode is counted, at the scripted models' prices
    proposals = [call for call in policy.calls if call.kind == "propose"]
    assert len(proposals) == 3 and len(prm.calls) == 3
    assert info["usage"]["policy_completion_tokens"] == sum(call.tokens for call in proposals) == 3 * 4 * 4
    assert info["usage"]["policy_prompt_tokens"] == sum(call.prompt_tokens for call in proposals)
    assert info["usage"]["prm_tokens"] == sum(call.tokens for call in prm.calls) > 0
    assert (info["usage"]["policy_calls"], info["usage"]["prm_calls"]) == (3, 3)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)

    # The PRM-greedy path answers 56 - 2 = 54: wrong. An illegal first move: also 0.
    for actions, steps in (([0, 0, 0], 3), ([1], 1)):
        env = scripted_env([puzzle], ScriptedPolicy(steps=script), prm)
        env.reset(seed=0)
        for action in actions:
            _, reward, terminated, truncated, info = env.step(action)
        assert (reward, terminated, truncated, info["correct"], len(info["steps"])) == (0.0, True, False, False, steps)


def test_word_problem_answers_and_truncation_at_max_steps():
    policy = ScriptedPolicy(steps={(): ["The answer is 41", "The answer is 42"]})
    env = scripted_env([WORD], policy, k=2)
    observation, info = env.reset(seed=0)
    assert info["candidates"] == ("The answer is 41", "The answer is 42")  # a PRM tie keeps proposal order
    slots, _ = split_observation(observation, 2)
    assert (slots[:, FEATURE["answers"]] == 1).all() and (slots[:, FEATURE["ends"]] == 1).all()
    assert env.step(1)[1:4] == (1.0, True, False)

    # unscripted states get distinct filler steps, which never answer: truncated at max_steps
    env = scripted_env([WORD], k=3, max_steps=2)
    env.reset(seed=0)
    observation, reward, terminated, truncated, _ = env.step(2)
    slots, extra = split_observation(observation, 3)
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert (slots[:, FEATURE["ends"]] == 1).all() and (slots[:, FEATURE["answers"]] == 0).all() and extra[0] == 0.5
    _, reward, terminated, truncated, info = env.step(0)
    assert (reward, terminated, truncated, len(info["steps"])) == (0.0, False, True, 2)


def test_no_valid_proposal_truncates_with_reward_zero(puzzle):
    env = scripted_env([puzzle], ScriptedPolicy(steps={(): [""] * 3}), k=3)
    observation, info = env.reset(seed=0)
    assert info["candidates"] == () and not split_observation(observation, 3)[0].any()
    _, reward, terminated, truncated, info = env.step(1)  # whatever the action
    assert (reward, terminated, truncated, info["no_candidates"], info["steps"]) == (0.0, False, True, True, ())

    script = {(): ["8 * 7"], after(puzzle, "8 * 7"): []}  # after the first move, only empty proposals
    env = scripted_env([puzzle], ScriptedPolicy(steps=script), k=3)
    env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step(0)
    assert (reward, terminated, truncated, info["no_candidates"]) == (0.0, False, True, True)
    assert info["steps"] == after(puzzle, "8 * 7")


def play(env: CandidateChoiceEnv, seed: int, actions: list[int]) -> list[tuple]:
    observation, info = env.reset(seed=seed)
    trace = [(observation.tobytes(), info["problem_id"], info["candidates"])]
    for action in actions:
        observation, reward, terminated, truncated, info = env.step(action)
        trace.append((observation.tobytes(), reward, terminated, truncated, info["candidates"]))
        if terminated or truncated:
            break
    return trace


def test_same_seed_same_episode_and_the_global_torch_generator_is_left_alone(tiny_models):
    problems = [WORD, Problem("x", "Tom has 3 apples and buys 4 more. How many apples?", "7")]
    first = play(tiny_env(tiny_models, problems, max_steps=3), 7, [1, 0, 2])
    again = play(tiny_env(tiny_models, problems, max_steps=3), 7, [1, 0, 2])
    assert first == again and len(first) == 4  # three steps of random text, truncated at max_steps
    assert len({candidate for entry in first for candidate in entry[-1]}) > 3  # real, varied samples

    env = tiny_env(tiny_models, problems, max_steps=3)
    assert len({play(env, seed, [0])[0][1] for seed in range(8)}) == 2  # the seed draws the problem
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    env.reset(seed=1)
    env.step(0)
    assert torch.equal(torch.rand(3), expected)  # HFPolicy's seeding did not leak into the caller's draws


def test_ppo_learns_on_the_wrapper():
    env = scripted_env([WORD], k=3, max_steps=3)
    model = PPO("MlpPolicy", env, n_steps=16, batch_size=16, seed=0, device="cpu")
    model.learn(32)
    assert model.num_timesteps == 32
    action, _ = model.predict(env.reset(seed=0)[0], deterministic=True)
    assert env.action_space.contains(int(action))

"""The ReasoningMath-v0 environment: API contract, rewards, branching and seeding."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import reasoning_gym
from reasoning_gym import EpisodeLimits, Problem, ReasoningMathEnv, ReasoningState, apply_step, make_source


def play(env: gym.Env, steps) -> tuple[float, bool, bool, dict]:
    reward, terminated, truncated, info = 0.0, False, False, {}
    for step in steps:
        _, reward, terminated, truncated, info = env.step(step)
        if terminated or truncated:
            break
    return reward, terminated, truncated, info


def test_check_env_passes_on_default_and_file_sources(shared_data):
    check_env(gym.make("ReasoningMath-v0").unwrapped, skip_render_check=False)
    check_env(ReasoningMathEnv("gsm8k", path=shared_data / "gsm8k_train_sample.jsonl"))


def test_make_vec_sync_steps_four_envs():
    envs = gym.make_vec("ReasoningMath-v0", num_envs=4, vectorization_mode="sync", split="test", size=20)
    observations, infos = envs.reset(seed=3)
    assert len(observations) == 4 and all(o.startswith("Problem: ") for o in observations)
    observations, rewards, terminated, truncated, _ = envs.step(["1 + 1 = 2"] * 4)
    assert all(o.rstrip().endswith("Step 1: 1 + 1 = 2") for o in observations)
    assert list(rewards) == [0.0] * 4 and not terminated.any() and not truncated.any()
    envs.close()


def test_module_prefixed_id_registers_in_a_fresh_process():
    code = "import gymnasium as gym; env = gym.make('reasoning_gym:ReasoningMath-v0'); print(env.reset(seed=0)[1]['problem_id'])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("synthetic-")


def test_reasoning_gym_does_not_import_torch_or_transformers():
    code = "import sys, reasoning_gym, gymnasium as gym; gym.make('ReasoningMath-v0').reset(seed=0); print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_observation_never_contains_the_oracle_answer():
    env = ReasoningMathEnv(split="test", size=50)
    problem = Problem("p", "What is 17 plus 25?", "424242")
    obs, info = env.reset(options={"problem": problem})
    assert "424242" not in obs and "answer" not in {k for k, v in info.items() if v == "424242"}
    assert obs == "Problem: What is 17 plus 25?\nSolution:\n"


def test_replaying_every_synthetic_test_reference_yields_reward_one():
    env = ReasoningMathEnv(split="test", size=300, difficulty="mixed")
    for index in range(len(env.problems)):
        env.reset(options={"index": index})
        reward, terminated, truncated, info = play(env, env.problems[index].steps)
        assert (reward, terminated, truncated) == (1.0, True, False), env.problems[index]
        assert info["correct"] is True and info["answer"] == env.problems[index].answer


def test_replaying_every_shared_gsm8k_reference_yields_reward_one(shared_data):
    env = ReasoningMathEnv("gsm8k", path=shared_data / "gsm8k_train_sample.jsonl", max_step_chars=2000)
    assert len(env.problems) == 100
    for index, problem in enumerate(env.problems):
        env.reset(options={"index": index})
        reward, terminated, _, info = play(env, problem.steps)
        assert reward == 1.0 and terminated, (problem.id, info)


def test_wrong_final_answer_yields_zero_and_terminates():
    env = ReasoningMathEnv(split="test", size=10)
    env.reset(options={"index": 0})
    problem = env.problems[0]
    wrong = str(int(problem.answer) + 1)
    _, reward, terminated, truncated, info = env.step(f"The answer is {wrong}")
    assert (reward, terminated, truncated) == (0.0, True, False)
    assert info["correct"] is False and info["answer"] == wrong


def test_truncation_at_max_steps_and_at_max_solution_chars():
    env = ReasoningMathEnv(split="test", size=5, max_steps=3)
    env.reset(options={"index": 0})
    reward, terminated, truncated, info = play(env, ["1 + 1 = 2"] * 5)
    assert (reward, terminated, truncated) == (0.0, False, True) and len(info["steps"]) == 3
    env = ReasoningMathEnv(split="test", size=5, max_solution_chars=30)
    env.reset(options={"index": 0})
    _, _, truncated, info = play(env, ["x" * 20] * 5)
    assert truncated and len(info["steps"]) == 2
    with pytest.raises(ValueError, match="finished"):
        env.step("1 + 1 = 2")


@pytest.mark.parametrize("action", [None, 3, b"bytes", "", "   \n ", "Step 2:   "])
def test_invalid_actions_raise_and_leave_state_unchanged(action):
    env = ReasoningMathEnv(split="test", size=5)
    env.reset(options={"index": 0})
    env.step("2 + 2 = 4")
    before = env.get_state()
    with pytest.raises(ValueError):
        env.step(action)
    assert env.get_state() == before


def test_too_long_action_raises_with_the_limit_in_the_message():
    env = ReasoningMathEnv(split="test", size=5, max_step_chars=50)
    env.reset(options={"index": 0})
    with pytest.raises(ValueError, match="max_step_chars=50"):
        env.step("9" * 51)
    assert env.get_state().steps == ()


def test_unicode_and_newlines_inside_a_step():
    env = ReasoningMathEnv(split="test", size=5)
    obs, _ = env.reset(options={"index": 0})
    obs, _, _, _, info = env.step("Step 1: ½ of 10 — so\n5 × 2 = 10 🙂")
    assert info["steps"] == ("½ of 10 — so 5 × 2 = 10 🙂",)
    assert obs.endswith("Step 1: ½ of 10 — so 5 × 2 = 10 \ufffd\n")  # non-BMP shown as U+FFFD
    assert env.observation_space.contains(obs)


def test_get_state_set_state_round_trip_and_pure_transition():
    env = ReasoningMathEnv(split="test", size=5)
    env.reset(options={"index": 1})
    env.step("3 + 4 = 7")
    saved = env.get_state()
    assert hash(saved) == hash(ReasoningState(saved.problem, ("3 + 4 = 7",)))
    env.step("The answer is 7")
    env.set_state(saved)
    assert env.get_state() == saved
    obs, *_ = env.step("7 * 2 = 14")
    assert obs.endswith("Step 1: 3 + 4 = 7\nStep 2: 7 * 2 = 14\n")
    # apply_step is pure: branching twice from one state gives two children, parent untouched
    left = apply_step(saved, "1 + 1 = 2", env.limits)
    right = apply_step(saved, "2 + 2 = 4", env.limits)
    assert saved.steps == ("3 + 4 = 7",) and left.steps[-1] != right.steps[-1]
    with pytest.raises(TypeError):
        env.set_state(("not", "a", "state"))


def test_seeding_is_reproducible_and_index_iterates_the_split():
    first = [ReasoningMathEnv(split="test", size=50).reset(seed=s)[1]["problem_id"] for s in range(5)]
    second = [ReasoningMathEnv(split="test", size=50).reset(seed=s)[1]["problem_id"] for s in range(5)]
    assert first == second and len(set(first)) > 1
    env = ReasoningMathEnv(split="test", size=7)
    ids = [env.reset(options={"index": i})[1]["problem_id"] for i in range(len(env.problems))]
    assert ids == [p.id for p in env.problems]
    with pytest.raises(IndexError):
        env.reset(options={"index": 7})


def test_reset_option_errors_and_problem_mapping():
    env = ReasoningMathEnv(split="test", size=5)
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(options={"idx": 0})
    obs, info = env.reset(options={"problem": {"question": "What is 2+2?", "answer": "4"}})
    assert info["problem_id"] == "custom"
    _, reward, *_ = env.step("The answer is \\boxed{4}")
    assert reward == 1.0
    with pytest.raises(RuntimeError, match="reset"):
        ReasoningMathEnv(split="test", size=5).step("1 + 1 = 2")


def test_source_kwargs_reach_the_factory_and_bad_source_is_clear(shared_data):
    env = gym.make("ReasoningMath-v0", source="synthetic", difficulty="hard", split="validation", size=10)
    assert all(p.metadata["difficulty"] == "hard" for p in env.unwrapped.problems)
    env = gym.make("ReasoningMath-v0", source="gsm8k", path=str(shared_data / "gsm8k_train_sample.jsonl"))
    assert len(env.unwrapped.problems) == 100
    with pytest.raises(KeyError, match="available"):
        ReasoningMathEnv("nope")


def test_scibench_tolerance_applies_in_the_environment(shared_data):
    env = ReasoningMathEnv("scibench", path=shared_data / "scibench_calculus.jsonl")
    index = next(i for i, p in enumerate(env.problems) if float(p.answer) > 1)
    env.reset(options={"index": index})
    near = float(env.problems[index].answer) * 1.005
    _, reward, *_ = env.step(f"The answer is {near:.6g}")
    assert reward == 1.0


def test_limits_validate():
    with pytest.raises(ValueError, match="max_steps"):
        EpisodeLimits(max_steps=0)
    assert reasoning_gym.ENV_ID in gym.registry
    assert make_source("synthetic", split="test", size=3)[0].id.startswith("synthetic-easy-0-")

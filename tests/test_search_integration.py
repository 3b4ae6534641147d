"""Every search agent end to end on small random-initialised transformers models (no download)."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest
import torch

from agents.models.hf_policy import HFPolicy, HFPolicyConfig
from agents.models.hf_value import HFValueConfig, HFValueModel
from agents.models.tiny import TinyModelConfig, build_char_tokenizer, build_policy_model, build_value_model
from agents.search import AGENTS, Budget, SearchResult, Tree, make_agent, play_episode
from reasoning_gym import EpisodeLimits, ReasoningState, apply_step, make_source

SMALL = TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_positions=512)
MAX_NEW_TOKENS = 16
CONFIGS = {
    "cot": {"max_new_tokens": MAX_NEW_TOKENS},
    "self_consistency": {"max_new_tokens": MAX_NEW_TOKENS, "max_samples": 4, "samples_per_round": 2, "seed": 0},
    "best_of_n": {"max_new_tokens": MAX_NEW_TOKENS, "max_samples": 4, "samples_per_round": 2, "seed": 0},
    "beam": {"max_new_tokens": MAX_NEW_TOKENS, "beam_width": 2, "expansions": 2, "seed": 0},
    "mcts_star": {
        "max_new_tokens": MAX_NEW_TOKENS, "iterations": 3, "branch": 2, "roll_forward_steps": 1, "max_retries": 1, "seed": 0,
    },
}  # fmt: skip
LIMITS = EpisodeLimits(max_steps=4)


@pytest.fixture(scope="module")
def models():
    tokenizer = build_char_tokenizer()
    torch.manual_seed(0)
    policy_config = HFPolicyConfig(prompt_format="plain")
    policy = HFPolicy(build_policy_model(SMALL, tokenizer), tokenizer, policy_config)
    value = HFValueModel(build_value_model(SMALL, tokenizer), tokenizer, HFValueConfig(batch_size=16))
    return policy, value


@pytest.fixture(scope="module")
def problems():
    return list(make_source("synthetic", split="test", size=2))


def replays(trace: ReasoningState) -> bool:
    state = ReasoningState(trace.problem)
    for step in trace.steps:
        state = apply_step(state, step, LIMITS)
    return state == trace


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_agent_solves_a_batch_within_budget(name, models, problems):
    policy, value = models
    budget = Budget(completion_tokens=150)
    results = make_agent(name, policy, value, CONFIGS[name]).solve(problems, budget, LIMITS)
    assert len(results) == len(problems)
    for problem, result in zip(problems, results):
        assert isinstance(result, SearchResult) and result.trace.problem == problem
        assert result.answer == result.trace.answer
        assert budget.fits(result.usage) and result.usage.policy_calls >= 1
        assert len(result.scores) == len(result.traces) and all(replays(t) for t in [result.trace, *result.traces])
        assert result.stop_reason in {"done", "budget", "solved", "exhausted", "iterations"}
    if name == "mcts_star":
        tree = results[0].tree
        assert isinstance(tree, Tree) and len(json.loads(tree.to_json())["nodes"]) == len(tree) > 1


def test_mcts_star_stops_at_a_tight_budget(models, problems):
    policy, value = models
    results = make_agent("mcts_star", policy, value, CONFIGS["mcts_star"]).solve(problems, Budget(completion_tokens=40))
    for result in results:
        # an expansion costs at most 2 x 16 tokens, a roll-forward step 16
        assert result.stop_reason == "budget"
        assert 0 < result.usage.policy_completion_tokens <= 40 < result.usage.policy_completion_tokens + 16


def test_play_episode_in_the_registered_env(models):
    policy, value = models
    env = gym.make("ReasoningMath-v0", split="test", size=2, max_steps=4)
    env.reset(seed=0)
    reward, info = play_episode(make_agent("mcts_star", policy, value, CONFIGS["mcts_star"]), env, Budget(100))
    result = info["search_result"]
    assert reward in (0.0, 1.0) and budget_fits(result)
    assert info["steps"] == result.trace.steps


def budget_fits(result: SearchResult) -> bool:
    return Budget(100).fits(result.usage)

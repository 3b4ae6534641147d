"""The equal-budget comparison (`agents.compare`) on tiny random-initialised models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from agents.compare import (
    CompareConfig,
    ProblemsConfig,
    confidence_interval,
    format_table,
    load_config,
    run_comparison,
    scaled_options,
    token_caps,
    write_outputs,
)
from agents.config import ConfigError, from_dict
from agents.models.hf_policy import HFPolicy, HFPolicyConfig
from agents.models.hf_value import HFValueModel
from agents.models.tiny import TinyModelConfig, build_char_tokenizer, build_policy_model, build_value_model
from reasoning_gym import EpisodeLimits
from tests.conftest import REPO_ROOT

SMALL = TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_positions=512)
AGENTS = {
    "cot": {"max_new_tokens": 12},
    "self_consistency": {"max_new_tokens": 12, "samples_per_round": 1},
    "best_of_n": {"max_new_tokens": 12, "samples_per_round": 2},
    "beam": {"max_new_tokens": 6, "beam_width": 1, "expansions": 2},
    "mcts_star": {"max_new_tokens": 6, "branch": 2, "roll_forward_steps": 1, "max_retries": 0},
}


@pytest.fixture(scope="module")
def models():
    tokenizer = build_char_tokenizer()
    torch.manual_seed(0)
    policy = HFPolicy(build_policy_model(SMALL, tokenizer), tokenizer, HFPolicyConfig(prompt_format="plain"))
    return policy, HFValueModel(build_value_model(SMALL, tokenizer), tokenizer)


def small_config(**changes) -> CompareConfig:
    settings = dict(
        problems=ProblemsConfig(size=2),
        seeds=(0, 1),
        budget_multipliers=(1, 3),
        agents=AGENTS,
        batch_size=2,
        limits=EpisodeLimits(max_steps=4),
        ci_resamples=200,
    )
    return CompareConfig(**{**settings, **changes})


@pytest.mark.parametrize("name", ["compare.yaml", "compare_smoke.yaml"])
def test_shipped_configs_load(name):
    config = load_config(REPO_ROOT / "configs" / name)
    assert set(config.agents) == {"cot", "self_consistency", "best_of_n", "beam", "mcts_star"}
    assert all(m > 0 for m in config.budget_multipliers)


def test_default_config_matches_the_issue():
    config = CompareConfig()
    assert config.problems.size >= 200 and config.problems.split == "test" and len(config.seeds) >= 3
    assert tuple(config.budget_multipliers) == (1, 2, 4, 8, 16)


@pytest.mark.parametrize(
    "data, key",
    [
        ({"seedz": [0]}, "seedz"),
        ({"problems": {"sise": 3}}, "sise"),
        ({"agents": {"mcts_star": {"iterationz": 3}}}, "iterationz"),
        ({"agents": {"alphazero": {}}}, "alphazero"),
        ({"limits": {"max_stepz": 3}}, "max_stepz"),
    ],
)
def test_a_wrong_key_is_an_error_naming_it(data, key):
    with pytest.raises(ConfigError, match=key):
        from_dict(CompareConfig, data, where="compare.yaml")


def test_scaled_options_make_the_budget_binding():
    sc = scaled_options("self_consistency", {"max_new_tokens": 128, "max_samples": 4}, 100, 2, seed=7, binding=True)
    assert sc["max_samples"] >= 100 and sc["max_new_tokens"] == 100 and sc["seed"] == 7
    mcts = scaled_options("mcts_star", {"iterations": 5}, 400, 4, seed=1, binding=True)
    assert mcts["iterations"] == 400
    beam = scaled_options("beam", {"beam_width": 1, "expansions": 2}, 800, 8, seed=1, binding=True)
    assert beam["beam_width"] == 4
    as_written = scaled_options("mcts_star", {"iterations": 5}, 400, 4, seed=1, binding=False)
    assert as_written["iterations"] == 5 and as_written["seed"] == 1
    few = scaled_options("best_of_n", {"max_new_tokens": 50, "samples_per_round": 4}, 120, 1, seed=0, binding=True)
    assert few["samples_per_round"] == 2  # the first round must fit the budget


def test_token_caps_follow_what_cot_writes():
    caps = token_caps(cot_tokens=40.0, cot_steps=4.0, factor=2.0)
    assert caps == {"solution": 80, "step": 20}
    assert token_caps(40.0, 4.0, None) is None
    sc = scaled_options("self_consistency", {"max_new_tokens": 320}, 1000, 8, seed=0, binding=True, caps=caps)
    mcts = scaled_options("mcts_star", {"max_new_tokens": 48}, 1000, 8, seed=0, binding=True, caps=caps)
    beam = scaled_options("beam", {"max_new_tokens": 12}, 1000, 8, seed=0, binding=True, caps=caps)
    assert (sc["max_new_tokens"], mcts["max_new_tokens"], beam["max_new_tokens"]) == (80, 20, 12)


def test_confidence_intervals_contain_the_mean():
    rng = np.random.default_rng(0)
    for correct in (np.zeros((5, 2)), np.ones((5, 3)), rng.integers(0, 2, size=(40, 3)), np.array([[1], [0]])):
        for method in ("bootstrap", "wilson"):
            mean, low, high = confidence_interval(correct, method, resamples=300)
            assert 0.0 <= low <= mean <= high <= 1.0
    mean, low, high = confidence_interval(np.array([1] * 50 + [0] * 50), "wilson")
    assert mean == 0.5 and low == pytest.approx(0.4038, abs=1e-3) and high == pytest.approx(0.5962, abs=1e-3)


def test_run_comparison_respects_every_budget_and_writes_outputs(models, tmp_path):
    policy, value = models
    config = small_config()
    result = run_comparison(config, policy, value, progress=False)
    assert {"config", "problems", "models", "cot_cost", "budgets", "runs", "aggregates", "ci"} <= set(result)
    assert result["problems"]["count"] == 2 and result["cot_cost"] > 0
    searchers = len(AGENTS) - 1
    assert len(result["runs"]) == 1 + searchers * len(config.budget_multipliers) * len(config.seeds)
    budgets = {b["multiplier"]: b["completion_tokens"] for b in result["budgets"]}
    assert budgets == {1: round(result["cot_cost"]), 3: round(3 * result["cot_cost"])}
    for run in result["runs"]:
        assert len(run["correct"]) == 2 and run["accuracy"] == pytest.approx(np.mean(run["correct"]))
        assert run["flops"] > 0 and run["wall_seconds"] >= 0 and run["policy_calls"] >= 1
        if run["agent"] == "cot":
            assert run["budget_tokens"] is None and run["completion_tokens"] == result["cot_cost"]
        else:  # every problem's usage fits its budget
            assert run["max_completion_tokens"] <= run["budget_tokens"] == budgets[run["multiplier"]]
        if run["agent"] in ("best_of_n", "beam", "mcts_star"):
            assert run["prm_tokens"] > 0
    caps = result["token_caps"]
    for run in result["runs"][1:]:
        kind = "solution" if run["agent"] in ("self_consistency", "best_of_n") else "step"
        assert run["options"]["max_new_tokens"] <= caps[kind] and run["options"]["seed"] == run["seed"]
    rows = {(row["agent"], row["multiplier"]): row for row in result["aggregates"]}
    assert set(rows) == {("cot", 1)} | {(a, m) for a in AGENTS if a != "cot" for m in (1, 3)}
    for row in rows.values():
        assert 0.0 <= row["ci_low"] <= row["accuracy"] <= row["ci_high"] <= 1.0
    assert rows[("mcts_star", 3)]["seeds"] == [0, 1]

    table = format_table(result)
    assert all(agent in table for agent in AGENTS) and "95% CI" in table
    paths = write_outputs(result, tmp_path / "out" / "search_vs_budget.json")
    assert [p.name for p in paths] == ["search_vs_budget.json", "search_vs_budget.png", "search_vs_budget_flops.png"]
    assert json.loads(paths[0].read_text())["cot_cost"] == result["cot_cost"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths[1:])


class _Crashing:
    """The policy, failing from its `fail_at`-th call on (a server down past its retries)."""

    def __init__(self, policy, fail_at: int) -> None:
        self.policy, self.fail_at, self.calls = policy, fail_at, 0
        self.num_parameters = policy.num_parameters

    def _call(self, method, *args, **kwargs):
        self.calls += 1
        if self.calls >= self.fail_at:
            raise ConnectionError("policy server down")
        return getattr(self.policy, method)(*args, **kwargs)

    def propose_steps(self, *args, **kwargs):
        return self._call("propose_steps", *args, **kwargs)

    def sample_solutions(self, *args):
        return self._call("sample_solutions", *args)

    def clear_cache(self) -> None:
        self.policy.clear_cache()  # each run starts with no prompt cached, as with the bare policy


def _comparable(result):
    return [{k: v for k, v in run.items() if not k.startswith("wall")} for run in result["runs"]]


def test_a_crashed_comparison_resumes_from_its_journal(models, tmp_path):
    from agents.journal import JournalMismatch

    policy, value = models
    config = small_config(agents={k: AGENTS[k] for k in ("cot", "self_consistency", "mcts_star")})
    full = _Crashing(policy, fail_at=10**9)
    reference = run_comparison(config, full, value, progress=False)
    journal = tmp_path / "search_vs_budget.partial.jsonl"
    crashing = _Crashing(policy, fail_at=full.calls // 2)
    with pytest.raises(ConnectionError):
        run_comparison(config, crashing, value, progress=False, journal=journal)
    recorded = len(journal.read_text().splitlines()) - 1  # the first line is the fingerprint
    assert 1 <= recorded < len(reference["runs"])
    with journal.open("a") as handle:
        handle.write('{"key": "torn')  # a crash in the middle of a write
    resumed_policy = _Crashing(policy, fail_at=10**9)
    resumed = run_comparison(config, resumed_policy, value, progress=False, journal=journal)
    assert _comparable(resumed) == _comparable(reference)  # the same seeds give the same runs
    assert resumed_policy.calls < full.calls  # the recorded runs were not run again
    untouched = _Crashing(policy, fail_at=1)  # every run is recorded now: no model call at all
    assert _comparable(run_comparison(config, untouched, value, progress=False, journal=journal)) == _comparable(reference)
    with pytest.raises(JournalMismatch, match="partial.jsonl"):
        run_comparison(small_config(seeds=(5,)), policy, value, progress=False, journal=journal)

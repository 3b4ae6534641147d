"""The bootstrap of pi_0 and V_0 on a reduced size: caching, manifests, atomic builds."""

from __future__ import annotations

import json
import re

import pytest

from agents.artifacts import is_complete
from agents.models.base import GREEDY
from agents.models.tiny import TinyModelConfig
from agents.training import bootstrap as bootstrap_module
from agents.training.bootstrap import BootstrapConfig, bootstrap, cached_result
from agents.training.bootstrap_data import corrupt_step, policy_dataset, value_dataset, value_samples
from agents.training.policy_sft import SFTSettings
from agents.training.value_targets import correct_path_values, quality_value, wrong_step_value
from agents.training.value_training import ValueSettings
from reasoning_gym import ReasoningState, extract_answer, make_source

TINY = BootstrapConfig(
    train_problems=64,
    model=TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_positions=512),
    policy=SFTSettings(max_steps=4, batch_size=8, logging_steps=2),
    value=ValueSettings(max_steps=4, batch_size=8, logging_steps=2),
)


def test_value_formula_matches_the_paper():
    assert correct_path_values(4) == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert wrong_step_value(0.5, 2) == pytest.approx(0.25)  # v - (1 - v) / m
    assert wrong_step_value(0.75, 1) == pytest.approx(0.5)
    assert wrong_step_value(0.0, 3) == 0.0  # clamped at zero
    assert quality_value(0.2, 0, wrong=False) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        wrong_step_value(1.0, 0)


def test_value_samples_label_prefixes_and_corruptions():
    problem = make_source("synthetic", split="train", size=5, difficulty="medium")[2]
    samples = value_samples(problem, __import__("random").Random(0))
    total = len(problem.steps)
    assert [t for _, t in samples[:total]] == pytest.approx(correct_path_values(total))
    assert samples[total - 1][0].endswith(f"The answer is {problem.answer}\n")
    for text, target in samples[total:]:  # corrupted: below the parent's value, never the right answer
        assert target < 1.0
        last = text.rstrip("\n").rsplit("\n", 1)[-1]
        assert extract_answer(last) != problem.answer
        assert last.split(": ", 1)[1] not in problem.steps


def test_corrupt_step_changes_the_result():
    import random

    rng = random.Random(1)
    for _ in range(200):
        wrong = corrupt_step("12 + 30 = 42", rng, [5, 7, 12, 30])
        a, op, b, _, c = wrong.split()
        assert wrong != "12 + 30 = 42" and int(c) >= 0
        assert op in "+-*" and re.fullmatch(r"\d+", a) and re.fullmatch(r"\d+", b)


def test_datasets_have_documented_columns():
    problems = make_source("synthetic", split="train", size=20).problems
    policy_data = policy_dataset(problems, "</s>", drill_fraction=0.2, seed=0)
    assert policy_data.column_names == ["text"] and len(policy_data) == 25
    assert all(t.startswith("Problem: ") and t.endswith("</s>") for t in policy_data["text"])
    value_data = value_dataset(problems, seed=0)
    assert value_data.column_names == ["text", "target"]
    assert all(0.0 <= t <= 1.0 for t in value_data["target"])


def test_bootstrap_builds_caches_and_loads(tmp_path):
    result = bootstrap(TINY, home=tmp_path, show_progress=False)
    assert is_complete(result.policy_dir) and is_complete(result.value_dir)
    manifest = json.loads((result.policy_dir / "manifest.json").read_text())
    assert manifest["config"]["policy"]["max_steps"] == 4 and "transformers" in manifest["versions"]
    assert manifest["parameters"] > 0
    assert cached_result(TINY, home=tmp_path).policy_dir == result.policy_dir

    policy, value = result.load()
    state = ReasoningState(make_source("synthetic", split="test", size=1)[0])
    assert len(policy.propose_steps([state], 1, GREEDY).texts[0]) == 1
    assert 0.0 <= value.score([state]).values[0] <= 1.0

    stamp = (result.policy_dir / "manifest.json").stat().st_mtime_ns
    again = bootstrap(TINY, home=tmp_path, show_progress=False)  # reused, not rebuilt
    assert again.policy_dir == result.policy_dir
    assert (again.policy_dir / "manifest.json").stat().st_mtime_ns == stamp

    changed = BootstrapConfig(**{**TINY.__dict__, "value": ValueSettings(max_steps=5, batch_size=8)})
    rebuilt = bootstrap(changed, home=tmp_path, show_progress=False)
    assert rebuilt.policy_dir == result.policy_dir and rebuilt.value_dir != result.value_dir


def test_interrupted_build_leaves_nothing_that_loads(tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise KeyboardInterrupt("simulated kill during PRM training")

    monkeypatch.setattr(bootstrap_module, "train_value_model", crash)
    with pytest.raises(KeyboardInterrupt):
        bootstrap(TINY, home=tmp_path, show_progress=False)
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert len(leftovers) == 1 and leftovers[0].startswith("policy-")  # the finished policy only
    assert cached_result(TINY, home=tmp_path) is None

"""benchmarks/ppo_choice.py end to end on tiny random models: PPO trains, every chooser plays the same problems."""

from __future__ import annotations

import json

from tests.conftest import load_benchmark


def test_ppo_choice_smoke(tmp_path, capsys, monkeypatch):
    module = load_benchmark("ppo_choice", monkeypatch)
    out = tmp_path / "ppo.json"
    argv = ["--tiny-random", "--timesteps", "16", "--train-problems", "4", "--problems", "3", "--no-progress",
            "--checkpoints", str(tmp_path / "seeds"), "--out", str(out)]  # fmt: skip
    assert module.main([*argv, "--seeds", "1"]) == 0
    assert len(list((tmp_path / "seeds").glob("seed1-*.json"))) == 1
    alone = json.loads(out.read_text())
    assert module.main([*argv, "--seeds", "0", "1"]) == 0  # seed 1 is reused, seed 0 runs
    printed = capsys.readouterr().out
    assert "seed 1: reusing" in printed and "seed 0: reusing" not in printed and "| ppo |" in printed
    result = json.loads(out.read_text())
    assert result["runs"]["ppo"]["1"] == alone["runs"]["ppo"]["1"]
    assert [run["timesteps"] for run in result["training"]] == [16, 16]
    assert [row["chooser"] for row in result["aggregates"]] == ["random", "prm_greedy", "ppo", "oracle"]
    for row in result["aggregates"]:
        assert 0 <= row["ci_low"] <= row["accuracy"] <= row["ci_high"] <= 1
        assert set(row["accuracy_by_seed"]) == {"0", "1"} and row["completion_tokens_per_problem"] > 0
    for name, by_seed in result["runs"].items():
        for seed, run in by_seed.items():
            assert [r["problem_id"] for r in run["rows"]] == result["problems"]["ids"], (name, seed)
    ppo = next(row for row in result["aggregates"] if row["chooser"] == "ppo")
    assert 0 <= ppo["greedy_agreement"] <= 1

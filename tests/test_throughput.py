"""benchmarks/throughput.py end to end on tiny random models: every measurement runs and is written."""

from __future__ import annotations

import json
import math

from tests.conftest import load_benchmark


def test_throughput_smoke(tmp_path, model_dirs, capsys, monkeypatch):
    module = load_benchmark("throughput", monkeypatch)
    policy, value = model_dirs
    out = tmp_path / "throughput.json"
    argv = ["--policy", policy, "--value", value, "--device", "cpu", "--problems", "3", "--cot-problems", "3", "--trees", "1", "3",
            "--seeds", "0", "--ceiling-seconds", "0", "--iterations", "2", "3", "--sweep-trees", "2", "--out", str(out)]  # fmt: skip
    assert module.main(argv) == 0
    result = json.loads(out.read_text())
    assert out.with_suffix(".png").stat().st_size > 0
    assert result["settings"]["seeds"] == [0] and result["settings"]["problems"] == 3
    modes = [(row["trees"], row["schedule"], row["reuse"]) for row in result["search"]]
    assert modes == [(1, "lockstep", False), (1, "lockstep", True),
                     (3, "lockstep", False), (3, "lockstep", True), (3, "refill", True)]  # fmt: skip
    for row in result["search"]:
        assert row["problems"] == 3 and row["problems_per_second"] > 0
        assert row["ceiling"]["batch_states"] == row["trees"] and row["ceiling"]["tokens_per_second"] > 0
        assert 0 <= row["outside_share"] <= 1 and row["policy_seconds"] > 0
        assert row["total_tokens_per_problem"] >= row["completion_tokens_per_problem"] > 0
        assert (row["reused_tokens_per_problem"] > 0) == row["reuse"]
    assert result["search"][0]["speedup"] == result["search"][1]["speedup"] == 1.0
    plain, reused = result["search"][2], result["search"][3]  # the same search, prompts read whole or not
    assert reused["total_tokens_per_problem"] < plain["total_tokens_per_problem"]
    assert result["goals"]["reuse_cut"]["by_trees"]["3"] > 1
    assert [row["iterations"] for row in result["tree_size"]] == [2, 3]
    for row in result["tree_size"]:
        assert row["nodes_per_tree"] >= 1 and row["python_peak_mb"] >= 0 and math.isfinite(row["seconds_per_iteration"])
    assert result["max_rss_mb"] > 0 and set(result["goals"]) >= {"speedup", "ceiling_share", "outside_share", "reuse_cut"}
    table = capsys.readouterr().out
    assert "| trees | mode | ceiling tok/s |" in table and "Goals (issue 13):" in table


def test_seed_means_keep_time_shares(monkeypatch):
    module = load_benchmark("throughput", monkeypatch)
    rows = [
        {"seed": 0, "schedule": "refill", "reuse": True, "wall_seconds": 10.0, "policy_seconds": 8.0, "accuracy": 0.5,
         "stop_reasons": {"solved": 2}, "rss_peak_mb": 5.0},
        {"seed": 1, "schedule": "refill", "reuse": True, "wall_seconds": 20.0, "policy_seconds": 16.0, "accuracy": 0.7,
         "stop_reasons": {"solved": 1, "budget": 1}, "rss_peak_mb": 6.0},
    ]  # fmt: skip
    out = module.mean_over_seeds(rows)
    assert out["wall_seconds"] == 15.0 and out["policy_seconds"] / out["wall_seconds"] == 0.8
    assert out["seeds"] == [0, 1] and out["accuracy_per_seed"] == [0.5, 0.7]
    assert out["stop_reasons"] == {"solved": 3, "budget": 1} and out["rss_peak_mb"] == 6.0
    assert (out["schedule"], out["reuse"]) == ("refill", True)

"""benchmarks/bootstrap_report.py end to end on a tiny planning bootstrap built in a temporary home."""

from __future__ import annotations

import json

import yaml

from tests.conftest import load_benchmark

TINY = {
    "seed": 0,
    "source": "countdown",
    "difficulty": "easy",
    "train_problems": 40,
    "planning": {"solutions": 2, "value_problems": 4, "value_samples": 2, "max_new_tokens": 40},
    "model": {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64, "max_positions": 256},
    "policy": {"max_steps": 4, "batch_size": 8, "logging_steps": 100, "max_length": 128},
    "value": {"max_steps": 4, "batch_size": 8, "logging_steps": 100, "max_length": 128},
}


def test_bootstrap_report_measures_first_move_boards(tmp_path, monkeypatch):
    monkeypatch.setenv("REST_MCTS_HOME", str(tmp_path / "home"))
    module = load_benchmark("bootstrap_report", monkeypatch)
    config = tmp_path / "bootstrap.yaml"
    config.write_text(yaml.safe_dump(TINY), encoding="utf-8")
    out = tmp_path / "report.json"
    assert module.main(["--config", str(config), "--seeds", "0", "--problems", "6", "--out", str(out)]) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["levels"]["easy"]["k"] == 16 and 0 <= row["levels"]["easy"]["greedy"] <= 1
    boards = row["first_move_boards"]
    assert boards["states"]["train"] > 0 and boards["states"]["held_out"] > 0
    assert boards["states"]["seen"] + boards["states"]["unseen"] == boards["states"]["held_out"]
    for name in ("train", "held_out", "seen", "unseen"):
        assert boards[name] is None or 0 <= boards[name] <= 1
    assert out.with_suffix(".png").stat().st_size > 0
    assert (tmp_path / "home").is_dir()  # the models were built in the test's home, not the user's cache

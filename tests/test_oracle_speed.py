"""benchmarks/oracle_speed.py: random legal states of each level, each labelled by the exact oracle."""

from __future__ import annotations

import json

from reasoning_gym import get_task
from reasoning_gym.tasks.countdown import puzzle_of
from tests.conftest import load_benchmark


def test_random_states_are_legal_and_reach_at_most_the_answer(monkeypatch):
    module = load_benchmark("oracle_speed", monkeypatch)
    states = module.random_states(module.level_puzzles("basic", puzzles=5, seed=1), per_puzzle=6, seed=1)
    task = get_task("countdown")
    assert len(states) == 30 and {len(state.steps) for state in states} == {0, 1, 2, 3}
    for state in states:  # the third move of four numbers states the answer
        assert task.illegal(state.problem, state.steps) is None and len(puzzle_of(state.problem).numbers) == 4
        assert (state.answer is not None) == (len(state.steps) == 3)


def test_oracle_speed_labels_every_drawn_state_of_each_level(tmp_path, monkeypatch, capsys):
    module = load_benchmark("oracle_speed", monkeypatch)
    out = tmp_path / "speed.json"
    argv = ["--levels", "easy", "game24", "--puzzles", "6", "--per-puzzle", "4", "--out", str(out)]
    assert module.main(argv) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(row["level"], row["numbers"], row["puzzles"], row["states"]) for row in rows] == [("easy", 3, 6, 24), ("game24", 4, 6, 24)]
    for row in rows:  # a puzzle's own board is solvable, so some states are
        assert 0 < row["solvable_share"] <= 1 and row["cold_states_per_s"] > 0 and row["warm_states_per_s"] > 0
    assert "| easy | 3 | 6 |" in capsys.readouterr().out

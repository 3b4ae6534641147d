"""benchmarks/value_quality.py end to end on tiny random models: every value model is charted beside both bars."""

from __future__ import annotations

import json

import yaml

from tests.conftest import REPO_ROOT, load_benchmark


def test_value_quality_smoke(tmp_path, model_dirs, monkeypatch):
    module = load_benchmark("value_quality", monkeypatch)
    policy, value = model_dirs
    config = yaml.safe_load((REPO_ROOT / "configs" / "countdown" / "compare.yaml").read_text(encoding="utf-8"))
    config["problems"]["size"] = 3
    config["seeds"] = [0]
    config["models"].update(policy=policy, value=value, bootstrap=str(REPO_ROOT / "configs/countdown/bootstrap.yaml"))
    path = tmp_path / "compare.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    out = tmp_path / "quality.json"
    argv = ["--config", str(path), "--noise", "0", "0.5", "--quality-problems", "2", "--widen-by-value", "--no-progress",
            "--out", str(out)]  # fmt: skip
    assert module.main(argv) == 0
    result = json.loads(out.read_text())
    assert result["widen_by_value"] is True and result["problems"] == 3 and result["seeds"] == [0]
    assert [row["value"] for row in result["rows"]] == ["noisy oracle sd 0", "noisy oracle sd 0.5", "V_0 (learned)"]
    for row in result["rows"]:  # random models write no legal state: AUROC has one class and is n/a
        assert row["auroc"] is None
        assert 0 <= row["mcts_ci"][0] <= row["mcts_accuracy"] <= row["mcts_ci"][1] <= 1
    for bar in ("self_consistency", "best_of_n"):
        assert 0 <= result[bar]["ci_low"] <= result[bar]["accuracy"] <= result[bar]["ci_high"] <= 1
    assert out.with_suffix(".png").stat().st_size > 0

"""The ``rest-mcts`` CLI: ``solve`` and ``compare`` on tiny random-initialised models saved to disk."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
import yaml

from agents.cli import main
from agents.models.tiny import TinyModelConfig, build_char_tokenizer, build_policy_model, build_value_model
from tests.conftest import REPO_ROOT

SMALL = TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_positions=512)
MCTS = {"max_new_tokens": 6, "branch": 2, "roll_forward_steps": 1, "max_retries": 0, "iterations": 4, "seed": 0}


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    tokenizer = build_char_tokenizer()
    torch.manual_seed(0)
    for name, build in (("policy", build_policy_model), ("value", build_value_model)):
        build(SMALL, tokenizer).save_pretrained(folder / name)
        tokenizer.save_pretrained(folder / name)
    return str(folder / "policy"), str(folder / "value")


def write_yaml(path, data) -> str:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return str(path)


def test_solve_a_question_prints_answer_trace_usage_and_tree(model_dirs, tmp_path, capsys):
    policy, value = model_dirs
    config = write_yaml(tmp_path / "mcts.yaml", MCTS)
    tree_file = tmp_path / "tree.json"
    code = main([
        "solve", "Tom has 3 apples and buys 4 more. How many apples does Tom have?", "--answer", "7",
        "--policy", policy, "--value", value, "--config", config, "--budget-tokens", "40",
        "--max-steps", "4", "--tree-json", str(tree_file),
    ])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "\nanswer: " in out and "(oracle 7: " in out
    trace = out.split("trace:\n", 1)[1].split("usage:", 1)[0].splitlines()
    assert trace and all(line.startswith("  Step ") for line in trace)
    assert "usage: " in out and "FLOPs" in out
    assert "tree: " in out and "nodes" in out and "top " in out
    nodes = json.loads(tree_file.read_text())["nodes"]
    assert len(nodes) > 1 and nodes[0]["parent"] == -1


def test_solve_a_synthetic_problem_with_beam_search(model_dirs, capsys):
    policy, value = model_dirs
    code = main([
        "solve", "--source", "synthetic", "--split", "test", "--index", "1", "--agent", "beam",
        "--policy", policy, "--value", value, "--max-steps", "3", "--seed", "0",
    ])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "problem: synthetic-basic-0-" in out and "answer: " in out and "beams: " in out
    assert "  Step 1: " in out and "usage: " in out


def test_solve_rejects_a_wrong_config_key(tmp_path, capsys):
    config = write_yaml(tmp_path / "bad.yaml", {"branch": 2, "brnach": 3})
    code = main(["solve", "What is 1 + 1?", "--config", config])
    err = capsys.readouterr().err
    assert code == 2 and "brnach" in err and "bad.yaml" in err


def test_solve_rejects_a_bad_problem_choice(capsys):
    assert main(["solve"]) == 2
    assert main(["solve", "--source", "gsm8k", "--index", "0"]) == 2  # no --path
    assert main(["solve", "Q?", "--agent", "beam", "--tree-json", "t.json"]) == 2
    assert "--path" in capsys.readouterr().err


def test_compare_prints_the_table_and_writes_json_and_plots(model_dirs, tmp_path, capsys):
    policy, value = model_dirs
    config = write_yaml(tmp_path / "compare.yaml", {
        "problems": {"size": 2},
        "seeds": [0],
        "budget_multipliers": [1, 2],
        "batch_size": 2,
        "limits": {"max_steps": 3},
        "ci_resamples": 100,
        "models": {"policy": policy, "value": value},
        "agents": {"cot": {"max_new_tokens": 8}, "self_consistency": {"max_new_tokens": 8},
                   "mcts_star": {k: v for k, v in MCTS.items() if k != "seed"}},
    })  # fmt: skip
    out_file = tmp_path / "results" / "search_vs_budget.json"
    assert main(["compare", "--config", config, "--out", str(out_file), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "| agent | budget |" in out and "| mcts_star | 2x |" in out and "| cot | 1x | uncapped |" in out
    result = json.loads(out_file.read_text())
    assert len(result["runs"]) == 1 + 2 * 2 and result["models"]["policy"] == policy
    for name in ("search_vs_budget.png", "search_vs_budget_flops.png"):
        assert (out_file.parent / name).stat().st_size > 0


@pytest.mark.parametrize(
    "data, key", [({"problemz": {}}, "problemz"), ({"agents": {"beam": {"widthh": 2}}}, "widthh")]
)
def test_compare_rejects_a_wrong_config_key(tmp_path, capsys, data, key):
    config = write_yaml(tmp_path / "bad.yaml", data)
    assert main(["compare", "--config", config]) == 2
    err = capsys.readouterr().err
    assert key in err and "bad.yaml" in err and err.startswith("rest-mcts: error:")


def test_benchmark_script_rejects_a_wrong_config_key(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("search_vs_budget", REPO_ROOT / "benchmarks" / "search_vs_budget.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = write_yaml(tmp_path / "bad.yaml", {"seeds": [0], "budget_multiplierz": [1]})
    assert module.main(["--config", config, "--out", str(tmp_path / "x.json")]) == 2
    assert "budget_multiplierz" in capsys.readouterr().err


def test_demo_bootstraps_compares_and_self_trains_then_reuses_everything(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REST_MCTS_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    tiny = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64, "max_positions": 512}
    boot = write_yaml(tmp_path / "boot.yaml", {
        "train_problems": 32, "model": {**tiny, "tokenizer": "char"},
        "policy": {"max_steps": 3, "batch_size": 8}, "value": {"max_steps": 3, "batch_size": 8},
    })  # fmt: skip
    compare = write_yaml(tmp_path / "compare.yaml", {
        "problems": {"size": 2}, "seeds": [0], "budget_multipliers": [1], "batch_size": 2, "ci_resamples": 50,
        "limits": {"max_steps": 2}, "agents": {"cot": {"max_new_tokens": 8}},
    })  # fmt: skip
    self_train = write_yaml(tmp_path / "self_train.yaml", {
        "run_dir": "runs/demo", "iterations": 1, "show_progress": False,
        "train_problems": {"size": 2, "seed": 1},
        "search": {"mcts": MCTS, "budget": {"completion_tokens": 60}, "limits": {"max_steps": 2}},
        "policy": {"sft": {"max_steps": 2, "batch_size": 2}}, "value": {"settings": {"max_steps": 2, "batch_size": 4}},
        "eval": {"problems": {"size": 2}, "greedy_max_new_tokens": 8, "mcts": MCTS, "budget": {"completion_tokens": 30},
                 "limits": {"max_steps": 2}},
    })  # fmt: skip
    argv = ["demo", "--config", boot, "--problems", "2", "--compare-config", compare,
            "--out", str(tmp_path / "demo" / "table.json"), "--self-train-config", self_train]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert '"greedy"' in out and "| cot | 1x |" in out and "Self-training (ReST-MCTS*)" in out
    records = sorted((tmp_path / "runs" / "demo").glob("policy-*/iteration_*/record.json"))
    assert [path.parent.name for path in records] == ["iteration_0", "iteration_1"]
    assert len(list((tmp_path / "home").glob("policy-*"))) == 1  # compare used the demo's bootstrap, not the default
    marker = records[1].parent / "stages" / "search.json"
    stamps = [path.stat().st_mtime_ns for path in (marker, *(tmp_path / "home").glob("*/manifest.json"))]
    assert main(argv) == 0  # the second run reuses the models and the finished self-training run
    assert [path.stat().st_mtime_ns for path in (marker, *(tmp_path / "home").glob("*/manifest.json"))] == stamps
    assert "Self-training (ReST-MCTS*)" in capsys.readouterr().out

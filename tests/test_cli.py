"""The ``rest-mcts`` CLI: ``solve`` and ``compare`` on tiny random-initialised models saved to disk."""

from __future__ import annotations

import json
import logging
import shutil
import warnings

import pytest
import yaml

from agents.cli import main
from tests.conftest import load_benchmark

MCTS = {"max_new_tokens": 6, "branch": 2, "roll_forward_steps": 1, "max_retries": 0, "iterations": 4, "seed": 0}


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


def test_benchmark_script_rejects_a_wrong_config_key(tmp_path, capsys, monkeypatch):
    module = load_benchmark("search_vs_budget", monkeypatch)
    config = write_yaml(tmp_path / "bad.yaml", {"seeds": [0], "budget_multiplierz": [1]})
    assert module.main(["--config", config, "--out", str(tmp_path / "x.json")]) == 2
    assert "budget_multiplierz" in capsys.readouterr().err


def test_benchmark_script_reads_the_bootstrap_override(tmp_path, capsys, monkeypatch):
    module = load_benchmark("search_vs_budget", monkeypatch)
    config = write_yaml(tmp_path / "compare.yaml", {"seeds": [0], "budget_multipliers": [1]})
    boot = write_yaml(tmp_path / "boot.yaml", {"train_problemz": 10})
    assert module.main(["--config", config, "--bootstrap", boot, "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert "train_problemz" in err and "boot.yaml" in err


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
    # a changed self-training config starts a run folder of its own instead of refusing to resume
    write_yaml(tmp_path / "self_train.yaml", {**yaml.safe_load(open(self_train)), "seed": 7})
    assert main(argv) == 0
    assert len(list((tmp_path / "runs" / "demo").glob("policy-*"))) == 2


# --- a clean command line: the library's lines and bars, no third-party chatter unless --verbose ---

CHATTER = (
    "{'loss'",  # raw Trainer log dictionaries
    "'train_runtime'",
    "LOAD REPORT",  # transformers' report of the fresh value head
    "score.weight | MISSING",
    "tokenize value data",  # datasets map bars
    "Tokenizing train dataset",
    "Map:",
    "Loading weights",  # transformers bars
    "Writing model shards",
)


@pytest.fixture(autouse=True)
def restore_logging():
    """Undo what `main` sets up (`agents.logs.setup_logging`: root handler, logger levels,
    transformers' and datasets' switches), so no test here changes another's output."""
    import datasets
    import transformers.utils.logging as transformers_logging
    from datasets.utils import logging as datasets_logging

    from agents.logs import LIBRARY_LOGGERS, THIRD_PARTY_LOGGERS

    root = logging.getLogger()
    handlers, root_level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in LIBRARY_LOGGERS + THIRD_PARTY_LOGGERS}
    switches = (transformers_logging.get_verbosity(), transformers_logging.is_progress_bar_enabled(),
                datasets_logging.get_verbosity(), datasets.is_progress_bar_enabled())  # fmt: skip
    with warnings.catch_warnings():
        yield
    root.handlers[:] = handlers
    root.setLevel(root_level)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    transformers_logging.set_verbosity(switches[0])
    (transformers_logging.enable_progress_bar if switches[1] else transformers_logging.disable_progress_bar)()
    datasets_logging.set_verbosity(switches[2])
    (datasets.enable_progress_bars if switches[3] else datasets.disable_progress_bars)()


def tiny_bootstrap_yaml(tmp_path) -> str:
    tiny = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64, "max_positions": 512}
    return write_yaml(tmp_path / "boot.yaml", {
        "train_problems": 16, "model": {**tiny, "tokenizer": "char"},
        "policy": {"max_steps": 2, "batch_size": 4, "logging_steps": 1},
        "value": {"max_steps": 2, "batch_size": 4, "logging_steps": 1},
    })  # fmt: skip


def test_bootstrap_shows_stages_and_bars_but_no_third_party_chatter(tmp_path, capfd):
    boot = tiny_bootstrap_yaml(tmp_path)
    assert main(["bootstrap", "--config", boot, "--home", str(tmp_path / "home")]) == 0
    out, err = capfd.readouterr()
    assert "policy pi_0: " in out and "PRM V_0: " in out  # the result, on stdout
    for line in ("INFO agents.training.bootstrap: pi_0: building", "INFO agents.training.bootstrap: V_0: building",
                 "value head score.weight newly initialised on the backbone of", "train V_0 (PRM): 2 steps in"):
        assert line in err, line  # fmt: skip
    assert "train pi_0 (SFT): 100%" in err and "train V_0 (PRM): 100%" in err  # one named bar per training stage
    for chatter in CHATTER:
        assert chatter not in out + err, chatter
    assert "DEBUG" not in err


def test_verbose_brings_back_third_party_output_and_the_loss_lines(tmp_path, capfd):
    boot = tiny_bootstrap_yaml(tmp_path)
    assert main(["bootstrap", "--config", boot, "--home", str(tmp_path / "home"), "--verbose"]) == 0
    out, err = capfd.readouterr()
    assert "policy pi_0: " in out
    for line in ("tokenize value data", "Tokenizing train dataset", "Loading weights", "Writing model shards"):
        assert line in err, line
    assert "DEBUG agents.training.trainer_args: train pi_0 (SFT): step 1/2 loss " in err
    assert "{'loss'" not in out + err and "LOAD REPORT" not in err  # the expected fresh head stays one INFO line


def test_verbose_is_accepted_before_or_after_the_command():
    from agents.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["-v", "bootstrap"]).verbose and parser.parse_args(["bootstrap", "--verbose"]).verbose
    assert not parser.parse_args(["bootstrap"]).verbose


class Collect(logging.Handler):
    """Keeps the messages of the records it handles."""

    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_a_fresh_value_head_is_one_log_line_and_other_load_problems_keep_the_report(model_dirs, tmp_path):
    import transformers.utils.logging as transformers_logging
    from safetensors.torch import load_file, save_file

    from agents.models.hf_value import HFValueModel
    from agents.models.loading import load_value_backbone

    policy, value = model_dirs
    shrunk = tmp_path / "shrunk"  # a PRM checkpoint whose backbone lacks a weight
    shutil.copytree(value, shrunk)
    weights = load_file(shrunk / "model.safetensors")
    dropped = next(key for key in weights if key.startswith("model.layers.0."))
    save_file({k: v for k, v in weights.items() if k != dropped}, shrunk / "model.safetensors", metadata={"format": "pt"})

    ours, theirs = logging.getLogger("agents.models.loading"), logging.getLogger("transformers.modeling_utils")
    said, reported = Collect(), Collect()
    verbosity, level = transformers_logging.get_verbosity(), ours.level
    ours.addHandler(said)
    theirs.addHandler(reported)
    transformers_logging.set_verbosity_warning()  # transformers' default: it would print the report
    ours.setLevel(logging.INFO)
    try:
        load_value_backbone(policy)  # a causal LM: the scalar head is new, as expected
        assert not reported.messages and len(said.messages) == 1 and "score.weight newly initialised" in said.messages[0]
        load_value_backbone(value)  # a saved PRM: nothing new, nothing said
        assert not reported.messages and len(said.messages) == 1
        HFValueModel.from_pretrained(policy)  # scoring with a head nobody trained: one warning
        assert not reported.messages and len(said.messages) == 2 and "its scores are random" in said.messages[1]
        load_value_backbone(str(shrunk))  # not the expected fresh head: transformers' report, as it was
        assert len(reported.messages) == 1 and "LOAD REPORT" in reported.messages[0] and dropped in reported.messages[0]
        assert len(said.messages) == 2
    finally:
        ours.removeHandler(said)
        theirs.removeHandler(reported)
        ours.setLevel(level)
        transformers_logging.set_verbosity(verbosity)

"""Weights & Biases tracking (`agents.integrations.wandb_logging`) and the MCTS* sweep, offline.

Runs are read back from their ``run-<id>.wandb`` files (the record log that
``wandb sync`` uploads; see `read_run`) and their ``files/media`` folders. The
session fixture in conftest keeps W&B offline and its caches in a temporary folder.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import pytest
import yaml

from agents.cli import main
from agents.compare import CompareConfig
from agents.config import apply_overrides, from_dict, load_yaml
from agents.integrations import wandb_logging
from agents.integrations.wandb_logging import NoopTracker, resolve_mode, start_run
from tests.conftest import REPO_ROOT
from tests.test_cli import MCTS, restore_logging, write_yaml  # noqa: F401 - a fixture

SWEEP = REPO_ROOT / "configs" / "sweep.yaml"


# --- reading an offline run back --------------------------------------------------------------------


def _chunks(data: bytes):
    """The records of a W&B run file: a 7-byte header (":W&B", magic, version), then
    LevelDB-log blocks of 32 KiB holding records (crc32, length, type: 1 full, 2 first,
    3 middle, 4 last) split across blocks."""
    assert data[:4] == b":W&B", data[:7]
    block, position, pending = 32768, 7, b""
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:  # block padding
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if kind == 0:
            position += left
            continue
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind == 1:
            yield chunk
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            yield pending + chunk
            pending = b""


def read_run(folder: Path, timeout: float = 30.0) -> dict:
    """Config, history rows, summary and artifacts recorded in an offline run folder.

    ``run.finish()`` may return before W&B's service has written the last records
    (a process exit waits for it); wait for the closing exit record.
    """
    deadline = time.monotonic() + timeout
    while True:
        run = _read_run_once(folder)
        if run["exit"] is not None or time.monotonic() > deadline:
            return run
        time.sleep(0.2)


def _read_run_once(folder: Path) -> dict:
    from wandb.proto import wandb_internal_pb2 as pb

    (path,) = folder.glob("run-*.wandb")
    run = {"config": {}, "history": [], "summary": {}, "artifacts": {}, "exit": None}
    for chunk in _chunks(path.read_bytes()):
        record = pb.Record()
        record.ParseFromString(chunk)
        kind = record.WhichOneof("record_type")
        if kind in ("run", "config"):  # the run record holds the config passed to wandb.init
            updates = record.run.config.update if kind == "run" else record.config.update
            run["config"].update({item.key: json.loads(item.value_json) for item in updates})
        elif kind == "history":
            items = record.history.item
            run["history"].append({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in items})
        elif kind == "summary":
            items = record.summary.update
            run["summary"].update({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in items})
        elif kind == "artifact":
            contents = {entry.path: entry.ref for entry in record.artifact.manifest.contents}
            run["artifacts"][record.artifact.name] = {"type": record.artifact.type, "contents": contents}
        elif kind == "exit":
            run["exit"] = record.exit.exit_code
    return run


def offline_run(run_dir: Path) -> Path:
    (folder,) = (run_dir / "wandb").glob("offline-run-*")
    return folder


def table(folder: Path, key: str) -> dict:
    (path,) = (folder / "files" / "media" / "table").glob(f"{key}_*.table.json")
    return json.loads(path.read_text())


# --- the mode rule and the no-op tracker ---------------------------------------------------------------


@pytest.mark.parametrize(
    "environ, mode",
    [
        ({}, "offline"),
        ({"WANDB_API_KEY": "k"}, "online"),
        ({"WANDB_SWEEP_ID": "s"}, "online"),  # a run started by `wandb agent`
        ({"WANDB_API_KEY": "k", "WANDB_MODE": "offline"}, "offline"),
        ({"WANDB_MODE": "online"}, "online"),
        ({"WANDB_MODE": "disabled", "WANDB_API_KEY": "k"}, "disabled"),
        ({"WANDB_DISABLED": "true", "WANDB_API_KEY": "k"}, "disabled"),
    ],
)
def test_the_mode_rule(environ, mode):
    assert resolve_mode(environ) == mode


def test_the_noop_tracker_takes_every_call_and_writes_nothing(tmp_path, monkeypatch):
    trackers = [start_run("compare", {"a": 1}, tmp_path / "off", enabled=False)]
    monkeypatch.setenv("WANDB_MODE", "disabled")
    trackers.append(start_run("compare", {"a": 1}, tmp_path / "disabled"))
    for tracker in trackers:
        assert type(tracker) is NoopTracker and not tracker.enabled and tracker.folder is None
        with tracker as same:
            same.define_metric("a/*", step_metric="budget/multiplier")
            same.log_metrics({"a": 1.0}, step=0)
            same.log_summary({"a": 1.0})
            same.log_table("t", ["x"], [[1]])
            same.log_image("i", tmp_path / "missing.png")
            same.log_artifact(tmp_path, "art", "model", by_reference=True)
        wandb_logging.log_compare(tracker, {})  # the command hooks are no-ops too
        wandb_logging.log_self_train_record(tracker, {})
        wandb_logging.log_bootstrap(tracker, None)
    assert list(tmp_path.iterdir()) == []


# --- the sweep ------------------------------------------------------------------------------------------


def sweep_point(parameters: dict) -> dict:
    """A point of the search space: the middle value of each parameter."""
    point = {}
    for name, spec in parameters.items():
        if "values" in spec:
            point[name] = spec["values"][len(spec["values"]) // 2]
        elif "value" in spec:
            point[name] = spec["value"]
        else:
            point[name] = round((spec["min"] + spec["max"]) / 2, 3)
    return point


def sweep_command(sweep: dict, point: dict) -> list[str]:
    """The command `wandb agent` runs for `point`, expanded by wandb's own macro code."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    macros = create_sweep_command_args({"args": {name: {"value": value} for name, value in point.items()}})
    macros["env"] = ["/usr/bin/env"]
    argv = []
    for item in sweep["command"]:
        argv += macros[item[2:-1]] if item.startswith("${") else [item]
    return argv


def test_the_sweep_file_is_a_sweep_over_mcts_star_on_the_validation_split():
    sweep = yaml.safe_load(SWEEP.read_text())
    assert sweep["method"] in ("bayes", "random")
    assert sweep["metric"] == {"name": wandb_logging.SWEEP_METRIC, "goal": "maximize"}
    swept = {name.rsplit(".", 1)[1] for name in sweep["parameters"]}
    assert {"exploration", "branch", "end_gate", "iterations", "roll_forward_steps", "alpha"} <= swept
    for spec in sweep["parameters"].values():  # the shapes wandb's schema allows
        kinds = [key for key in ("value", "values", "min") if key in spec]
        assert len(kinds) == 1 and (kinds != ["min"] or spec["min"] < spec["max"]), spec
        assert set(spec) <= {"value", "values", "distribution", "min", "max", "q", "mu", "sigma", "probabilities"}
    assert sweep["command"][:3] == ["${env}", "rest-mcts", "compare"] and "${args_no_hyphens}" in sweep["command"]

    # The point config: validation split, one budget, CoT (the budget unit) and MCTS* only.
    argv = sweep_command(sweep, sweep_point(sweep["parameters"]))
    config_path = REPO_ROOT / argv[argv.index("--config") + 1]
    point_config = load_yaml(config_path)
    config = from_dict(CompareConfig, point_config, where=str(config_path))
    assert config.problems.split == "validation" and config.budget_multipliers == (8,)
    assert set(config.agents) == {"cot", "mcts_star"} and config.wandb
    assert wandb_logging.SWEEP_METRIC == f"mcts_star/accuracy@{config.budget_multipliers[0]:g}x"
    # Every value the sweep can choose makes a valid config (MCTSStarConfig checks its ranges).
    for name, spec in sweep["parameters"].items():
        choices = (spec["min"], spec["max"]) if "min" in spec else spec.get("values", [spec.get("value")])
        for value in choices:
            from_dict(CompareConfig, apply_overrides(point_config, [f"{name}={value}"]))


def tiny_overrides(model_dirs, tmp_path) -> list[str]:
    """Test-only settings after the sweep's own arguments: tiny random models, two problems, short caps."""
    policy, value = model_dirs
    return ["--set", f"models.policy={policy}", f"models.value={value}", "problems.size=2", "ci_resamples=50",
            "limits.max_steps=4", "agents.cot.max_new_tokens=8", "agents.mcts_star.max_new_tokens=4",
            "--out", str(tmp_path / "out" / "search_vs_budget.json")]  # fmt: skip


def test_one_sweep_point_through_the_sweeps_own_command_logs_the_metric(model_dirs, tmp_path, monkeypatch, capfd):
    sweep = yaml.safe_load(SWEEP.read_text())
    point = sweep_point(sweep["parameters"])
    argv = sweep_command(sweep, point)
    assert argv[:2] == ["/usr/bin/env", "rest-mcts"]  # `rest-mcts` is agents.cli:main
    monkeypatch.chdir(REPO_ROOT)  # where `wandb agent` runs: the config paths are relative to the repo
    assert main(argv[2:] + tiny_overrides(model_dirs, tmp_path)) == 0
    out, err = capfd.readouterr()
    assert "| mcts_star | 8x |" in out
    assert "wandb:" not in out + err  # quiet: no banner, no sync hints
    assert "W&B compare run" in err and "wandb sync" in err  # one line says where the offline run is

    folder = offline_run(tmp_path / "out")
    run = read_run(folder)
    assert run["exit"] == 0
    accuracy = run["summary"][wandb_logging.SWEEP_METRIC]
    assert 0.0 <= accuracy <= 1.0
    assert "mcts_star/ci_low@8x" in run["summary"] and run["summary"]["cot_cost"] > 0
    mcts = run["config"]["agents"]["mcts_star"]
    for name, value in point.items():  # the swept values reached the config that ran
        assert mcts[name.removeprefix("agents.mcts_star.")] == value, name
    assert run["config"]["problems"]["split"] == "validation"
    rows = [row for row in run["history"] if "mcts_star/accuracy" in row]
    assert rows and rows[-1]["budget/multiplier"] == 8 and rows[-1]["mcts_star/accuracy"] == accuracy

    results = table(folder, "results")
    assert results["columns"] == list(wandb_logging.RESULT_COLUMNS)
    assert len(results["data"]) == 2 * 2  # (CoT + MCTS* at 8x) x 2 problems
    row = dict(zip(results["columns"], results["data"][-1]))
    assert row["agent"] == "mcts_star" and row["question"] and row["oracle_answer"] and isinstance(row["trace"], str)
    assert isinstance(row["correct"], bool) and row["completion_tokens"] >= 0
    assert len(list((folder / "files" / "media" / "images").rglob("*.png"))) == 2  # both plots
    assert set(run["artifacts"]["compare-out"]["contents"]) == {"search_vs_budget.json"}
    written = json.loads((tmp_path / "out" / "search_vs_budget.json").read_text())
    assert "traces" not in written["runs"][0] and "answers" in written["runs"][0]  # traces stay out of the JSON


@pytest.mark.parametrize("switch", [["--no-wandb"], ["--set", "wandb=false"]])
def test_no_wandb_writes_no_run(model_dirs, tmp_path, monkeypatch, switch):
    sweep = yaml.safe_load(SWEEP.read_text())
    argv = sweep_command(sweep, sweep_point(sweep["parameters"]))
    monkeypatch.chdir(REPO_ROOT)
    extra = tiny_overrides(model_dirs, tmp_path)
    extra[extra.index("problems.size=2")] = "problems.size=1"
    assert main(argv[2:] + extra + switch) == 0
    assert (tmp_path / "out" / "search_vs_budget.json").is_file()
    assert not (tmp_path / "out" / "wandb").exists()


# --- the other commands' hooks ------------------------------------------------------------------------


def fake_record(iteration: int, policy_dir: Path, value_dir: Path) -> dict:
    return {
        "iteration": iteration, "method": "rest_mcts", "seed": 0, "greedy_accuracy": 0.2 + 0.1 * iteration,
        "mcts_accuracy": 0.3 + 0.1 * iteration, "prm_auroc": None, "policy_rows": 5 * iteration, "value_rows": 9 * iteration,
        "pair_rows": 0, "relative_rows": 0, "policy_train_rows": 5 * iteration, "value_train_rows": 9 * iteration,
        "sampled_tokens": 100 * iteration, "search": {"solved_fraction": 0.5} if iteration else {},
        "eval": {"greedy_tokens": 12.0, "mcts_usage": {"policy_completion_tokens": 40}, "problems": 10,
                 "greedy_outcomes": {"right": 2 + iteration, "dead end at step 1": 8 - iteration}},
        "policy_dir": str(policy_dir), "value_dir": str(value_dir),
        "stage_seconds": {"eval": 1.5}, "wall_seconds": 1.5,
    }  # fmt: skip


def test_self_train_and_bootstrap_hooks_log_iterations_and_models_as_artifacts(tmp_path):
    from agents.training.bootstrap import BootstrapResult

    run_dir = tmp_path / "st"
    for name, size in (("iteration_1/policy/model.safetensors", 10), ("iteration_1/value/model.safetensors", 10),
                       ("buffer/iteration_1/policy/data.arrow", 10), ("home/policy-abc/model.safetensors", 10),
                       ("home/value-def/model.safetensors", 10)):  # fmt: skip
        (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / name).write_bytes(b"x" * size)
    policy, value = run_dir / "iteration_1" / "policy", run_dir / "iteration_1" / "value"
    records = [fake_record(0, run_dir / "p0", run_dir / "v0"), fake_record(1, policy, value)]
    with start_run("self-train", {"method": "rest_mcts"}, run_dir) as tracker:
        for record in records:
            wandb_logging.log_self_train_record(tracker, record)
        wandb_logging.log_self_train_outputs(tracker, run_dir, records)
        home = run_dir / "home"
        manifest = {"parameters": 1000, "build_seconds": 2.5, "train_seconds": 2.0, "examples": 64, "config": {}}
        result = BootstrapResult(home / "policy-abc", home / "value-def", manifest, manifest)
        wandb_logging.log_bootstrap(tracker, result)
    run = read_run(offline_run(run_dir))
    history = [row for row in run["history"] if "eval/mcts_accuracy" in row]
    assert [row["_step"] for row in history] == [0, 1]  # the W&B step is the iteration
    assert [row["eval/greedy_accuracy"] for row in history] == pytest.approx([0.2, 0.3])
    assert history[1]["rows/policy_train"] == 5 and history[1]["tokens/sampled"] == 100
    assert history[1]["time/wall_seconds"] == 1.5 and history[1]["search/solved_fraction"] == 0.5
    assert [row["greedy_outcomes/dead end at step 1"] for row in history] == pytest.approx([0.8, 0.7])
    assert run["summary"]["final/mcts_accuracy"] == pytest.approx(0.4) and run["summary"]["policy/build_seconds"] == 2.5
    artifacts = run["artifacts"]
    # Small outputs are copied into the run; the bootstrap's models are references to the cache.
    assert artifacts["st-policy"]["contents"] == {"model.safetensors": ""}
    assert artifacts["st-buffer"]["type"] == "dataset" and "iteration_1/policy/data.arrow" in artifacts["st-buffer"]["contents"]
    assert artifacts["policy-abc"]["type"] == "model"
    assert artifacts["policy-abc"]["contents"] == {"model.safetensors": f"file://{home / 'policy-abc' / 'model.safetensors'}"}


def test_large_artifacts_go_by_reference(tmp_path, monkeypatch):
    monkeypatch.setattr(wandb_logging, "REFERENCE_BYTES", 5)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.bin").write_bytes(b"x" * 10)
    with start_run("self-train", {}, tmp_path / "run") as tracker:
        tracker.log_artifact(tmp_path / "model", "big model", "model")
    run = read_run(offline_run(tmp_path / "run"))
    assert run["artifacts"]["big-model"]["contents"] == {"weights.bin": f"file://{tmp_path / 'model' / 'weights.bin'}"}


def test_solve_log_records_the_config_and_the_result(model_dirs, tmp_path, capsys):
    policy, value = model_dirs
    config = write_yaml(tmp_path / "mcts.yaml", MCTS)
    code = main([
        "solve", "Tom has 3 apples and buys 4 more. How many apples does Tom have?", "--answer", "7",
        "--policy", policy, "--value", value, "--config", config, "--budget-tokens", "30", "--max-steps", "3",
        "--log", "--log-dir", str(tmp_path / "solve"),
    ])  # fmt: skip
    assert code == 0 and "answer: " in capsys.readouterr().out
    run = read_run(offline_run(tmp_path / "solve"))
    assert run["config"]["agent"] == "mcts_star" and run["config"]["options"]["branch"] == MCTS["branch"]
    assert run["config"]["problem"]["answer"] == "7"
    assert isinstance(run["summary"]["correct"], bool) and run["summary"]["usage/policy_completion_tokens"] <= 30
    solution = table(offline_run(tmp_path / "solve"), "solution")
    row = dict(zip(solution["columns"], solution["data"][0]))
    assert row["problem_id"] == "cli" and row["oracle_answer"] == "7"


def test_self_train_command_logs_each_iteration_and_the_final_models(model_dirs, tmp_path, capfd):
    policy, value = model_dirs
    config = write_yaml(tmp_path / "self_train.yaml", {
        "run_dir": str(tmp_path / "st"), "iterations": 0, "show_progress": False,
        "models": {"policy": policy, "value": value},
        "eval": {"problems": {"size": 2}, "greedy_max_new_tokens": 8, "mcts": MCTS,
                 "budget": {"completion_tokens": 30}, "limits": {"max_steps": 2}, "prm_auroc": False},
    })  # fmt: skip
    assert main(["self-train", "--config", config, "--no-progress"]) == 0
    out, err = capfd.readouterr()
    assert "wandb:" not in out + err and "greedy acc" in out
    folder = offline_run(tmp_path / "st")
    run = read_run(folder)
    (row,) = [row for row in run["history"] if "eval/mcts_accuracy" in row]
    assert row["_step"] == 0 and 0.0 <= row["eval/greedy_accuracy"] <= 1.0 and "time/eval_seconds" in row
    assert run["config"]["run_dir"] == str(tmp_path / "st") and run["summary"]["final/iteration"] == 0
    assert "model.safetensors" in run["artifacts"]["st-policy"]["contents"]  # pi_0 (small: copied)
    assert table(folder, "iterations")["data"][0][0] == 0
    # Resuming with logging off adds no run; the config key `wandb` may change between resumes.
    assert main(["self-train", "--config", config, "--no-progress", "--no-wandb"]) == 0
    (tmp_path / "off.yaml").write_text((tmp_path / "self_train.yaml").read_text() + "wandb: false\n")
    assert main(["self-train", "--config", str(tmp_path / "off.yaml"), "--no-progress"]) == 0
    assert len(list((tmp_path / "st" / "wandb").glob("offline-run-*"))) == 1


def test_a_misspelt_swept_key_is_an_error_naming_it(capsys):
    config = str(REPO_ROOT / "configs" / "countdown" / "sweep_point.yaml")
    assert main(["compare", "--config", config, "--set", "agents.mcts_star.explorashun=0.5"]) == 2
    assert "explorashun" in capsys.readouterr().err
    assert main(["compare", "--config", config, "--set", "no-equals-sign"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err

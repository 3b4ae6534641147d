"""Self-training: an end-to-end tiny ReST-MCTS* iteration, resume after crashes, the baselines, the CLI.

The "bootstrap" here is a tiny char-level Llama trained for a few seconds on the
reference solutions of four one-step addition problems (so its samples are
sometimes right and sometimes wrong, as pi_0 should be) and a random PRM, both
saved to a temporary folder and passed as explicit model folders.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from datasets import Dataset
from safetensors.torch import load_file

from agents.cli import main
from agents.config import ConfigError, from_dict
from agents.models.tiny import TinyModelConfig, build_char_tokenizer, build_policy_model, build_value_model
from agents.training.buffers import EpisodeBuffer
from agents.training.policy_sft import SFTSettings, train_policy
from agents.training.rest_em import SampledSolution
from agents.training.self_rewarding import preference_pairs
from agents.training.self_train import (
    STAGES,
    SelfTrainConfig,
    SelfTrainer,
    capped_steps,
    format_summary,
    load_config,
    stage_seed,
)
from agents.training.value_training import live_repeats, rehearsal_rows
from agents.training.weighted_nll import step_rows
from reasoning_gym import Problem, ReasoningState, get_task, make_source, render_state

SMALL = TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_positions=512, tokenizer="char")
EASY = {"min_ops": 1, "max_ops": 1, "max_value": 5, "max_result": 10, "operations": ["+"]}
TINY_MCTS = {"iterations": 6, "branch": 3, "temperature": 1.0, "max_new_tokens": 24, "roll_forward_steps": 0, "max_retries": 1}


@pytest.fixture(scope="module")
def start_models(tmp_path_factory) -> tuple[str, str]:
    """(pi_0 folder, V_0 folder)."""
    root = tmp_path_factory.mktemp("start")
    torch.manual_seed(0)  # torch seeds its generator at random per process: unseeded, the models (and the test) vary
    tokenizer = build_char_tokenizer()
    problems = make_source("synthetic", split="train", size=4, seed=1, difficulty=EASY)
    texts = [render_state(p.question, p.steps) + tokenizer.eos_token for p in problems] * 8
    policy = build_policy_model(SMALL, tokenizer)
    settings = SFTSettings(max_steps=150, batch_size=8, learning_rate=1e-2, logging_steps=1000)
    train_policy(policy, tokenizer, Dataset.from_dict({"text": texts}), settings, str(root / "scratch"), 0, False)
    value = build_value_model(SMALL, tokenizer)
    for name, model in (("policy", policy), ("value", value)):
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
    return str(root / "policy"), str(root / "value")


def config_data(run_dir: Path, method: str, models: tuple[str, str], **overrides) -> dict:
    data = {
        "run_dir": str(run_dir),
        "method": method,
        "iterations": 1,
        "seed": 0,
        "show_progress": False,
        "models": {"policy": models[0], "value": models[1], "device": "cpu"},
        "train_problems": {"source": "synthetic", "split": "train", "size": 4, "seed": 1, "difficulty": EASY},
        "search": {"mcts": TINY_MCTS, "budget": {"completion_tokens": 400}, "limits": {"max_steps": 3}, "batch_size": 4},
        "policy": {"sft": {"max_steps": 3, "batch_size": 4, "learning_rate": 1e-3, "logging_steps": 100}},
        "value": {"settings": {"max_steps": 3, "batch_size": 8, "learning_rate": 1e-3, "logging_steps": 100}},
        "eval": {
            "problems": {"source": "synthetic", "split": "test", "size": 3, "seed": 0, "difficulty": EASY},
            "greedy_max_new_tokens": 60,
            "mcts": {**TINY_MCTS, "iterations": 3},
            "budget": {"completion_tokens": 200},
            "limits": {"max_steps": 3},
        },
        "rest_em": {"max_new_tokens": 60, "batch_size": 4},
        "self_rewarding": {
            "sampling": {"max_new_tokens": 60, "batch_size": 4},
            "dpo": {"max_steps": 3, "batch_size": 2, "max_length": 256, "logging_steps": 100},
        },
        "weighted_nll": {"max_steps": 3, "batch_size": 4, "logging_steps": 100},
    }
    data.update(overrides)
    return data


def make_config(*args, **kwargs) -> SelfTrainConfig:
    return from_dict(SelfTrainConfig, config_data(*args, **kwargs))


def weights(folder: str | Path) -> dict:
    return load_file(str(Path(folder) / "model.safetensors"))


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def comparable(record: dict) -> dict:
    """A record without wall times and paths (what must match between a resumed and an uninterrupted run)."""
    drop = {"wall_seconds", "stage_seconds", "policy_dir", "value_dir", "seconds"}
    out = {k: v for k, v in record.items() if k not in drop}
    for key in ("search", "eval"):
        out[key] = {k: v for k, v in record[key].items() if k not in ("seconds", "usage", "mcts_usage")}
        for usage_key in ("usage", "mcts_usage"):
            if usage_key in record[key]:
                out[key][usage_key] = {k: v for k, v in record[key][usage_key].items() if k != "wall_seconds"}
    return out


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, start_models):
    """An uninterrupted one-iteration ReST-MCTS* run: (config, records)."""
    config = make_config(tmp_path_factory.mktemp("reference") / "run", "rest_mcts", start_models)
    return config, SelfTrainer(config).run()


# --- the end-to-end iteration ------------------------------------------------------------------


def test_one_iteration_trains_both_models_and_writes_every_artifact(reference_run, start_models):
    config, records = reference_run
    run = Path(config.run_dir)
    assert [r["iteration"] for r in records] == [0, 1]
    first = records[1]
    assert first["sampled_tokens"] > 0 and first["search"]["solved_fraction"] > 0
    assert first["policy_rows"] > 0 and first["value_rows"] > 0
    assert first["policy_trained"] and first["value_trained"]
    for record in records:
        assert 0 <= record["greedy_accuracy"] <= 1 and 0 <= record["mcts_accuracy"] <= 1
        assert json.loads((run / f"iteration_{record['iteration']}" / "record.json").read_text()) == record
    assert records[0]["policy_dir"] == start_models[0]
    # artifacts: config, search output, buffers, models, stage markers
    assert (run / "config.json").is_file()
    assert {"trees.jsonl", "targets.json", "manifest.json"} <= {p.name for p in (run / "iteration_1" / "search").iterdir()}
    buffer = EpisodeBuffer(run / "buffer")
    assert len(buffer.load("policy", 1)) == first["policy_rows"]
    assert len(buffer.load("value", 1)) == first["value_rows"]
    for stage in STAGES:
        assert (run / "iteration_1" / "stages" / f"{stage}.json").is_file()
    # the weights changed
    assert not same_weights(weights(run / "iteration_1" / "policy"), weights(start_models[0]))
    assert not same_weights(weights(run / "iteration_1" / "value"), weights(start_models[1]))
    table = format_summary(records)
    assert "greedy acc" in table and "MCTS* acc" in table and len(table.splitlines()) == 4


def test_resume_after_crashes_skips_done_stages_and_matches_an_uninterrupted_run(
    tmp_path, start_models, reference_run, monkeypatch
):
    reference_config, reference_records = reference_run
    config = make_config(tmp_path / "run", "rest_mcts", start_models)
    run = Path(config.run_dir)

    # Crash 1: inside the buffer stage, after the value rows were appended.
    original_append = EpisodeBuffer.append

    def crash_on_policy_rows(self, kind, rows, iteration):
        if kind == "policy":
            raise RuntimeError("simulated crash")
        return original_append(self, kind, rows, iteration)

    monkeypatch.setattr(EpisodeBuffer, "append", crash_on_policy_rows)
    with pytest.raises(RuntimeError, match="simulated crash"):
        SelfTrainer(config).run()
    monkeypatch.setattr(EpisodeBuffer, "append", original_append)
    assert (run / "iteration_1" / "stages" / "search.json").is_file()
    assert not (run / "iteration_1" / "stages" / "buffer.json").exists()

    # Crash 2: in the value stage; a stale temporary folder as a kill -9 would leave.
    calls = []
    original_search = SelfTrainer.stage_search

    def count_search(self, iteration):
        calls.append(iteration)
        return original_search(self, iteration)

    def crash(self, iteration):
        raise RuntimeError("simulated crash in value")

    monkeypatch.setattr(SelfTrainer, "stage_search", count_search)
    monkeypatch.setattr(SelfTrainer, "stage_value", crash)
    with pytest.raises(RuntimeError, match="value"):
        SelfTrainer(config).run()
    assert calls == []  # the search was done: not recomputed
    stages = run / "iteration_1" / "stages"
    assert {p.stem for p in stages.glob("*.json")} == {"search", "buffer", "policy"}
    (run / "iteration_1" / ".value.tmp-killed").mkdir()

    # Resume: only value and eval run.
    monkeypatch.undo()
    ran = []
    for stage in STAGES:
        original = getattr(SelfTrainer, f"stage_{stage}")

        def record(self, iteration, _original=original, _stage=stage):
            ran.append((iteration, _stage))
            return _original(self, iteration)

        monkeypatch.setattr(SelfTrainer, f"stage_{stage}", record)
    records = SelfTrainer(config).run()
    assert ran == [(1, "value"), (1, "eval")]
    assert not (run / "iteration_1" / ".value.tmp-killed").exists()
    assert [comparable(r) for r in records] == [comparable(r) for r in reference_records]
    reference = Path(reference_config.run_dir) / "iteration_1"
    for kind in ("policy", "value"):
        assert same_weights(weights(run / "iteration_1" / kind), weights(reference / kind))
    buffer, reference_buffer = EpisodeBuffer(run / "buffer"), EpisodeBuffer(Path(reference_config.run_dir) / "buffer")
    for kind in ("policy", "value", "pairs"):
        assert buffer.load(kind, 1).to_list() == reference_buffer.load(kind, 1).to_list()

    # A finished run re-run recomputes nothing.
    ran.clear()
    SelfTrainer(config).run()
    assert ran == []


def test_a_run_directory_is_bound_to_its_config(reference_run):
    config, _ = reference_run
    changed = from_dict(SelfTrainConfig, {**json.loads((Path(config.run_dir) / "config.json").read_text()),
                                          "run_dir": config.run_dir, "seed": 1})  # fmt: skip
    with pytest.raises(ConfigError, match="different config"):
        SelfTrainer(changed).run()


def test_lora_from_base_saves_a_merged_plain_policy(tmp_path, start_models):
    config = make_config(
        tmp_path / "run", "rest_mcts", start_models,
        policy={"sft": {"max_steps": 3, "batch_size": 4, "learning_rate": 1e-2, "logging_steps": 100},
                "lora": {"r": 4, "alpha": 8}, "from_previous": False},
        value={"train": False},
    )  # fmt: skip
    records = SelfTrainer(config).run()
    folder = Path(config.run_dir) / "iteration_1" / "policy"
    assert records[1]["policy_trained"] and not records[1]["value_trained"]
    assert records[1]["value_dir"] == start_models[1]
    assert not (folder / "adapter_config.json").exists()
    trained, start = weights(folder), weights(start_models[0])
    assert trained.keys() == start.keys() and not same_weights(trained, start)


# --- the baselines ------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["rest_em", "self_rewarding", "weighted_nll"])
def test_each_baseline_runs_one_iteration_at_matched_tokens(tmp_path, start_models, reference_run, method):
    reference_config, reference_records = reference_run
    config = make_config(
        tmp_path / "run", method, start_models, baseline_tokens={"match_run": reference_config.run_dir}
    )
    records = SelfTrainer(config).run()
    first = records[1]
    target = reference_records[1]["sampled_tokens"]
    if method == "weighted_nll":  # the same MCTS* search, hence the same tokens
        assert first["sampled_tokens"] == target
        assert first["relative_rows"] > 0
    else:
        assert first["search"]["target_tokens"] == target
        assert target <= first["sampled_tokens"] < target + config.rest_em.batch_size * config.rest_em.max_new_tokens
    assert first["policy_train_rows"] > 0 and first["policy_trained"]
    assert not first["value_trained"] and first["value_dir"] == start_models[1]
    assert not same_weights(weights(Path(config.run_dir) / "iteration_1" / "policy"), weights(start_models[0]))


def test_preference_pairs_take_best_against_worst_and_skip_ties():
    problem = Problem("p", "What is 1 + 1?", "2")

    def sample(step: str) -> SampledSolution:
        return SampledSolution(problem, ReasoningState(problem, (step,)), 5, step.endswith("2"))

    samples = [sample("The answer is 3"), sample("The answer is 2"), sample("The answer is 4")]
    pairs = preference_pairs(samples, [0.2, 0.9, 0.1]).pairs
    assert pairs == [{"prompt": samples[0].prompt, "chosen": "Step 1: The answer is 2\n",
                      "rejected": "Step 1: The answer is 4\n", "problem_id": "p"}]  # fmt: skip
    assert preference_pairs(samples, [0.5, 0.5, 0.5]).pairs == []


def test_step_rows_train_what_the_policy_wrote_and_drop_zero_weights():
    text = render_state("What is 1 + 1?", ["1 + 1 = 2", "The answer is 2"])
    tasks = {"w": get_task("answer"), "c": get_task("countdown")}
    rows = step_rows([{"text": text, "score": score, "problem_id": "w"} for score in (0.5, 0.0)], tasks)
    assert rows == [{"prompt": render_state("What is 1 + 1?", ["1 + 1 = 2"]) + "Step 2:",
                     "completion": " The answer is 2\n", "weight": 0.5}]  # fmt: skip
    assert len(step_rows([{"text": text, "score": 0.0, "problem_id": "w"}], tasks, keep_zero_weight=True)) == 1
    # Countdown: the move up to "=", not the "Step 2:" label nor what the engine wrote after it.
    board = render_state("Use 5 8 9 ...", ["9 * 5 = 45 (left: 8 45)", "8 + 5 (illegal: 8 and 5 are not both left)"])
    (row,) = step_rows([{"text": board, "score": -0.5, "problem_id": "c"}], tasks)
    assert row["prompt"].endswith("Step 1: 9 * 5 = 45 (left: 8 45)\nStep 2:") and row["completion"] == " 8 + 5 ="


def test_training_steps_are_capped_by_epochs_over_the_rows(reference_run):
    settings = SFTSettings(max_steps=200, batch_size=16)
    assert capped_steps(settings, 35, 3.0).max_steps == 7  # ceil(3 * 35 / 16)
    assert capped_steps(settings, 10_000, 3.0).max_steps == 200
    assert capped_steps(settings, 35, None) is settings
    config, _ = reference_run
    trainer = SelfTrainer(config)
    for stage, configured in (("policy", config.policy.sft), ("value", config.value.settings)):
        record = trainer.stage_record(1, stage)
        assert record["steps"] == capped_steps(configured, record["rows"], 3.0).max_steps


def test_balanced_value_stage_repeats_live_rows_until_they_weigh_as_much_as_dead_ones(tmp_path, reference_run, start_models):
    config, _ = reference_run
    run = tmp_path / "run"
    shutil.copytree(Path(config.run_dir) / "buffer", run / "buffer")
    value = {**config_data(run, "rest_mcts", start_models)["value"], "balance": True}
    record = SelfTrainer(make_config(run, "rest_mcts", start_models, value=value)).stage_value(1)
    rows = EpisodeBuffer(run / "buffer").load("value", 1)
    assert len(set(rows["depth"])) > 1  # tree rows span depths
    repeats = live_repeats(rows["target"], rows["depth"])
    assert record["distinct_rows"] == len(rows) and record["rows"] == sum(repeats)
    for depth in set(rows["depth"]):
        live = sum(count for count, t, d in zip(repeats, rows["target"], rows["depth"]) if d == depth and t > 0)
        dead = sum(1 for t, d in zip(rows["target"], rows["depth"]) if d == depth and t <= 0)
        distinct_live = sum(1 for t, d in zip(rows["target"], rows["depth"]) if d == depth and t > 0)
        if distinct_live and dead >= distinct_live:  # within half a live row's repeats of an even split
            assert abs(live - dead) <= distinct_live / 2
    assert record["rows"] > record["distinct_rows"]  # the tiny trees hold more dead ends than live states
    assert not same_weights(weights(run / "iteration_1" / "value"), weights(start_models[1]))


def test_rehearsal_rows_use_every_row_once_per_pass_and_start_with_the_datasets_own_shuffle():
    from datasets import Dataset

    rows = rehearsal_rows(7, 17, seed=3)
    assert len(rows) == 17
    assert sorted(rows[:7]) == sorted(rows[7:14]) == list(range(7))  # whole passes before any row repeats
    assert len(set(rows[14:])) == 3  # the part of one more pass has no repeats either
    assert rows[:7] != rows[7:14]  # each pass in a fresh order
    table = Dataset.from_dict({"row": list(range(7))})
    assert rehearsal_rows(7, 5, seed=3) == table.shuffle(seed=3)["row"][:5]  # a count within one pass: shuffle + select
    assert rehearsal_rows(7, 17, seed=3) == rows and rehearsal_rows(7, 17, seed=4) != rows
    assert rehearsal_rows(0, 0, seed=0) == []
    with pytest.raises(ValueError, match="empty"):
        rehearsal_rows(0, 1, seed=0)


def test_stage_seeds_are_stable_and_distinct():
    seeds = {stage_seed(0, i, s) for i in range(3) for s in STAGES}
    assert len(seeds) == 3 * len(STAGES)
    assert stage_seed(0, 1, "search") == stage_seed(0, 1, "search") != stage_seed(1, 1, "search")


# --- the command line ---------------------------------------------------------------------------------


def test_cli_resumes_a_finished_run_and_prints_the_table(tmp_path, reference_run, start_models, capsys):
    config, records = reference_run
    path = tmp_path / "self_train.yaml"
    data = config_data(Path(config.run_dir), "rest_mcts", start_models)
    path.write_text(yaml.safe_dump({k: v for k, v in data.items() if k != "show_progress"}))
    assert main(["self-train", "--config", str(path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "greedy acc" in out and "rest_mcts" in out
    assert len([line for line in out.splitlines() if line.strip().startswith(("0 ", "1 "))]) == 2
    assert json.loads((Path(config.run_dir) / "iteration_1" / "record.json").read_text())["sampled_tokens"] == (
        records[1]["sampled_tokens"]
    )


def test_benchmark_runs_each_method_and_writes_table_json_and_plot(tmp_path, start_models, capsys, monkeypatch):
    from tests.conftest import load_benchmark

    module = load_benchmark("self_training", monkeypatch)
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(config_data(tmp_path / "unused", "rest_mcts", start_models)))
    out = tmp_path / "results" / "self_training.json"
    argv = ["--config", str(path), "--seeds", "0", "--methods", "rest_em", "rest_mcts", "--iterations", "1",
            "--runs", str(tmp_path / "runs"), "--out", str(out), "--no-progress",
            "--set", "rest_em.max_correct_per_problem=3"]  # fmt: skip
    assert module.main(argv) == 0
    printed = capsys.readouterr().out
    assert "| method | iteration | greedy CoT |" in printed and "| rest_em | 1 |" in printed
    result = json.loads(out.read_text())
    assert result["set"] == ["rest_em.max_correct_per_problem=3"]  # the override is recorded and reaches the runs
    assert json.loads((tmp_path / "runs" / "rest_em_seed0" / "config.json").read_text())["rest_em"]["max_correct_per_problem"] == 3
    assert [(row["method"], row["iteration"]) for row in result["summary"]] == [
        ("rest_mcts", 0), ("rest_mcts", 1), ("rest_em", 0), ("rest_em", 1)
    ]  # fmt: skip
    runs = {(row["method"], row["iteration"]): row for row in result["runs"]}
    # ReST-EM ran after ReST-MCTS* and sampled towards the tokens its search spent
    searched = runs["rest_mcts", 1]["record"]["sampled_tokens"]
    assert runs["rest_em", 1]["record"]["search"]["target_tokens"] == searched > 0
    assert runs["rest_mcts", 0]["greedy_accuracy"] == runs["rest_em", 0]["greedy_accuracy"]  # same pi_0, same eval
    heldout = json.loads((tmp_path / "runs" / "heldout_steps_seed0.json").read_text())
    # each labelled step extends its parent's text (how many trees reach an answer varies with the thread count)
    assert isinstance(heldout, list)
    assert all(row["text"].startswith(row["parent"]) and row["text"] != row["parent"] for row in heldout)
    assert {"tree_auroc", "sibling_auroc"} <= set(result["summary"][0])
    assert any(line.startswith("ReST-MCTS* iteration 1 greedy") for line in result["goals"])
    assert out.with_suffix(".png").stat().st_size > 0
    assert module.main(argv) == 0  # a second call resumes every finished run
    assert json.loads(out.read_text())["summary"] == result["summary"]


def test_config_names_its_bootstrap_by_file(tmp_path):
    (tmp_path / "boot.yaml").write_text("source: countdown\ndifficulty: easy\ntrain_problems: 50\n", encoding="utf-8")
    (tmp_path / "run.yaml").write_text(f"models:\n  bootstrap: {tmp_path / 'boot.yaml'}\n", encoding="utf-8")
    config = load_config(tmp_path / "run.yaml")
    assert config.models.bootstrap.source == "countdown" and config.models.bootstrap.train_problems == 50
    (tmp_path / "bad.yaml").write_text("source: countdown\ntrain_problem: 50\n", encoding="utf-8")
    (tmp_path / "run.yaml").write_text(f"models:\n  bootstrap: {tmp_path / 'bad.yaml'}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="train_problem"):
        load_config(tmp_path / "run.yaml")


def test_set_overrides_nested_keys_of_the_config_and_of_its_bootstrap_file(tmp_path):
    (tmp_path / "boot.yaml").write_text("source: countdown\ndifficulty: easy\ntrain_problems: 50\n", encoding="utf-8")
    (tmp_path / "run.yaml").write_text(f"models:\n  bootstrap: {tmp_path / 'boot.yaml'}\n", encoding="utf-8")
    sets = ["models.bootstrap.train_problems=60", "weighted_nll.learning_rate=1e-3", "value.replay=3.0"]
    config = load_config(tmp_path / "run.yaml", sets, seed=4)
    assert config.models.bootstrap.train_problems == 60 and config.models.bootstrap.source == "countdown"
    assert config.weighted_nll.learning_rate == 1e-3 and config.value.replay == 3.0 and config.seed == 4
    assert load_config(tmp_path / "run.yaml").weighted_nll.learning_rate != 1e-3  # the file is untouched
    with pytest.raises(ConfigError, match="learning_rat"):
        load_config(tmp_path / "run.yaml", ["weighted_nll.learning_rat=1e-3"])

"""Episode buffers on disk: round trips, appends, crash safety and schema errors."""

from __future__ import annotations

import os
import shutil

import pytest
from datasets import Dataset

from agents.training import buffers
from agents.training.buffers import BufferSchemaError, EpisodeBuffer, empty_dataset


def value_rows(n: int, start: int = 0) -> list[dict]:
    return [
        {"text": f"Problem: q{i}\nSolution:\n", "target": i / 10, "depth": i % 3, "problem_id": f"p{i}"}
        for i in range(start, n)
    ]


POLICY = [{"prompt": "Problem: q\nSolution:\n", "completion": "Step 1: The answer is 1\n", "problem_id": "p"}]
PAIRS = [
    {"prompt": "P", "chosen": "Step 1: The answer is 1\n", "rejected": "Step 1: The answer is 2\n", "problem_id": "p"}
]


def test_round_trip_every_kind(tmp_path):
    buffer = EpisodeBuffer(tmp_path / "run")
    assert buffer.append("value", value_rows(3), iteration=0) == 3
    buffer.append("policy", POLICY, iteration=0)
    buffer.append("pairs", Dataset.from_list(PAIRS), iteration=1)
    value = buffer.load("value")
    assert value.column_names == ["text", "target", "depth", "problem_id", "iteration"]
    assert value["target"] == [0.0, 0.1, 0.2] and value["iteration"] == [0, 0, 0]
    assert buffer.load("policy").to_list() == [{**POLICY[0], "iteration": 0}]
    assert buffer.load("pairs").to_list() == [{**PAIRS[0], "iteration": 1}]
    assert (tmp_path / "run" / "iteration_1" / "pairs" / "manifest.json").is_file()
    assert buffer.iterations() == [0, 1] and buffer.iterations("pairs") == [1]
    # a fresh object over the same folder sees the same data
    assert EpisodeBuffer(tmp_path / "run").load("value", iterations=0)["problem_id"] == ["p0", "p1", "p2"]


def test_mapping_over_loaded_rows_writes_nothing_into_the_buffer(tmp_path):
    buffer = EpisodeBuffer(tmp_path / "run")
    buffer.append("value", value_rows(3), iteration=0)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    mapped = buffer.load("value").map(lambda row: {"length": len(row["text"])})  # as trainers tokenise
    assert mapped["length"] == [len(row["text"]) for row in value_rows(3)]
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_empty_buffer_loads_with_the_right_columns(tmp_path):
    loaded = EpisodeBuffer(tmp_path / "nothing").load("pairs")
    assert len(loaded) == 0
    assert loaded.column_names == ["prompt", "chosen", "rejected", "problem_id", "iteration"]
    assert EpisodeBuffer(tmp_path).append("value", [], iteration=0) == 0
    assert empty_dataset("value").features == buffers.SCHEMAS["value"]


def test_append_twice_and_select_iterations(tmp_path):
    buffer = EpisodeBuffer(tmp_path)
    buffer.append("value", value_rows(2), iteration=0)
    buffer.append("value", value_rows(5, start=2), iteration=0)
    buffer.append("value", value_rows(1), iteration=2)
    assert buffer.load("value", iterations=0)["problem_id"] == ["p0", "p1", "p2", "p3", "p4"]
    assert buffer.load("value")["iteration"] == [0] * 5 + [2]
    assert buffer.load("value", iterations=[2])["problem_id"] == ["p0"]
    assert len(buffer.load("value", iterations=[1])) == 0
    assert len(buffer.shards("value", 0)) == 2


def test_crash_while_writing_a_shard_leaves_the_previous_buffer(tmp_path, monkeypatch):
    buffer = EpisodeBuffer(tmp_path)
    buffer.append("value", value_rows(2), iteration=0)
    original = Dataset.save_to_disk

    def dies_after_writing(self, path, *args, **kwargs):
        original(self, path, *args, **kwargs)  # the data is on disk, under its temporary name
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(Dataset, "save_to_disk", dies_after_writing)
    with pytest.raises(KeyboardInterrupt):
        buffer.append("value", value_rows(9, start=2), iteration=0)
    monkeypatch.undo()
    assert buffer.load("value")["problem_id"] == ["p0", "p1"]
    assert sorted(p.name for p in buffer.path("value", 0).iterdir() if not p.name.startswith("shard-")) == [
        "manifest.json"
    ]


def test_crash_at_either_rename_leaves_the_previous_buffer(tmp_path, monkeypatch):
    buffer = EpisodeBuffer(tmp_path)
    buffer.append("policy", POLICY, iteration=0)
    real_replace = os.replace
    for target in ("shard-", "manifest.json"):

        def fails(src, dst, target=target):
            if os.path.basename(dst).startswith(target):
                raise OSError("disk gone")
            return real_replace(src, dst)

        monkeypatch.setattr(os, "replace", fails)
        with pytest.raises(OSError, match="disk gone"):
            buffer.append("policy", POLICY * 3, iteration=0)
        monkeypatch.undo()
        assert len(buffer.load("policy")) == 1
        assert len(buffer.shards("policy", 0)) == 1
    buffer.append("policy", POLICY, iteration=0)  # and the buffer still takes appends
    assert len(buffer.load("policy")) == 2


def test_leftovers_of_a_killed_run_are_never_loaded(tmp_path):
    buffer = EpisodeBuffer(tmp_path)
    buffer.append("value", value_rows(2), iteration=0)
    folder = buffer.path("value", 0)
    # what a SIGKILL can leave: a complete shard under a temporary name, an unlisted shard,
    # a half-written manifest beside the real one, and a temporary iteration folder
    Dataset.from_list(value_rows(4)).save_to_disk(str(folder / ".tmp-deadbeef"))
    Dataset.from_list(value_rows(4)).save_to_disk(str(folder / "shard-00001-deadbeef"))
    (folder / ".tmp-cafebabe-manifest.json").write_text('{"shards": ["shard-00001-dead')
    Dataset.from_list(value_rows(4)).save_to_disk(str(tmp_path / ".tmp-iteration_1" / "value"))
    assert buffer.load("value")["problem_id"] == ["p0", "p1"]
    assert buffer.iterations() == [0]
    removed = {p.name for p in buffer.clean()}
    assert removed == {".tmp-deadbeef", "shard-00001-deadbeef", ".tmp-cafebabe-manifest.json"}
    buffer.append("value", value_rows(3, start=2), iteration=0)
    assert buffer.load("value")["problem_id"] == ["p0", "p1", "p2"]


def test_schema_errors_name_the_missing_column(tmp_path):
    buffer = EpisodeBuffer(tmp_path)
    with pytest.raises(BufferSchemaError, match=r"value row 1 is missing column\(s\) 'target'"):
        buffer.append("value", [value_rows(1)[0], {"text": "t", "depth": 0, "problem_id": "p"}], iteration=0)
    with pytest.raises(BufferSchemaError, match=r"missing column\(s\) 'chosen', 'rejected'"):
        buffer.append("pairs", Dataset.from_dict({"prompt": ["p"], "problem_id": ["p"]}), iteration=0)
    with pytest.raises(BufferSchemaError, match="has iteration 3, appended to 0"):
        buffer.append("policy", [{**POLICY[0], "iteration": 3}], iteration=0)
    with pytest.raises(BufferSchemaError, match="schema"):
        buffer.append("value", [{"text": "t", "target": "high", "depth": 0, "problem_id": "p"}], iteration=0)
    with pytest.raises(ValueError, match="unknown buffer kind"):
        buffer.append("values", value_rows(1), iteration=0)
    assert buffer.iterations() == [] and len(buffer.load("value")) == 0


def test_extra_keys_are_not_stored_and_tree_targets_append(tmp_path):
    from test_tree_targets import small_tree

    from agents.training.tree_targets import label_tree

    buffer = EpisodeBuffer(tmp_path)
    targets = label_tree(small_tree()[0])
    added = buffer.append_targets(targets, iteration=0)
    assert added == {"value": len(targets.values), "policy": 2, "pairs": 4}
    value = buffer.load("value")
    assert "node" not in value.column_names
    assert value["target"] == pytest.approx([row["target"] for row in targets.values])
    assert value["depth"] == [row["depth"] for row in targets.values]


def test_a_shard_of_an_older_schema_is_named_when_loaded(tmp_path):
    buffer = EpisodeBuffer(tmp_path)
    buffer.append("value", value_rows(2), iteration=0)
    shard = buffer.shards("value", 0)[0]
    Dataset.load_from_disk(str(shard), keep_in_memory=True).remove_columns("depth").save_to_disk(str(tmp_path / "old"))
    shutil.rmtree(shard)
    os.replace(tmp_path / "old", shard)
    with pytest.raises(BufferSchemaError, match=r"lacks column\(s\) 'depth' of the value schema"):
        buffer.load("value")

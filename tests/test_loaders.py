"""File loaders: the shared data files, JSON flavours, clear errors, MATH and HF datasets."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest

from reasoning_gym.sources.base import make_source, split_of
from reasoning_gym.sources.files import (
    SourceFormatError,
    SourceFormatWarning,
    load_gsm8k,
    load_hf,
    load_math,
    load_reference,
    load_scibench,
    number_to_answer,
    read_json_records,
    split_math_solution,
)
from reasoning_gym.steps import extract_answer

GSM8K = "gsm8k_train_sample.jsonl"
SCIBENCH = "scibench_calculus.jsonl"


def write_lines(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


# --- shared data -----------------------------------------------------------------------


def test_gsm8k_sample_loads_completely(shared_data: Path) -> None:
    problems = load_gsm8k(shared_data / GSM8K)
    assert len(problems) == 100 and problems.skipped == 0
    assert len({p.id for p in problems}) == 100
    assert problems[0].id == f"{GSM8K}:1"
    assert problems[0].answer == "72"
    assert problems[0].steps == (
        "Natalia sold 48/2 = 24 clips in May.",
        "Natalia sold 48+24 = 72 clips altogether in April and May.",
        "The answer is 72",
    )
    for problem in problems:
        assert problem.question and problem.answer and len(problem.steps) >= 2
        assert problem.answer.lstrip("-").replace(".", "", 1).isdigit(), problem.answer  # no "1,000"
        assert not any("<<" in step or ">>" in step for step in problem.steps)
        assert problem.steps[-1] == f"The answer is {problem.answer}"
        assert extract_answer(problem.steps[-1]) == problem.answer
        assert all(extract_answer(step) is None for step in problem.steps[:-1]), problem.id


def test_gsm8k_thousands_separator_is_removed(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "g.jsonl", [{"question": "How many?", "answer": "10 * 100 = <<10*100=1000>>1,000\n#### 1,000"}])
    (problem,) = load_gsm8k(path)
    assert problem.answer == "1000"
    assert problem.steps == ("10 * 100 = 1,000", "The answer is 1000")


@pytest.mark.parametrize("source", ["reference", "scibench"])
def test_scibench_sample_loads(shared_data: Path, source: str) -> None:
    problems = make_source(source, path=shared_data / SCIBENCH)
    assert len(problems) == 42 and problems.skipped == 0
    assert [p.answer for p in problems[:4]] == ["0", "10.8", "144", "30"]
    for problem in problems:
        assert problem.question and problem.answer and problem.steps == ()
        float(problem.answer)  # numeric answers as clean strings
        assert not problem.answer.endswith(".0")
    expected_tol = 1e-2 if source == "scibench" else None
    assert all(p.rel_tol == expected_tol for p in problems)
    if source == "scibench":
        assert problems[1].metadata["unit"] == "$\\mathrm{cm}$"


def test_reference_rel_tol_and_string_answers(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "ref.json", [{"content": "q1", "answer": 2.5}, {"content": "q2", "answer": " \\frac{1}{2} "}])
    problems = load_reference(path, rel_tol=0.04)
    assert [p.answer for p in problems] == ["2.5", "\\frac{1}{2}"]
    assert [p.rel_tol for p in problems] == [0.04, 0.04]
    assert load_scibench(path, rel_tol=None)[0].rel_tol is None


@pytest.mark.parametrize(("value", "text"), [(10.8, "10.8"), (144.0, "144"), (0.0, "0"), (-0.0, "0"), (7, "7"), (-0.5, "-0.5")])
def test_number_to_answer(value: float, text: str) -> None:
    assert number_to_answer(value) == text


def test_split_and_limit(shared_data: Path) -> None:
    full = load_gsm8k(shared_data / GSM8K)
    test = load_gsm8k(shared_data / GSM8K, split="test")
    assert [p.id for p in test] == [p.id for p in full.split("test")]
    assert all(split_of(p.question) == "test" for p in test)
    assert len(load_gsm8k(shared_data / GSM8K, limit=7)) == 7
    train = load_gsm8k(shared_data / GSM8K, split="train", limit=3)
    assert [p.id for p in train] == [p.id for p in full.split("train")][:3]
    with pytest.raises(ValueError, match="unknown split"):
        load_gsm8k(shared_data / GSM8K, split="dev")


# --- JSON flavours and errors ----------------------------------------------------------


def test_json_array_and_json_lines_give_the_same_problems(shared_data: Path, tmp_path: Path) -> None:
    lines = [json.loads(line) for line in (shared_data / SCIBENCH).read_text().splitlines() if line.strip()]
    array = tmp_path / "array.json"
    array.write_text(json.dumps(lines, indent=2))
    compact = tmp_path / "compact.json"
    compact.write_text(json.dumps(lines))
    jsonl_named_json = tmp_path / "lines.json"  # reference-repo style: JSON Lines named .json
    jsonl_named_json.write_text((shared_data / SCIBENCH).read_text())
    expected = [(p.question, p.answer, p.steps) for p in load_scibench(shared_data / SCIBENCH)]
    for path in (array, compact, jsonl_named_json):
        assert [(p.question, p.answer, p.steps) for p in load_scibench(path)] == expected
    assert len({p.id for p in load_scibench(array)}) == 42


def test_blank_lines_are_ignored_and_ids_are_lines(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "d.jsonl", ["", {"content": "a", "answer": 1}, "   ", {"content": "b", "answer": 2}])
    assert [p.id for p in load_reference(path)] == ["d.jsonl:2", "d.jsonl:4"]


def test_missing_file() -> None:
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_gsm8k("nope.jsonl")


def test_bad_json_line_names_file_and_line(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "bad.jsonl", [{"content": "a", "answer": 1}, "", '{"content": "b", "answer": ', {"content": "c", "answer": 3}])
    with pytest.raises(SourceFormatError, match=r"bad\.jsonl:3: invalid JSON") as info:
        load_reference(path)
    assert info.value.line == 3


def test_bad_json_array_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('[\n  {"content": "a", "answer": 1},\n  {"content": "b", "answer": }\n]\n')
    with pytest.raises(SourceFormatError, match=r"bad\.json:3 \(element 1\): invalid JSON"):
        load_reference(path)


def test_missing_field_names_field_and_line(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "data.jsonl", [{"question": "q", "answer": "x\n#### 1"}] * 6 + [{"question": "q7"}])
    with pytest.raises(SourceFormatError) as info:
        load_gsm8k(path)
    assert str(info.value).endswith("data.jsonl:7: missing field 'answer'")
    assert (info.value.line, info.value.field) == (7, "answer")


def test_missing_field_in_array_names_element(tmp_path: Path) -> None:
    path = tmp_path / "arr.json"
    path.write_text(json.dumps([{"content": "a", "answer": 1}, {"answer": 2}], indent=1))
    with pytest.raises(SourceFormatError, match=r"arr\.json:\d+ \(element 1\): missing field 'content'"):
        load_reference(path)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"question": "q", "answer": "no marker"}, "field 'answer' has no '#### <answer>' line"),
        ({"question": "q", "answer": "x\n####   "}, "field 'answer' has nothing after '####'"),
        ({"question": "", "answer": "x\n#### 1"}, "field 'question' must be a non-empty string"),
        (42, "record must be a JSON object, got int"),
    ],
)
def test_gsm8k_format_errors(tmp_path: Path, record: object, message: str) -> None:
    path = write_lines(tmp_path / "g.jsonl", [record])
    with pytest.raises(SourceFormatError, match=r"g\.jsonl:1: " + message.replace("(", r"\(").replace(")", r"\)")):
        load_gsm8k(path)


def test_on_error_skip_counts_and_warns_once(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "mixed.jsonl",
        [{"content": "a", "answer": 1}, {"content": "b"}, "{not json", {"content": "c", "answer": True}, {"content": "d", "answer": 4}],
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        problems = load_reference(path, on_error="skip")
    assert [p.answer for p in problems] == ["1", "4"]
    assert problems.skipped == 3
    relevant = [w for w in caught if issubclass(w.category, SourceFormatWarning)]
    assert len(relevant) == 1
    assert "skipped 3" in str(relevant[0].message) and "mixed.jsonl:2: missing field 'answer'" in str(relevant[0].message)
    with pytest.raises(ValueError, match="on_error"):
        load_reference(path, on_error="ignore")


def test_read_json_records_reports_lines(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text('[{"a": 1},\n\n {"a": 2}]')
    records, errors = read_json_records(path)
    assert [(r.line, r.index, r.data) for r in records] == [(1, 0, {"a": 1}), (3, 1, {"a": 2})]
    assert errors == []


# --- MATH ------------------------------------------------------------------------------

MATH_RECORD = {
    "problem": "What is $\\frac{1}{4} + \\frac{1}{4}$?",
    "solution": "We add the fractions. We get $\\frac{1}{4} + \\frac{1}{4} = \\frac{2}{4}$. "
    "Simplifying, \\[\\frac{2}{4} = \\frac{1}{2}.\\] So the sum is $\\boxed{\\frac{1}{2}}$.",
    "level": "Level 1",
    "type": "Prealgebra",
}


def test_math_boxed_answer_and_steps(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "math.jsonl", [MATH_RECORD])
    (problem,) = load_math(path)
    assert problem.answer == "\\frac{1}{2}"
    assert problem.metadata["level"] == "Level 1" and problem.metadata["type"] == "Prealgebra"
    assert problem.steps == (
        "We add the fractions.",
        "We get $\\frac{1}{4} + \\frac{1}{4} = \\frac{2}{4}$.",
        "Simplifying, \\[\\frac{2}{4} = \\frac{1}{2}.\\]",
        "So the sum is $\\frac{1}{2}$.",
        "The answer is \\frac{1}{2}",
    )
    assert all(extract_answer(step) is None for step in problem.steps[:-1])
    assert extract_answer(problem.steps[-1]) == problem.answer


def test_math_explicit_answer_and_missing_box(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "m.jsonl", [{**MATH_RECORD, "answer": "0.5"}, {"problem": "p", "solution": "No box here."}])
    assert load_math(path, limit=1)[0].answer == "0.5"
    with pytest.raises(SourceFormatError, match=r"m\.jsonl:2: field 'solution' has no \\boxed\{\} answer"):
        load_math(path)


def test_split_math_solution_keeps_math_together() -> None:
    solution = "Let $x = 3. Then$ y.\n\\begin{align*}\na &= 1. \\\\\nB &= 2.\n\\end{align*}\nHence $a+B=3$! Done."
    assert split_math_solution(solution) == [
        "Let $x = 3. Then$ y.",
        "\\begin{align*} a &= 1. \\\\ B &= 2. \\end{align*}",
        "Hence $a+B=3$!",
        "Done.",
    ]


# --- Hugging Face datasets (local files only) ------------------------------------------


def test_hf_local_gsm8k_jsonl(shared_data: Path, tmp_path: Path) -> None:
    copy = shutil.copy(shared_data / GSM8K, tmp_path / GSM8K)
    problems = load_hf(copy, answer_format="gsm8k", cache_dir=str(tmp_path / "cache"))
    reference = load_gsm8k(shared_data / GSM8K)
    assert len(problems) == 100
    assert [(p.id, p.question, p.answer, p.steps) for p in problems] == [
        (p.id, p.question, p.answer, p.steps) for p in reference
    ]
    some = make_source("hf", path=copy, answer_format="gsm8k", limit=5, hash_split="train", cache_dir=str(tmp_path / "cache"))
    assert len(some) == 5 and all(split_of(p.question) == "train" for p in some)


def test_hf_local_csv_with_column_mapping(tmp_path: Path) -> None:
    csv = tmp_path / "problems.csv"
    csv.write_text(
        "prompt,target,work\n"
        '"What is 2+3?",5,"2+3=5"\n'
        '"What is 1/2 as a decimal?",0.5,"1/2=0.5"\n'
    )
    problems = load_hf(csv, question_field="prompt", answer_field="target", steps_field="work", rel_tol=1e-3, cache_dir=str(tmp_path / "cache"))
    assert [p.answer for p in problems] == ["5", "0.5"]
    assert problems[0].steps == ("2+3=5", "The answer is 5")
    assert problems[0].id == "problems.csv:1" and problems[1].rel_tol == 1e-3


def test_hf_boxed_format(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "m.jsonl", [MATH_RECORD])
    (problem,) = load_hf(path, question_field="problem", answer_field="solution", answer_format="boxed", cache_dir=str(tmp_path / "cache"))
    assert problem.answer == "\\frac{1}{2}" and problem.steps[-1] == "The answer is \\frac{1}{2}"


def test_hf_missing_column_lists_available(tmp_path: Path) -> None:
    csv = tmp_path / "p.csv"
    csv.write_text("prompt,target\nq,1\n")
    with pytest.raises(SourceFormatError, match=r"no column 'question' \(question_field\); available columns: prompt, target"):
        load_hf(csv, cache_dir=str(tmp_path / "cache"))


def test_hf_bad_row_names_row_and_skip(tmp_path: Path) -> None:
    csv = tmp_path / "p.csv"
    csv.write_text("question,answer\nq1,1\nq2,\nq3,3\n")
    with pytest.raises(SourceFormatError, match=r"p\.csv \(row 1\): missing field 'answer'"):
        load_hf(csv, cache_dir=str(tmp_path / "cache"))
    with pytest.warns(SourceFormatWarning, match="skipped 1"):
        problems = load_hf(csv, on_error="skip", cache_dir=str(tmp_path / "cache"))
    assert [p.answer for p in problems] == ["1", "3"] and problems.skipped == 1


def test_hf_missing_local_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        load_hf(tmp_path / "missing.jsonl")

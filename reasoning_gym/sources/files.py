"""Problem sources read from files: ReST-MCTS* reference, SciBench, GSM8K, MATH, any HF dataset.

Every loader takes ``path``, ``on_error`` (``"raise"``: raise `SourceFormatError`
at the first bad record; ``"skip"``: skip bad records, count them in
`ProblemSet.skipped` and warn once), ``split`` (keep one hash split, see
`ProblemSet.split`) and ``limit`` (at most this many problems, after the split).
Problem ids are ``"{file name}:{line}"``.

JSON files are read by content, not extension: a file whose first character is
``[`` is one JSON array, anything else is JSON Lines (the ReST-MCTS* reference
repository names its one-object-per-line files ``.json``). Blank lines are ignored.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasoning_gym.problem import Problem
from reasoning_gym.sources.base import SPLITS, ProblemSet, register_source, split_of
from reasoning_gym.steps import answer_step, clean_answer, extract_answer, split_steps

__all__ = [
    "Record",
    "SourceFormatError",
    "SourceFormatWarning",
    "gsm8k_answer",
    "last_boxed",
    "load_gsm8k",
    "load_hf",
    "load_math",
    "load_reference",
    "load_scibench",
    "number_to_answer",
    "read_json_records",
    "split_math_solution",
]

ON_ERROR = ("raise", "skip")


class SourceFormatError(ValueError):
    """A malformed record: the message names the file, the line and the field.

    Example: ``data.jsonl:7: missing field 'answer'``.

    Attributes:
        path: the file (or dataset) the record came from.
        line: 1-based line of the record (where it starts, for a JSON array), or None.
        index: 0-based element index for JSON arrays and dataset rows, else None.
        field: the offending field, or None when the whole record is at fault.
        reason: the message without its location.
    """

    def __init__(
        self,
        path: str | Path,
        reason: str,
        *,
        line: int | None = None,
        index: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = str(path)
        self.line = line
        self.index = index
        self.field = field
        self.reason = reason
        location = self.path
        if line is not None:
            location += f":{line}"
        if index is not None:
            location += f" (element {index})" if line is not None else f" (row {index})"
        super().__init__(f"{location}: {reason}")


class SourceFormatWarning(UserWarning):
    """Emitted once per load when ``on_error="skip"`` skipped malformed records."""


@dataclass(frozen=True)
class Record:
    """One JSON object read from a file, with where it came from."""

    path: Path
    line: int | None  # 1-based line where the record starts; None for dataset rows
    index: int | None  # element index in a JSON array or row of a dataset, else None
    data: Any

    def error(self, reason: str, field: str | None = None) -> SourceFormatError:
        return SourceFormatError(self.path, reason, line=self.line, index=self.index, field=field)


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------


def _check_common(path: str | Path, on_error: str, split: str | None, limit: int | None) -> Path:
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS} or None")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"problem file not found: {path}")
    return path


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _read_array(path: Path, text: str, start: int) -> Iterator[Record]:
    """Elements of the JSON array starting at `text[start] == "["`, with their lines."""
    decoder = json.JSONDecoder()
    whitespace = re.compile(r"\s*")
    pos = whitespace.match(text, start + 1).end()
    index = 0
    if pos < len(text) and text[pos] == "]":
        pos += 1
    else:
        while True:
            try:
                value, end = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as error:
                raise SourceFormatError(path, f"invalid JSON: {error.msg}", line=error.lineno, index=index) from None
            yield Record(path, _line_of(text, pos), index, value)
            index += 1
            pos = whitespace.match(text, end).end()
            if pos < len(text) and text[pos] == ",":
                pos = whitespace.match(text, pos + 1).end()
                continue
            if pos < len(text) and text[pos] == "]":
                pos += 1
                break
            raise SourceFormatError(
                path, "invalid JSON: expected ',' or ']' in the array", line=_line_of(text, pos), index=index
            )
    pos = whitespace.match(text, pos).end()
    if pos != len(text):
        raise SourceFormatError(path, "invalid JSON: extra data after the array", line=_line_of(text, pos))


def read_json_records(path: str | Path, on_error: str = "raise") -> tuple[list[Record], list[SourceFormatError]]:
    """Read JSON Lines or a single JSON array (decided by content) from `path`.

    Returns the records and the errors of skipped lines (only with
    ``on_error="skip"``, and only for JSON Lines: a broken JSON array cannot be
    resynchronised, so it always raises).

    Raises:
        FileNotFoundError: `path` is not a file.
        SourceFormatError: invalid JSON, with the file and line.
    """
    path = _check_common(path, on_error, None, None)
    text = path.read_text(encoding="utf-8-sig")
    stripped = text.lstrip()
    if stripped.startswith("["):
        return list(_read_array(path, text, len(text) - len(stripped))), []
    records: list[Record] = []
    errors: list[SourceFormatError] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(Record(path, number, None, json.loads(line)))
        except json.JSONDecodeError as error:
            failure = SourceFormatError(path, f"invalid JSON: {error.msg} (column {error.colno})", line=number)
            if on_error == "raise":
                raise failure from None
            errors.append(failure)
    return records, errors


# --------------------------------------------------------------------------------------
# Field helpers shared by the formats
# --------------------------------------------------------------------------------------


def number_to_answer(value: int | float) -> str:
    """A clean string for a numeric answer: 10.8 -> "10.8", 144.0 -> "144", 0.0 -> "0"."""
    if isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"not a finite number: {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return "0" if value == 0 else repr(value)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _answer_text(record: Record, value: Any, field: str) -> str:
    """The answer in `value` as a non-empty string (numbers converted cleanly)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return number_to_answer(value)
        except ValueError:
            raise record.error(f"field {field!r} is not a finite number: {_short(value)}", field) from None
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise record.error(f"field {field!r} must be a non-empty string or a number, got {_short(value)}", field)


def _field(record: Record, name: str) -> Any:
    if not isinstance(record.data, Mapping):
        raise record.error(f"record must be a JSON object, got {type(record.data).__name__}")
    if name not in record.data or record.data[name] is None:
        raise record.error(f"missing field {name!r}", name)
    return record.data[name]


def _text_field(record: Record, name: str) -> str:
    value = _field(record, name)
    if not isinstance(value, str) or not value.strip():
        raise record.error(f"field {name!r} must be a non-empty string, got {_short(value)}", name)
    return value.strip()


_CALCULATOR = re.compile(r"<<[^<>]*>>")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


def gsm8k_answer(solution: str) -> tuple[str, list[str]] | None:
    """Split a GSM8K solution ``"...\\n#### 72"`` into (answer, steps); None without ``####``.

    The answer loses thousands separators (``"1,000"`` -> ``"1000"``); the steps are
    the lines before ``####`` without calculator annotations ``<<48/2=24>>``,
    ending in ``answer_step(answer)``. The answer is ``""`` when nothing follows ``####``.
    """
    if "####" not in solution:
        return None
    body, _, tail = solution.rpartition("####")
    answer = clean_answer(_THOUSANDS.sub("", tail.strip().splitlines()[0] if tail.strip() else ""))
    steps = split_steps(_CALCULATOR.sub("", body))
    return answer, _with_answer_step(steps, answer) if answer else steps


_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")


def _boxed_spans(text: str) -> list[tuple[int, int, int]]:
    """(start of the command, start of the contents, index of the closing brace) of each box."""
    spans = []
    for match in _BOXED.finditer(text):
        depth = 1
        for pos in range(match.end(), len(text)):
            if text[pos] == "{":
                depth += 1
            elif text[pos] == "}":
                depth -= 1
                if depth == 0:
                    spans.append((match.start(), match.end(), pos))
                    break
    return spans


def last_boxed(text: str) -> str | None:
    """The contents of the last well-formed ``\\boxed{...}`` in `text`, or None."""
    spans = _boxed_spans(text)
    if not spans:
        return None
    _, start, end = spans[-1]
    return text[start:end].strip() or None


def _unbox(text: str) -> str:
    """``"so $\\boxed{5}$."`` -> ``"so $5$."``: only the final answer step states the answer."""
    spans = _boxed_spans(text)
    while spans:
        command, start, end = spans[0]
        text = text[:command] + text[start:end] + text[end + 1 :]
        spans = _boxed_spans(text)
    return text


_MATH_ENV = re.compile(r"\\begin\{(\w+\*?)\}")


def split_math_solution(solution: str) -> list[str]:
    """Split a LaTeX solution into steps: lines and sentences, never inside math.

    A step ends at a newline or after ``.``, ``!`` or ``?`` followed by space and a
    capital letter, ``$`` or ``\\``, but only outside ``$...$``, ``$$...$$``,
    ``\\[...\\]``, ``\\(...\\)``, ``\\begin{...}...\\end{...}`` and braces; newlines
    inside math become spaces.
    """
    steps: list[str] = []
    current: list[str] = []
    closers: list[str] = []  # stack of what closes the math/brace we are inside
    i, n = 0, len(solution)

    def flush() -> None:
        step = " ".join("".join(current).split())
        if step:
            steps.append(step)
        current.clear()

    while i < n:
        ch = solution[i]
        rest = solution.startswith
        if closers and rest(closers[-1], i):
            token = closers.pop()
            current.append(token)
            i += len(token)
            if not closers and (token in ("$$", "\\]") or token.startswith("\\end{")):
                j = i  # a display block followed by a new sentence ends a step
                while j < n and solution[j] in " \t":
                    j += 1
                if i < j < n and solution[j].isupper():
                    flush()
                    i = j
            continue
        if ch == "\\" and rest("\\begin{", i):
            match = _MATH_ENV.match(solution, i)
            if match:
                closers.append(f"\\end{{{match.group(1)}}}")
                current.append(match.group(0))
                i = match.end()
                continue
        if ch == "\\" and (rest("\\[", i) or rest("\\(", i)):
            closers.append("\\]" if solution[i + 1] == "[" else "\\)")
            current.append(solution[i : i + 2])
            i += 2
            continue
        if ch == "\\" and i + 1 < n:  # an escaped character such as \$ or \{
            current.append(solution[i : i + 2])
            i += 2
            continue
        if ch == "$":
            token = "$$" if rest("$$", i) else "$"
            closers.append(token)
            current.append(token)
            i += len(token)
            continue
        if ch == "{":
            closers.append("}")
        elif ch == "\n" and not closers:
            flush()
            i += 1
            continue
        current.append(ch)
        i += 1
        if not closers and ch in ".!?" and i < n and solution[i] in " \t":
            j = i
            while j < n and solution[j] in " \t":
                j += 1
            if j < n and (solution[j].isupper() or solution[j] in "$\\"):
                flush()
                i = j
    flush()
    return steps


def _with_answer_step(steps: list[str], answer: str) -> list[str]:
    """`steps` followed by ``answer_step(answer)`` ("The answer is X")."""
    return [*steps, answer_step(answer)]


def _steps_from_value(record: Record, value: Any, field: str) -> list[str]:
    if isinstance(value, str):
        return split_steps(value)
    if isinstance(value, (list, tuple)) and all(isinstance(step, str) for step in value):
        return [step for step in (" ".join(s.split()) for s in value) if step]
    raise record.error(f"field {field!r} must be a string or a list of strings, got {type(value).__name__}", field)


# --------------------------------------------------------------------------------------
# Loading driver
# --------------------------------------------------------------------------------------

Converter = Callable[[Record], Problem]


def _collect(
    name: str,
    records: Iterable[Record],
    convert: Converter,
    *,
    on_error: str,
    split: str | None,
    limit: int | None,
    errors: list[SourceFormatError] | None = None,
    label: str | None = None,
) -> ProblemSet:
    """Convert records to problems, honouring `on_error`, `split` and `limit`."""
    errors = list(errors or [])
    problems: list[Problem] = []
    for record in records:
        if limit is not None and len(problems) >= limit:
            break
        try:
            problem = convert(record)
        except SourceFormatError as error:
            if on_error == "raise":
                raise
            errors.append(error)
            continue
        except ValueError as error:  # Problem's own validation
            failure = record.error(str(error))
            if on_error == "raise":
                raise failure from None
            errors.append(failure)
            continue
        if split is not None and split_of(problem.question) != split:
            continue
        problems.append(problem)
    if errors:
        errors.sort(key=lambda e: (e.line or 0, e.index or 0))  # the first in file order
        warnings.warn(
            f"{label or name}: skipped {len(errors)} malformed record(s); first: {errors[0]}",
            SourceFormatWarning,
            stacklevel=3,
        )
    set_name = name if split is None else f"{name}[{split}]"
    return ProblemSet(set_name, tuple(problems), len(errors))


def _load_file(
    source: str,
    path: str | Path,
    convert: Converter,
    on_error: str,
    split: str | None,
    limit: int | None,
) -> ProblemSet:
    path = _check_common(path, on_error, split, limit)
    records, errors = read_json_records(path, on_error)
    return _collect(
        f"{source}:{path}", records, convert, on_error=on_error, split=split, limit=limit, errors=errors, label=str(path)
    )


def _metadata(record: Record, source: str, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"source": source, "file": record.path.name, "line": record.line}
    meta.update({key: value for key, value in extra.items() if value is not None})
    return meta


def _problem_id(record: Record) -> str:
    return f"{record.path.name}:{record.line}"


# --------------------------------------------------------------------------------------
# Formats
# --------------------------------------------------------------------------------------

_UNIT = re.compile(r"The unit of the answer should be\s*(.+?)\s*\.?\s*$", re.IGNORECASE | re.DOTALL)


def _reference_converter(source: str, rel_tol: float | None) -> Converter:
    def convert(record: Record) -> Problem:
        question = _text_field(record, "content")
        answer = _answer_text(record, _field(record, "answer"), "answer")
        unit = _UNIT.search(question)
        meta = _metadata(record, source, rel_tol=rel_tol, unit=unit.group(1).strip() if unit else None)
        return Problem(_problem_id(record), question, answer, (), meta)

    return convert


@register_source("reference")
def load_reference(
    path: str | Path,
    *,
    rel_tol: float | None = None,
    on_error: str = "raise",
    split: str | None = None,
    limit: int | None = None,
) -> ProblemSet:
    """ReST-MCTS* reference format: ``{"content": question, "answer": number or string}``.

    Numeric answers become clean strings (``144.0`` -> ``"144"``). `rel_tol`, when
    given, is stored in each problem's ``metadata["rel_tol"]`` for the verifier.
    No reference steps.
    """
    return _load_file("reference", path, _reference_converter("reference", rel_tol), on_error, split, limit)


@register_source("scibench")
def load_scibench(
    path: str | Path,
    *,
    rel_tol: float | None = 1e-2,
    on_error: str = "raise",
    split: str | None = None,
    limit: int | None = None,
) -> ProblemSet:
    """SciBench in the reference format; answers compared with relative tolerance `rel_tol` (1%).

    ``metadata["unit"]`` holds the unit named by "The unit of the answer should be ...".
    """
    return _load_file("scibench", path, _reference_converter("scibench", rel_tol), on_error, split, limit)


def _gsm8k_convert(record: Record) -> Problem:
    question = _text_field(record, "question")
    solution = _text_field(record, "answer")
    parsed = gsm8k_answer(solution)
    if parsed is None:
        raise record.error("field 'answer' has no '#### <answer>' line", "answer")
    answer, steps = parsed
    if not answer:
        raise record.error("field 'answer' has nothing after '####'", "answer")
    return Problem(_problem_id(record), question, answer, tuple(steps), _metadata(record, "gsm8k"))


@register_source("gsm8k")
def load_gsm8k(
    path: str | Path,
    *,
    on_error: str = "raise",
    split: str | None = None,
    limit: int | None = None,
) -> ProblemSet:
    """GSM8K: ``{"question", "answer": "solution lines...\\n#### 72"}``.

    Oracle answer: the text after ``####`` without thousands separators. Steps: the
    solution lines without ``<<48/2=24>>`` annotations, then ``"The answer is 72"``.
    """
    return _load_file("gsm8k", path, _gsm8k_convert, on_error, split, limit)


def math_answer_and_steps(record: Record, solution: str, answer: str | None, field: str) -> tuple[str, list[str]]:
    """MATH-style (answer, steps): `answer` or the last ``\\boxed{}`` of `solution`."""
    if answer is None:
        answer = last_boxed(solution)
        if answer is None:
            raise record.error(f"field {field!r} has no \\boxed{{}} answer (and there is no 'answer' field)", field)
    steps = split_math_solution(_unbox(solution))
    return answer, _with_answer_step(steps, answer)


_MATH_METADATA = ("level", "type", "subject", "unique_id")


def _math_convert(record: Record) -> Problem:
    question = _text_field(record, "problem")
    solution = _text_field(record, "solution")
    data = record.data
    answer = _answer_text(record, data["answer"], "answer") if data.get("answer") is not None else None
    answer, steps = math_answer_and_steps(record, solution, answer, "solution")
    extra = {key: data[key] for key in _MATH_METADATA if data.get(key) is not None}
    return Problem(_problem_id(record), question, answer, tuple(steps), _metadata(record, "math", **extra))


@register_source("math")
def load_math(
    path: str | Path,
    *,
    on_error: str = "raise",
    split: str | None = None,
    limit: int | None = None,
) -> ProblemSet:
    """MATH: ``{"problem", "solution"}`` with optional ``"answer"``, ``"level"``, ``"type"``.

    Oracle answer: ``answer`` if present, else the last ``\\boxed{}`` of the solution.
    Steps: the solution split into lines and sentences (never inside math), boxes
    unwrapped, then ``"The answer is X"``. ``level``/``type`` go to metadata.
    """
    return _load_file("math", path, _math_convert, on_error, split, limit)


# --------------------------------------------------------------------------------------
# Hugging Face datasets
# --------------------------------------------------------------------------------------

ANSWER_FORMATS = ("plain", "gsm8k", "boxed")
_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet", ".arrow": "arrow"}


@register_source("hf")
def load_hf(
    path: str | Path,
    *,
    split: str = "train",
    question_field: str = "question",
    answer_field: str = "answer",
    steps_field: str | None = None,
    answer_format: str = "plain",
    rel_tol: float | None = None,
    name: str | None = None,
    data_files: Any = None,
    on_error: str = "raise",
    limit: int | None = None,
    hash_split: str | None = None,
    **load_kwargs: Any,
) -> ProblemSet:
    """Any Hugging Face `datasets` dataset (hub name) or local json/jsonl/csv/parquet file.

    Args:
        path: a hub dataset name, a dataset folder, or a local data file.
        split: the *datasets* split to read (``"train"``).
        question_field, answer_field: columns holding the question and the answer.
        steps_field: optional column with reference steps (a string, split into
            lines, or a list of strings); ``answer_step(answer)`` is appended.
        answer_format: how to read `answer_field`: ``"plain"`` (the answer itself;
            numbers become clean strings), ``"gsm8k"`` (a solution ending in
            ``#### X``) or ``"boxed"`` (a solution whose last ``\\boxed{}`` is the
            answer). The last two also give the reference steps.
        rel_tol: stored in each problem's ``metadata["rel_tol"]`` when not None.
        name, data_files, load_kwargs: passed to `datasets.load_dataset`.
        on_error, limit: as for the other loaders; row errors name the row.
        hash_split: keep only this train/validation/test hash split (`split_of`).

    Problem ids are ``"{file name}:{row + 1}"`` for a local file (the line, for
    JSON Lines without blank lines) and ``"{path}/{split}:{row}"`` otherwise.

    Raises:
        SourceFormatError: a missing column (the message lists the available
            ones), or a bad row when ``on_error="raise"``.
    """
    if answer_format not in ANSWER_FORMATS:
        raise ValueError(f"answer_format must be one of {ANSWER_FORMATS}, got {answer_format!r}")
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    if hash_split is not None and hash_split not in SPLITS:
        raise ValueError(f"unknown hash_split {hash_split!r}; expected one of {SPLITS} or None")
    import datasets  # lazily: importing reasoning_gym stays fast

    local = Path(path)
    if local.is_file():
        builder = _BUILDERS.get(local.suffix.lower())
        if builder is None:
            raise ValueError(f"{local}: unsupported file type {local.suffix!r}; expected one of {sorted(_BUILDERS)}")
        dataset = datasets.load_dataset(builder, data_files={split: str(local)}, split=split, **load_kwargs)
        label, id_prefix, first_row = str(local), local.name, 1
    else:
        if not local.exists() and (str(path).startswith((".", "/", "~")) or local.suffix.lower() in _BUILDERS):
            raise FileNotFoundError(f"dataset file not found: {path}")
        dataset = datasets.load_dataset(str(path), name, split=split, data_files=data_files, **load_kwargs)
        label, id_prefix, first_row = f"{path}/{split}", f"{path}/{split}", 0

    columns = list(dataset.column_names)
    for role, column in (("question_field", question_field), ("answer_field", answer_field), ("steps_field", steps_field)):
        if column is not None and column not in columns:
            raise SourceFormatError(label, f"no column {column!r} ({role}); available columns: {', '.join(columns)}", field=column)

    def rows() -> Iterator[Record]:
        for row, data in enumerate(dataset):
            yield Record(Path(label), None, row, data)

    def convert(record: Record) -> Problem:
        question = _text_field(record, question_field)
        raw = _field(record, answer_field)
        steps: list[str] = []
        if answer_format == "gsm8k":
            parsed = gsm8k_answer(_text_field(record, answer_field))
            if parsed is None or not parsed[0]:
                raise record.error(f"field {answer_field!r} has no '#### <answer>' line", answer_field)
            answer, steps = parsed
        elif answer_format == "boxed":
            answer, steps = math_answer_and_steps(record, _text_field(record, answer_field), None, answer_field)
        else:
            answer = _answer_text(record, raw, answer_field)
        if steps_field is not None and record.data.get(steps_field) is not None:
            given = _steps_from_value(record, record.data[steps_field], steps_field)
            steps = given if given and extract_answer(given[-1]) is not None else _with_answer_step(given, answer)
        meta = {"source": "hf", "dataset": str(path), "split": split, "row": record.index}
        if rel_tol is not None:
            meta["rel_tol"] = rel_tol
        return Problem(f"{id_prefix}:{record.index + first_row}", question, answer, tuple(steps), meta)

    return _collect(f"hf:{label}", rows(), convert, on_error=on_error, split=hash_split, limit=limit, label=label)

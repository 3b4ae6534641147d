"""Episode buffers: self-training data per iteration, as Hugging Face `datasets` on disk.

Layout under a run directory (one writer per run directory)::

    run_dir/
      iteration_0/
        policy/
          manifest.json                  {"kind": "policy", "shards": [...], "rows": N}
          shard-00000-1a2b3c4d/          a Dataset.save_to_disk folder
          shard-00001-5e6f7a8b/
        value/    (same)
        pairs/    (same)
      iteration_1/ ...

Schema (every kind carries the iteration that produced the row):

    kind     columns (type)
    policy   prompt (str), completion (str), problem_id (str), iteration (int64)
    value    text (str), target (float64, in [0, 1]), depth (int64), problem_id (str), iteration (int64)
    pairs    prompt (str), chosen (str), rejected (str), problem_id (str), iteration (int64)

``policy`` rows are SFT data in TRL's prompt/completion format (``prompt +
completion`` is the rendered solved state); ``value`` rows are PRM targets
(``text`` = the state's ``value_text``: the rendered state, or the board on a
task that renders one; ``depth`` = steps taken to it); ``pairs`` are DPO
preference pairs in TRL's format. `agents.training.tree_targets.label_tree`
produces all three. Keys outside the schema (the labeller's ``node``, say) are not
stored; a missing column is an error that names it.

Atomic appends (a manifest of shards): each `EpisodeBuffer.append` writes its
rows as a new shard into a temporary folder beside the others (``.tmp-*``),
fsyncs it, renames it to its final ``shard-*`` name, then writes the new shard
list to a temporary file and `os.replace`s it over ``manifest.json``. Only
shards listed in the manifest are loaded, so a run killed at any point leaves
the buffer as it was before the append (at worst with a ``.tmp-*`` folder or an
unlisted shard, which `load` ignores and `clean` deletes). Appends write only
the new rows; nothing already stored is rewritten.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset, Features, Value, concatenate_datasets

_STRING, _ITERATION = Value("string"), Value("int64")
SCHEMAS: dict[str, Features] = {
    "policy": Features(
        {"prompt": _STRING, "completion": _STRING, "problem_id": _STRING, "iteration": _ITERATION}
    ),
    "value": Features(
        {
            "text": _STRING,
            "target": Value("float64"),
            "depth": Value("int64"),
            "problem_id": _STRING,
            "iteration": _ITERATION,
        }
    ),
    "pairs": Features(
        {"prompt": _STRING, "chosen": _STRING, "rejected": _STRING, "problem_id": _STRING, "iteration": _ITERATION}
    ),
}
KINDS = tuple(SCHEMAS)
MANIFEST = "manifest.json"
TEMP_PREFIX = ".tmp-"
_ITERATION_DIR = re.compile(r"^iteration_(\d+)$")


class BufferSchemaError(ValueError):
    """Rows that do not fit a buffer's schema."""


def empty_dataset(kind: str) -> Dataset:
    """A dataset with `kind`'s columns and no rows."""
    features = _features(kind)
    return Dataset.from_dict({name: [] for name in features}, features=features)


class EpisodeBuffer:
    """The policy, value and pairs buffers of one self-training run (see the module docstring).

    Args:
        run_dir: the run directory; created on the first append.
    """

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = Path(run_dir)

    # --- paths -----------------------------------------------------------------------

    def path(self, kind: str, iteration: int) -> Path:
        """The folder of `kind`'s buffer for `iteration`: ``run_dir/iteration_{i}/{kind}``."""
        _features(kind)
        if iteration < 0:
            raise ValueError(f"iteration must be >= 0, got {iteration}")
        return self.run_dir / f"iteration_{iteration}" / kind

    def iterations(self, kind: str | None = None) -> list[int]:
        """Iterations with a committed buffer (of `kind`, or of any kind), ascending."""
        kinds = KINDS if kind is None else (kind,)
        found = []
        if self.run_dir.is_dir():
            for entry in self.run_dir.iterdir():
                match = _ITERATION_DIR.match(entry.name)
                if match and any((entry / k / MANIFEST).is_file() for k in kinds):
                    found.append(int(match[1]))
        return sorted(found)

    def shards(self, kind: str, iteration: int) -> list[Path]:
        """The committed shards of one buffer, in append order."""
        folder = self.path(kind, iteration)
        return [folder / name for name in _read_manifest(folder)["shards"]]

    # --- writing ---------------------------------------------------------------------

    def append(self, kind: str, rows: Sequence[Mapping[str, Any]] | Dataset, iteration: int) -> int:
        """Add `rows` (dicts or a Dataset) to `kind`'s buffer of `iteration`; returns rows added.

        The ``iteration`` column is filled in; a row that already has one must
        agree. Atomic: on any failure the buffer stays as it was.
        """
        dataset = _to_dataset(kind, rows, iteration)
        if len(dataset) == 0:
            return 0
        folder = self.path(kind, iteration)
        folder.mkdir(parents=True, exist_ok=True)
        manifest = _read_manifest(folder)
        token = uuid.uuid4().hex[:8]
        name = f"shard-{len(manifest['shards']):05d}-{token}"
        temp = folder / f"{TEMP_PREFIX}{token}"
        try:
            dataset.save_to_disk(str(temp))
            _fsync_tree(temp)
            os.replace(temp, folder / name)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        try:
            _write_manifest(
                folder,
                {"kind": kind, "shards": [*manifest["shards"], name], "rows": manifest["rows"] + len(dataset)},
            )
        except BaseException:
            shutil.rmtree(folder / name, ignore_errors=True)
            raise
        return len(dataset)

    def append_targets(self, targets: Any, iteration: int) -> dict[str, int]:
        """Append a `tree_targets.TreeTargets` (its values, policy and pairs rows); rows added per kind."""
        return {
            "value": self.append("value", targets.values, iteration),
            "policy": self.append("policy", targets.policy, iteration),
            "pairs": self.append("pairs", targets.pairs, iteration),
        }

    def clean(self) -> list[Path]:
        """Delete leftovers of interrupted appends (``.tmp-*`` entries, unlisted shards); returns them.

        Only safe while no append is running on this run directory.
        """
        removed = []
        for iteration in self._iteration_dirs():
            for kind in KINDS:
                folder = self.path(kind, iteration)
                if not folder.is_dir():
                    continue
                listed = set(_read_manifest(folder)["shards"])
                for entry in folder.iterdir():
                    stray = entry.name.startswith(TEMP_PREFIX) or (
                        entry.name.startswith("shard-") and entry.name not in listed
                    )
                    if stray:
                        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
                        removed.append(entry)
        return removed

    # --- reading ---------------------------------------------------------------------

    def load(self, kind: str, iterations: int | Iterable[int] | None = None) -> Dataset:
        """`kind`'s committed rows of `iterations` (all when None) as one Dataset, in iteration order.

        Returns an empty dataset with the schema's columns when nothing is stored.
        The rows are read into memory, so that trainers mapping over them (TRL
        tokenises with ``Dataset.map``) write no cache files into the shards.
        """
        features = _features(kind)
        if iterations is None:
            wanted = self.iterations(kind)
        elif isinstance(iterations, int):
            wanted = [iterations]
        else:
            wanted = sorted(set(iterations))
        parts = []
        for iteration in wanted:
            for shard in self.shards(kind, iteration):
                part = Dataset.load_from_disk(str(shard), keep_in_memory=True)
                missing = [name for name in features if name not in part.column_names]
                if missing:  # a shard of an older schema: cast would fail with pyarrow's message
                    raise BufferSchemaError(
                        f"{shard} lacks column(s) {', '.join(map(repr, missing))} of the {kind} schema "
                        "(written by an older rest-mcts); start a new run_dir"
                    )
                parts.append(part if part.features == features else part.cast(features))
        if not parts:
            return empty_dataset(kind)
        return concatenate_datasets(parts)

    def _iteration_dirs(self) -> list[int]:
        if not self.run_dir.is_dir():
            return []
        return sorted(int(m[1]) for e in self.run_dir.iterdir() if (m := _ITERATION_DIR.match(e.name)))


# --- helpers -----------------------------------------------------------------------


def _features(kind: str) -> Features:
    if kind not in SCHEMAS:
        raise ValueError(f"unknown buffer kind {kind!r}; expected one of {KINDS}")
    return SCHEMAS[kind]


def _to_dataset(kind: str, rows: Sequence[Mapping[str, Any]] | Dataset, iteration: int) -> Dataset:
    """Validate `rows` against `kind`'s schema and build the shard to write."""
    features = _features(kind)
    required = [name for name in features if name != "iteration"]
    if isinstance(rows, Dataset):
        missing = [name for name in required if name not in rows.column_names]
        if missing:
            raise BufferSchemaError(
                f"{kind} rows are missing column(s) {', '.join(map(repr, missing))}; "
                f"{kind} rows need {', '.join(required)}"
            )
        rows = rows.to_list()
    columns: dict[str, list[Any]] = {name: [] for name in features}
    for index, row in enumerate(rows):
        missing = [name for name in required if name not in row]
        if missing:
            raise BufferSchemaError(
                f"{kind} row {index} is missing column(s) {', '.join(map(repr, missing))}; "
                f"{kind} rows need {', '.join(required)}"
            )
        if row.get("iteration", iteration) != iteration:
            raise BufferSchemaError(f"{kind} row {index} has iteration {row['iteration']}, appended to {iteration}")
        for name in required:
            columns[name].append(row[name])
        columns["iteration"].append(iteration)
    try:
        return Dataset.from_dict(columns, features=features)
    except (TypeError, ValueError) as error:  # pyarrow's errors derive from these
        raise BufferSchemaError(f"{kind} rows do not fit the schema {dict(features)}: {error}") from error


def _read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.is_file():
        return {"shards": [], "rows": 0}
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Write to a temporary file beside it, fsync, then `os.replace` over ``manifest.json``."""
    temp = folder / f"{TEMP_PREFIX}{uuid.uuid4().hex[:8]}-{MANIFEST}"
    try:
        with open(temp, "w", encoding="utf-8") as handle:
            json.dump(manifest, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, folder / MANIFEST)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir(folder)


def _fsync_tree(folder: Path) -> None:
    """Flush a freshly written shard to disk before it is renamed into place (best effort)."""
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # platforms that cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

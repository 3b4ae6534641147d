"""`Journal`: an append-only record of the finished units of a long job, so that a rerun resumes.

The journal is a JSON-lines file. Its first line holds the job's fingerprint
(everything that decides the results: the config, the problem ids); each later
line is one finished unit, ``{"key": ..., "row": ...}``, written and flushed to
disk as soon as the unit ends. A crash (a policy server down past its retries,
Ctrl-C, a killed machine) loses at most the unit in flight: a rerun of the same
job skips every recorded unit and returns its row. A journal whose fingerprint
differs belongs to another job and is never mixed in: opening it is an error that
names the file. A torn last line (a crash in the middle of a write) is ignored.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class JournalMismatch(ValueError):
    """The journal on disk was written by a different job."""


class Journal:
    """Finished units of one job, on disk at `path` (created on first use).

    Args:
        path: the JSON-lines file.
        fingerprint: JSON-ready data that identifies the job.
    """

    def __init__(self, path: str | Path, fingerprint: dict[str, Any]) -> None:
        self.path = Path(path)
        self.fingerprint = json.loads(json.dumps(fingerprint, default=str))  # as it reads back from disk
        self.done: dict[str, Any] = {}
        if self.path.is_file():
            self._load()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._append({"fingerprint": self.fingerprint})

    def _load(self) -> None:
        lines = self.path.read_text(encoding="utf-8").splitlines()
        records = []
        for number, line in enumerate(lines, start=1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if number == len(lines):  # torn by a crash mid-write: that unit did not finish
                    self._rewrite(lines[:-1])  # so that the next record starts on a line of its own
                    break
                raise JournalMismatch(
                    f"{self.path}, line {number}: not a journal record; delete the file to start over"
                )
        if not records or records[0].get("fingerprint") != self.fingerprint:
            raise JournalMismatch(
                f"{self.path} holds the finished runs of a different job (another config or problem set); "
                "delete it to start over, or write the results elsewhere"
            )
        for record in records[1:]:
            self.done[record["key"]] = record["row"]

    def _rewrite(self, lines: list[str]) -> None:
        """Replace the file by `lines` atomically (a crash leaves the old file or the new one)."""
        partial = self.path.with_name(self.path.name + ".tmp")
        partial.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        os.replace(partial, self.path)

    def record(self, key: str, row: Any) -> None:
        """Store a finished unit's row (on disk before this returns)."""
        self._append({"key": key, "row": row})
        self.done[key] = row

    def _append(self, record: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, default=_plain) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def remove(self) -> None:
        """Delete the journal (the job's results are safely written elsewhere)."""
        self.path.unlink(missing_ok=True)


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as plain numbers and lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")

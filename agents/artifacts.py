"""The on-disk cache of built models: fingerprinted folders written atomically.

Each artifact lives in ``$REST_MCTS_HOME/<kind>-<fingerprint>/`` (default home
``~/.cache/rest-mcts``) with a ``manifest.json`` that records the config and the
library versions that built it. A folder is built under a temporary name and
renamed into place only when complete, so an interrupted build never leaves a
folder that later loads; the manifest is the mark of completeness.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
_VERSIONED_PACKAGES = ("rest-mcts", "torch", "transformers", "trl", "tokenizers")


def rest_mcts_home() -> Path:
    """``$REST_MCTS_HOME`` if set, else ``~/.cache/rest-mcts``."""
    return Path(os.environ.get("REST_MCTS_HOME", Path.home() / ".cache" / "rest-mcts")).expanduser()


def library_versions() -> dict[str, str]:
    """Versions of the packages that shape a built model."""
    versions = {}
    for package in _VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def fingerprint(config: dict[str, Any]) -> str:
    """A short stable hash of a JSON-serialisable config."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


def artifact_dir(kind: str, config: dict[str, Any], home: Path | None = None) -> Path:
    """Where the artifact of `kind` built from `config` lives (it may not exist yet)."""
    return (home or rest_mcts_home()) / f"{kind}-{fingerprint(config)}"


def is_complete(path: Path) -> bool:
    """True when `path` holds a finished artifact (its manifest exists)."""
    return (path / MANIFEST).is_file()


def read_manifest(path: Path) -> dict[str, Any]:
    return json.loads((path / MANIFEST).read_text(encoding="utf-8"))


def build_atomically(
    path: Path, config: dict[str, Any], build: Callable[[Path], dict[str, Any] | None]
) -> dict[str, Any]:
    """Run ``build(tmp_dir)`` and move the result to `path` with its manifest.

    `build` writes into the empty temporary folder it is given and may return
    extra facts for the manifest (metrics, timings). If `path` is already
    complete, nothing is built and its manifest is returned. On any error the
    temporary folder is removed and the error propagates.
    """
    if is_complete(path):
        return read_manifest(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        started = time.time()
        extra = build(tmp) or {}
        manifest = {
            "config": config,
            "versions": library_versions(),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "build_seconds": round(time.time() - started, 1),
            **extra,
        }
        _write_json_atomically(tmp / MANIFEST, manifest)
        if path.exists():  # an incomplete leftover, or a concurrent build won the race
            if is_complete(path):
                shutil.rmtree(tmp)
                return read_manifest(path)
            shutil.rmtree(path)
        os.replace(tmp, path)
        return manifest
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2, sort_keys=True, default=str), encoding="utf-8")
    os.replace(partial, path)

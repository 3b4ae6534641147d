"""The on-disk cache of built models: fingerprinted folders written atomically.

Each artifact lives in ``$REST_MCTS_HOME/<kind>-<fingerprint>/`` (default home
``~/.cache/rest-mcts``) with a ``manifest.json`` that records the config and the
library versions that built it. A folder is built under a temporary name and
renamed into place only when complete, so an interrupted build never leaves a
folder that later loads; the manifest is the mark of completeness. A build
killed without cleaning up (SIGKILL, SIGTERM, power loss) leaves its hidden
temporary folder, named after its host and process id; the next build in the
same cache on that host deletes it once that process is gone.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
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
    temporary folder is removed and the error propagates; temporary folders of
    earlier builds in the same folder whose process died are removed first.
    """
    if is_complete(path):
        return read_manifest(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_builds(path.parent)
    tmp = Path(tempfile.mkdtemp(prefix=_temporary_prefix(path), dir=path.parent))
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
        write_json_atomically(tmp / MANIFEST, manifest)
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


def remove_abandoned_builds(home: Path) -> list[Path]:
    """Delete this host's temporary build folders in `home` whose process has died; returns them.

    Folders of live processes (concurrent builds) and of other hosts sharing
    the cache are left alone.
    """
    marker = f".tmp-{socket.gethostname()}@"
    removed = []
    for entry in home.glob(f".*{marker}*"):
        pid = entry.name.split(marker, 1)[1].split("@", 1)[0]
        if entry.is_dir() and pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def write_json_atomically(path: Path, data: Any) -> None:
    """Write `data` as JSON with `write_text_atomically`."""
    write_text_atomically(path, json.dumps(data, indent=1, sort_keys=True, default=str))


def write_text_atomically(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to a temporary file beside `path`, fsync, and rename it over `path`.

    A reader sees the old file or the whole new one, never a partial write;
    missing parent folders are created.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(temp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)


def _temporary_prefix(path: Path) -> str:
    """Start of the name of a temporary build folder of `path` by this process (a random part follows).

    ``@`` cannot occur in a host name, so host ``vm`` never matches host ``vm-2``'s folders.
    """
    return f".{path.name}.tmp-{socket.gethostname()}@{os.getpid()}@"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0 checks existence without signalling
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True

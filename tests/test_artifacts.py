"""The model cache's atomic builds: a killed build is swept, a live one is left alone."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap

from agents.artifacts import build_atomically, is_complete, remove_abandoned_builds


def test_a_killed_build_is_swept_by_the_next_build(tmp_path):
    target = tmp_path / "policy-abc"
    script = textwrap.dedent(
        f"""
        import pathlib, time
        from agents.artifacts import build_atomically

        def build(folder):
            (folder / "weights").write_text("half")
            print("building", flush=True)
            time.sleep(120)

        build_atomically(pathlib.Path({str(target)!r}), {{}}, build)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "building"
    process.send_signal(signal.SIGTERM)  # the default handler exits without cleanup
    process.wait(timeout=30)
    assert len(list(tmp_path.glob(".policy-abc.tmp-*"))) == 1 and not target.exists()

    def build(folder):
        (folder / "weights").write_text("whole")

    build_atomically(target, {}, build)
    assert list(tmp_path.glob(".policy-abc.tmp-*")) == []
    assert is_complete(target) and (target / "weights").read_text() == "whole"


def test_only_dead_builds_of_this_host_are_swept(tmp_path):
    host = socket.gethostname()
    live = tmp_path / f".policy-abc.tmp-{host}@{os.getpid()}@x1"
    dead = tmp_path / f".value-def.tmp-{host}@999999999@x2"  # above any pid_max
    elsewhere = tmp_path / f".policy-abc.tmp-{host}-2@999999999@x3"  # host "<this host>-2"
    for folder in (live, dead, elsewhere):
        folder.mkdir()
    assert remove_abandoned_builds(tmp_path) == [dead]
    assert live.exists() and elsewhere.exists() and not dead.exists()

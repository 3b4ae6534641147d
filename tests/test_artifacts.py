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


def test_a_live_build_and_other_artifacts_are_left_alone(tmp_path):
    live = tmp_path / f".policy-abc.tmp-{socket.gethostname()}-{os.getpid()}-x1"
    other = tmp_path / f".policy-other.tmp-{socket.gethostname()}-999999999-x2"
    live.mkdir()
    other.mkdir()
    assert remove_abandoned_builds(tmp_path / "policy-abc") == []
    assert live.exists() and other.exists()

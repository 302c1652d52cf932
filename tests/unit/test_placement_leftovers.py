"""Temporaries a killed daemon left in a same-host server's blobs folder are removed at the
next start; those of a daemon still running (another drop folder may feed the same server)
and every real blob stay."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from structlog.testing import capture_logs

from dropzone.imports.placement import Placer


def _gone_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_dead_daemons_temporaries_go_and_nothing_else(tmp_path: Path) -> None:
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    dead = blobs / f".dropzone-{_gone_pid()}-0a1b2c3d4e5f6a7b.partial"
    live = blobs / f".dropzone-{os.getpid()}-0a1b2c3d4e5f6a7c.partial"
    blob = blobs / ("sha256-" + "a" * 64)
    foreign = blobs / ".other-tool.partial"
    for p in (dead, live, blob, foreign):
        p.write_bytes(b"x")
    placer = Placer(tmp_path, "copy", on_success="keep", host="http://h")
    with capture_logs() as logs:
        placer.sweep_leftovers()
    assert sorted(p.name for p in blobs.iterdir()) == sorted([live.name, blob.name, foreign.name])
    assert [(e["event"], e["file"]) for e in logs] == [("blob.discarded", str(dead))]


def test_its_own_temporaries_name_the_process(tmp_path: Path) -> None:
    (tmp_path / "blobs").mkdir()
    placer = Placer(tmp_path, "copy", on_success="keep", host="http://h")
    assert placer._temporary().name.startswith(f".dropzone-{os.getpid()}-")

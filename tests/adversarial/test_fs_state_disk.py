"""A full state disk (issue 13): the state store's writes fail with ``database or disk is
full`` while the daemon runs. It ended the daemon (an uncaught ``sqlite3.OperationalError``,
after a burst of ``artifact.error`` from jobs re-queuing themselves). Now: one
``state.unwritable`` event, nothing destructive (no model deleted for a removed file), retries,
and work resumes by itself once there is room again.

State lives on a small tmpfs that the test fills; mounting one needs root (else skipped).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import pytest
from e2e_env import Dropzone

from dropzone.testing.builders import build_gguf


def _fill(folder: Path) -> Path:
    """Take every free byte of ``folder``'s file system; the file to delete to give it back."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as f:
        for size in (64 << 10, 512):
            with contextlib.suppress(OSError):
                while True:
                    f.write(bytes(size))
    return filler


@pytest.fixture
def small_state(tmp_path: Path, tmpfs: Callable[[Path, str], Path]) -> Path:
    return tmpfs(tmp_path / "state", "4m")


@pytest.mark.timeout(120)
def test_a_full_state_disk_degrades_to_read_only_and_recovers(
    dropzone: Dropzone, small_state: Path
) -> None:
    first = dropzone.drop / "first.gguf"
    build_gguf(first)
    process = dropzone.run(DROPZONE_ON_REMOVED="delete")
    process.wait_for("model.created", path=str(first), timeout=20)
    filler = _fill(small_state)
    since = process.mark()
    first.unlink()  # a removal the store cannot record
    for i in range(5):
        build_gguf(dropzone.drop / f"new{i}.gguf", seed=10 + i)
    process.wait_for("state.unwritable", since=since, timeout=20)
    assert process.running
    assert not process.find("model.deleted", since=since)  # nothing destructive meanwhile
    errors = process.find("artifact.error", since=since)
    assert len(errors) <= 1, errors
    filler.unlink()
    process.wait_for("state.writable", since=since, timeout=30)
    for i in range(5):
        path = str(dropzone.drop / f"new{i}.gguf")
        process.wait_for("model.created", path=path, since=since, timeout=30)
    assert process.running

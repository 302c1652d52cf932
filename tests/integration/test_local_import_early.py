"""Early placement with the real Daemon (issue 17): a complete file closed by its writer is
copied into a temporary name in the server's store while it settles, and committed by the
import of record; a file rewritten meanwhile has its early copy discarded. The quiet period
after the close is ended by the test, not by a clock (as ``test_daemon``'s early uploads)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from dropzone.imports import readiness
from dropzone.service import daemon as daemon_module
from dropzone.testing.builders import build_gguf
from dropzone.testing.ollama import Emulator
from dropzone.testing.stores import temporaries


@pytest.fixture
def settling(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Early work for any size, and a quiet period after close that only the test ends."""
    monkeypatch.setattr(daemon_module, "EARLY_UPLOAD_MIN_BYTES", 0)
    monkeypatch.setattr(readiness, "CLOSE_GRACE_SECONDS", 3600.0)
    return monkeypatch


def _copy_in(source: Path, target: Path) -> str:
    data = source.read_bytes()
    with target.open("wb") as out:
        out.write(data)
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _host(emulator: Emulator) -> list[dict[str, object]]:
    return [{"url": emulator.url, "models_dir": str(emulator.root), "local_import": "copy"}]


def test_the_copy_is_staged_while_the_file_settles_and_committed_once_it_is_ready(
    start: Any, drop: Path, tmp_path: Path, emulator: Emulator, settling: pytest.MonkeyPatch
) -> None:
    daemon = start(settle_seconds=3600, ollama_hosts=_host(emulator))
    digest = _copy_in(build_gguf(tmp_path / "Staged.gguf", seed=11), drop / "Staged.gguf")
    staged = daemon.wait_for("blob.staged", digest=digest)
    assert staged["method"] == "copy" and staged["early"] is True
    # Still settling: the copy waits under a temporary name the server does not read.
    assert not daemon.find("artifact.ready")
    [tmp] = temporaries(emulator.root)
    assert tmp.read_bytes() == (drop / "Staged.gguf").read_bytes()
    assert not emulator.blob_path(digest).exists()

    settling.setattr(readiness, "CLOSE_GRACE_SECONDS", 0.0)  # the quiet period is over
    daemon.daemon.request_rescan()
    daemon.wait_for("model.created", model="staged:latest")
    placed = daemon.find("blob.placed", digest=digest)
    assert len(placed) == 1 and placed[0]["staged"] is True and placed[0]["method"] == "copy"
    assert emulator.blob_path(digest).read_bytes() == (drop / "Staged.gguf").read_bytes()
    assert temporaries(emulator.root) == []
    assert emulator.counters.blob_posts(digest) == 0


def test_a_file_rewritten_while_its_copy_is_staged_has_that_copy_discarded(
    start: Any, drop: Path, tmp_path: Path, emulator: Emulator, settling: pytest.MonkeyPatch
) -> None:
    daemon = start(settle_seconds=3600, ollama_hosts=_host(emulator))
    target = drop / "Redone.gguf"
    first = _copy_in(build_gguf(tmp_path / "v1.gguf", seed=12), target)
    daemon.wait_for("blob.staged", digest=first)

    second = _copy_in(build_gguf(tmp_path / "v2.gguf", seed=13), target)
    daemon.wait_for("blob.discarded", digest=first)
    daemon.wait_for("blob.staged", digest=second)
    settling.setattr(readiness, "CLOSE_GRACE_SECONDS", 0.0)
    daemon.daemon.request_rescan()
    daemon.wait_for("model.created", model="redone:latest")
    assert not emulator.blob_path(first).exists()  # the old bytes never reached the store
    assert emulator.blob_path(second).read_bytes() == target.read_bytes()
    assert temporaries(emulator.root) == []
    assert emulator.counters.creates("redone:latest") == 1


def test_early_copies_are_discarded_when_the_daemon_stops(
    start: Any, drop: Path, tmp_path: Path, emulator: Emulator, settling: pytest.MonkeyPatch
) -> None:
    daemon = start(settle_seconds=3600, ollama_hosts=_host(emulator))
    digest = _copy_in(build_gguf(tmp_path / "Left.gguf", seed=14), drop / "Left.gguf")
    daemon.wait_for("blob.staged", digest=digest)
    assert daemon.stop() == 0
    assert temporaries(emulator.root) == [] and not emulator.blob_path(digest).exists()


def test_a_staged_copy_whose_blob_the_server_got_meanwhile_is_discarded(
    start: Any, drop: Path, tmp_path: Path, emulator: Emulator, settling: pytest.MonkeyPatch
) -> None:
    daemon = start(settle_seconds=3600, ollama_hosts=_host(emulator))
    digest = _copy_in(build_gguf(tmp_path / "Twice.gguf", seed=15), drop / "Twice.gguf")
    daemon.wait_for("blob.staged", digest=digest)
    blob = emulator.blob_path(digest)  # another route (a pull, an upload) brought it
    blob.write_bytes((drop / "Twice.gguf").read_bytes())
    inode = blob.stat().st_ino

    settling.setattr(readiness, "CLOSE_GRACE_SECONDS", 0.0)
    daemon.daemon.request_rescan()
    daemon.wait_for("model.created", model="twice:latest")
    assert daemon.find("blob.exists", digest=digest)
    assert daemon.find("blob.discarded", digest=digest)
    assert temporaries(emulator.root) == [] and blob.stat().st_ino == inode

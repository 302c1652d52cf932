"""A same-host copy that trails the follower (issue 17): while a drop file is still being
written, the bytes already hashed are copied into a temporary name in the server's store, so
that once the file is complete only its last bytes, the check against the digest and the
``fsync`` are left, not a copy of the whole file. The real Daemon, the emulator over real HTTP,
and a writer that the test drives in steps (each step waits on what the daemon did)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from daemon_helpers import Running

from dropzone.imports import readiness
from dropzone.testing.builders import build_gguf
from dropzone.testing.ollama import Emulator
from dropzone.testing.stores import copied_at_least, temporaries
from dropzone.testing.waiting import wait_until


# A half-written file stays followed while it is quiet for less than settle_seconds; once its
# writer closes it complete, it is ready after readiness' close grace (1 s), not after this.
def _host(emulator: Emulator) -> list[dict[str, object]]:
    return [{"url": emulator.url, "models_dir": str(emulator.root), "local_import": "copy"}]


@pytest.fixture(autouse=True)
def _short_close_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """A complete file closed by its writer is ready after 0.2 s, not readiness' 1 s: these
    tests need a long settle_seconds only for files left incomplete."""
    monkeypatch.setattr(readiness, "CLOSE_GRACE_SECONDS", 0.2)


def _gguf(tmp_path: Path, name: str, seed: int) -> bytes:
    # 4 MiB of tensor data: big enough that half of it is many of the follower's reads.
    path = build_gguf(tmp_path / "src" / name, tensor_elems=1 << 20, seed=seed)
    return path.read_bytes()


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@contextmanager
def _half_copied(
    daemon: Running, emulator: Emulator, target: Path, data: bytes
) -> Iterator[BinaryIO]:
    """``target`` with the first half of ``data`` written, followed, and copied into the
    store's blobs folder under a temporary name while the file is still open for the rest."""
    with target.open("wb") as out:
        out.write(data[: len(data) // 2])
        out.flush()
        daemon.wait_for("hash.follow.started", path=str(target))
        wait_until(
            lambda: copied_at_least(emulator.root, len(data) // 2),
            what="the first half copied while the file is still open",
        )
        yield out


def test_the_copy_trails_the_file_while_it_arrives_and_is_committed_once_ready(
    start: Any, drop: Path, tmp_path: Path, emulator: Emulator
) -> None:
    daemon = start(settle_seconds=60, ollama_hosts=_host(emulator))
    data = _gguf(tmp_path, "Trail.gguf", seed=21)
    target = drop / "Trail.gguf"
    with _half_copied(daemon, emulator, target, data) as out:
        assert not daemon.find("hash.done")
        out.write(data[len(data) // 2 :])
    digest = _sha(data)
    daemon.wait_for("model.created", model="trail:latest")
    [placed] = daemon.find("blob.placed", digest=digest)
    assert placed["method"] == "copy" and placed["staged"] is True and placed["trailed"] is True
    assert emulator.blob_path(digest).read_bytes() == data
    assert emulator.blob_path(digest).stat().st_mode & 0o777 == 0o644
    assert emulator.counters.blob_posts(digest) == 0
    assert temporaries(emulator.root) == []


def test_a_file_written_again_from_the_start_has_its_copy_started_again(
    start: Any, drop: Path, tmp_path: Path, emulator: Emulator
) -> None:
    daemon = start(settle_seconds=60, ollama_hosts=_host(emulator))
    first, second = _gguf(tmp_path, "v1.gguf", seed=22), _gguf(tmp_path, "v2.gguf", seed=23)
    target = drop / "Again.gguf"
    with _half_copied(daemon, emulator, target, first):
        pass  # closed half-way
    target.write_bytes(second)  # truncated and written anew, as a copy restarted by hand
    daemon.wait_for("model.created", model="again:latest")
    assert daemon.find("hash.restarted", path=str(target))
    assert emulator.blob_path(_sha(second)).read_bytes() == second
    assert not emulator.blob_path(_sha(first)).exists()
    assert daemon.find("blob.placed", digest=_sha(second))[0]["trailed"] is True
    assert temporaries(emulator.root) == []


def test_a_file_that_goes_away_while_it_arrives_leaves_no_copy_in_the_store(
    start: Any, drop: Path, tmp_path: Path, emulator: Emulator
) -> None:
    daemon = start(settle_seconds=60, ollama_hosts=_host(emulator))
    data = _gguf(tmp_path, "Gone.gguf", seed=24)
    target = drop / "Gone.gguf"
    with _half_copied(daemon, emulator, target, data):
        target.unlink()
    daemon.wait_for("blob.discarded", file=str(target))  # logged once the copy is removed
    assert temporaries(emulator.root) == []


def test_a_blob_the_server_has_already_is_not_replaced_by_the_trailing_copy(
    start: Any, drop: Path, tmp_path: Path, emulator: Emulator
) -> None:
    data = _gguf(tmp_path, "Known.gguf", seed=25)
    digest = _sha(data)
    emulator.blob_path(digest).write_bytes(data)
    inode = emulator.blob_path(digest).stat().st_ino
    daemon = start(settle_seconds=60, ollama_hosts=_host(emulator))
    with _half_copied(daemon, emulator, drop / "Known.gguf", data) as out:
        out.write(data[len(data) // 2 :])
    daemon.wait_for("model.created", model="known:latest")
    # The server's own file, never replaced (its create touches its mtime, as Ollama's does).
    assert emulator.blob_path(digest).stat().st_ino == inode
    assert not daemon.find("blob.placed", digest=digest)
    assert temporaries(emulator.root) == []


def test_a_stop_while_the_file_arrives_removes_the_trailing_copy(
    start: Any, drop: Path, tmp_path: Path, emulator: Emulator
) -> None:
    daemon = start(settle_seconds=60, ollama_hosts=_host(emulator))
    data = _gguf(tmp_path, "Halted.gguf", seed=26)
    with _half_copied(daemon, emulator, drop / "Halted.gguf", data):
        daemon.stop()
        assert temporaries(emulator.root) == []
    assert daemon.find("blob.discarded", file=str(drop / "Halted.gguf"), reason="stopping")

"""The copy kept behind a follower (issue 17): the bytes hashed while a file arrives are copied
into a temporary name in ``blobs/`` and hashed back from there; the copy is staged only when
its own bytes hash to the digest of record. On real files, a real ``FollowingHasher`` and a
real ``Placer``; no server."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from placement_files import blob as _blob
from placement_files import key as _key
from structlog.testing import LogCapture

from dropzone.imports.hashing import FollowingHasher, HashResult
from dropzone.imports.placement import Placed, Placer
from dropzone.imports.staging import Staged
from dropzone.imports.trailing import TrailingCopy
from dropzone.testing.stores import temporaries

HOST = "http://127.0.0.1:11434"
MiB = 1 << 20


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _folders(tmp_path: Path) -> tuple[Path, Path, Placer]:
    """A models folder with its blobs folder, a drop folder, and a placer that copies."""
    models, drop = tmp_path / "models", tmp_path / "drop"
    (models / "blobs").mkdir(parents=True)
    drop.mkdir()
    return models, drop, Placer(models, "copy", on_success="keep", host=HOST)


def _discarded(capture: LogCapture) -> list[dict[str, object]]:
    return [e for e in capture.entries if e["event"] == "blob.discarded"]


def _never() -> bool:
    return False


def test_a_copy_kept_behind_the_hash_is_staged_and_committed_without_copying_again(
    tmp_path: Path,
) -> None:
    models, drop, placer = _folders(tmp_path)
    data = os.urandom(3 * MiB + 123)
    path = drop / "model.gguf"
    trail = TrailingCopy(placer, path)
    with path.open("wb") as out:
        out.write(data[: 2 * MiB])
        out.flush()
        hasher = FollowingHasher(path, root=drop, sinks=[trail])
        hasher.feed()
        assert trail.copied == 2 * MiB  # copied while the file is still open for writing
        [tmp] = sorted(temporaries(models))
        assert tmp.read_bytes() == data[: 2 * MiB]
        out.write(data[2 * MiB :])
    result = hasher.finish(len(data))
    assert trail.seal(result)

    staged = placer.place(drop, path, _key(path), result.digest, early=True)
    assert isinstance(staged, Staged) and staged.trailed and staged.tmp == tmp
    placed = placer.place(drop, path, _key(path), result.digest)
    assert isinstance(placed, Placed) and placed.staged and placed.trailed
    blob = _blob(models, result.digest)
    assert blob.read_bytes() == data and stat.S_IMODE(blob.stat().st_mode) == 0o644
    assert blob.stat().st_ino == staged.tmp_key.ino
    assert sorted(temporaries(models)) == []


def test_bytes_that_changed_between_the_hash_and_the_copy_are_never_staged(
    tmp_path: Path, capture: LogCapture
) -> None:
    models, drop, placer = _folders(tmp_path)
    data = os.urandom(2 * MiB)
    path = drop / "model.gguf"
    path.write_bytes(data)
    hashed = HashResult(_sha(data), _key(path))  # what the follower read
    trail = TrailingCopy(placer, path)
    fd = os.open(path, os.O_RDWR)
    try:
        trail.advance(fd, MiB, _never)
        os.pwrite(fd, b"\xff" * 4096, MiB + 10)  # after the hash, before the copy of it
        trail.advance(fd, 2 * MiB, _never)
    finally:
        os.close(fd)
    assert not trail.seal(hashed)
    assert sorted(temporaries(models)) == []
    [event] = _discarded(capture)
    assert event["reason"] == "the copied bytes do not match the digest"
    assert event["file"] == str(path) and event["digest"] == hashed.digest


def test_a_hash_started_again_starts_its_copy_again(tmp_path: Path) -> None:
    models, drop, placer = _folders(tmp_path)
    first, second = os.urandom(2 * MiB), os.urandom(MiB + 7)
    path = drop / "model.gguf"
    path.write_bytes(first)
    trail = TrailingCopy(placer, path)
    hasher = FollowingHasher(path, root=drop, sinks=[trail])
    hasher.feed()
    assert trail.copied == len(first)
    path.write_bytes(second)  # truncated and written anew: shorter than what was copied
    result = hasher.finish(len(second))
    assert result.digest == _sha(second) and result.restarts
    assert trail.seal(result)
    [tmp] = sorted(temporaries(models))
    assert tmp.read_bytes() == second


def test_an_abandoned_copy_is_removed_and_never_starts_again(
    tmp_path: Path, capture: LogCapture
) -> None:
    models, drop, placer = _folders(tmp_path)
    path = drop / "model.gguf"
    path.write_bytes(os.urandom(MiB))
    trail = TrailingCopy(placer, path)
    hasher = FollowingHasher(path, root=drop, sinks=[trail])
    hasher.feed()
    assert sorted(temporaries(models))
    trail.abandon("the file is no longer followed as it arrives")
    assert sorted(temporaries(models)) == []
    with path.open("ab") as out:
        out.write(b"more")
    hasher.feed()
    assert sorted(temporaries(models)) == [] and trail.copied == 0
    assert [e["reason"] for e in _discarded(capture)] == [
        "the file is no longer followed as it arrives"
    ]
    assert not trail.seal(hasher.finish())


def test_no_copy_trails_where_a_clone_or_a_link_would_place_the_file(tmp_path: Path) -> None:
    models, drop = tmp_path / "models", tmp_path / "drop"
    drop.mkdir()
    (models / "blobs").mkdir(parents=True)
    # Same file system, on_success "delete": a hard link places it, at no cost after the close.
    placer = Placer(models, "auto", on_success="delete", host=HOST)
    path = drop / "model.gguf"
    path.write_bytes(os.urandom(MiB))
    trail = placer.trail(path)
    assert trail is not None
    hasher = FollowingHasher(path, root=drop, sinks=[trail])
    hasher.feed()
    assert trail.copied == 0 and sorted(temporaries(models)) == []
    hasher.close()
    assert Placer(models, "link", on_success="delete", host=HOST).trail(path) is None


@pytest.fixture
def small_blobs(tmp_path: Path, tmpfs: Callable[[Path, str], Path]) -> Path:
    """A models folder whose blobs folder is a 2 MiB tmpfs."""
    tmpfs(tmp_path / "models" / "blobs", "2m")
    return tmp_path / "models"


def test_a_full_blobs_disk_drops_the_copy_and_the_hash_goes_on(
    tmp_path: Path, small_blobs: Path, capture: LogCapture
) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    placer = Placer(small_blobs, "copy", on_success="keep", host=HOST)
    data = os.urandom(4 * MiB)
    path = drop / "model.gguf"
    path.write_bytes(data)
    trail = TrailingCopy(placer, path)
    hasher = FollowingHasher(path, root=drop, sinks=[trail])
    result = hasher.finish(len(data))
    assert result.digest == _sha(data)
    assert not trail.seal(result)
    assert temporaries(small_blobs) == []
    [event] = _discarded(capture)
    assert "No space left on device" in str(event["reason"])


def test_a_file_cut_short_under_the_copy_does_not_end_its_follower(tmp_path: Path) -> None:
    """The hash read 2 MiB, then the writer truncated the file before the copy got there: the
    copy stops short without an error reaching the follower, and starts again with the hash."""
    models, drop, placer = _folders(tmp_path)
    path = drop / "model.gguf"
    path.write_bytes(os.urandom(2 * MiB))
    trail = TrailingCopy(placer, path)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.truncate(path, MiB)
        trail.advance(fd, 2 * MiB, _never)  # what the follower had hashed
        trail.reset()  # the follower saw it shrink
        data = os.urandom(MiB + 5)
        path.write_bytes(data)
        trail.advance(fd, len(data), _never)
    finally:
        os.close(fd)
    assert trail.seal(HashResult(_sha(data), _key(path)))
    [tmp] = sorted(temporaries(models))
    assert tmp.read_bytes() == data

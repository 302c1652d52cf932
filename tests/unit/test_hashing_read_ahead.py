"""Long reads are read ahead on a helper thread: same digests, same safeguards, no stray thread."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from dropzone.errors import StoppedError
from dropzone.imports.hashing import (
    READ_AHEAD_BUFFERS,
    READ_AHEAD_MIN_CHUNKS,
    FollowingHasher,
    RestartReason,
    read_chunks,
    sha256_file,
)

CHUNK = 4096
THRESHOLD = READ_AHEAD_MIN_CHUNKS * CHUNK  # from this length on, a helper thread reads ahead


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def readers_alive() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "hash-read-ahead"]


@pytest.mark.parametrize(
    "size", [THRESHOLD - 1, THRESHOLD, THRESHOLD + 1, 5 * THRESHOLD + 17, 40 * THRESHOLD]
)
def test_read_ahead_gives_the_same_digest_as_hashlib(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert sha256_file(path, chunk_size=CHUNK) == sha(data)
    result = FollowingHasher(path, chunk_size=CHUNK, head_size=10_000).finish(size)
    assert result.digest == sha(data)
    assert result.restarts == ()
    assert readers_alive() == []


@pytest.mark.parametrize("size", [10 * CHUNK, 4 * THRESHOLD], ids=["serial", "read-ahead"])
def test_stopping_between_chunks_raises_and_ends_any_reader(tmp_path: Path, size: int) -> None:
    path = tmp_path / "big.gguf"
    path.write_bytes(os.urandom(size))
    stop = threading.Event()
    progress: list[int] = []

    def on_progress(n: int) -> None:
        progress.append(n)
        if n >= 3 * CHUNK:
            stop.set()

    h = FollowingHasher(path, chunk_size=CHUNK, stop=stop.is_set, on_progress=on_progress)
    with pytest.raises(StoppedError):
        h.finish()
    assert progress[-1] == 3 * CHUNK  # nothing read ahead was hashed after the stop
    assert readers_alive() == []


def test_a_file_truncated_during_a_read_ahead_is_hashed_again_from_zero(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    data = os.urandom(8 * THRESHOLD)
    path.write_bytes(data)
    kept = 2 * THRESHOLD
    truncated: list[int] = []

    def truncate_once(n: int) -> None:
        if not truncated:
            # The reader is at most READ_AHEAD_BUFFERS chunks ahead: far from the new end.
            assert n + READ_AHEAD_BUFFERS * CHUNK < kept
            os.truncate(path, kept)
            truncated.append(n)

    h = FollowingHasher(path, chunk_size=CHUNK, on_progress=truncate_once)
    result = h.finish()
    assert truncated
    assert result.digest == sha(data[:kept])
    assert RestartReason.SHRANK in result.restarts
    assert readers_alive() == []


def test_a_read_error_in_the_reader_reaches_the_caller(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY)  # reading a directory fails with EISDIR
    try:
        chunks = read_chunks(fd, 0, 2 * THRESHOLD, memoryview(bytearray(CHUNK)))
        with pytest.raises(IsADirectoryError):
            next(chunks)
        chunks.close()
    finally:
        os.close(fd)
    assert readers_alive() == []

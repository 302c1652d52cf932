"""Hashing on real files: plain, following a growing file, its safeguards, and the cache."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from dropzone.errors import FileChangedError
from dropzone.imports.hashing import (
    FileKey,
    FollowingHasher,
    RestartReason,
    cached_digest,
    hash_file,
    remember,
    sha256_file,
)
from dropzone.store.state import StateStore

CHUNK = 4096
HEAD = 10_000  # deliberately not a multiple of CHUNK


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def bump_mtime(path: Path, seconds: int) -> None:
    """Move mtime by whole seconds, so tests do not depend on timestamp granularity."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 1_000_000_000))


def hasher(
    path: Path,
    *,
    stop: Callable[[], bool] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> FollowingHasher:
    return FollowingHasher(
        path, chunk_size=CHUNK, head_size=HEAD, stop=stop, on_progress=on_progress
    )


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK + 17])
def test_sha256_file_matches_hashlib_for_sizes_around_the_chunk(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert sha256_file(path, chunk_size=CHUNK) == sha(data)
    assert sha256_file(path) == sha(data)


def test_sha256_file_returns_prefixed_lowercase_hex(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    digest = sha256_file(path)
    assert digest == "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


@pytest.mark.parametrize("size", [0, 5, HEAD - 1, HEAD, HEAD + 1, 7 * CHUNK + 3])
def test_finish_on_a_complete_file_hashes_it_without_restarts(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    result = hasher(path).finish(expected_size=size)
    assert result.digest == sha(data)
    assert result.key == FileKey.from_stat(path.stat())
    assert result.size == size
    assert result.restarts == ()


def test_feed_hashes_only_the_bytes_present_and_follows_appends(tmp_path: Path) -> None:
    path = tmp_path / "growing.gguf"
    pieces = [os.urandom(n) for n in (3000, CHUNK * 3 + 5, 1, HEAD, 12345)]
    read: list[int] = []
    h = hasher(path, on_progress=read.append)
    written = b""
    with open(path, "wb", buffering=0) as f:
        for piece in pieces:
            f.write(piece)
            written += piece
            assert h.feed() == len(written)
    result = h.finish(expected_size=len(written))
    assert result.digest == sha(written)
    assert result.restarts == ()
    assert read[-1] == len(written)  # one pass: every byte read once (plus the head re-read)


def test_following_a_writer_thread_gives_the_digest_of_the_final_bytes(tmp_path: Path) -> None:
    path = tmp_path / "copy.gguf"
    path.touch()
    pieces = [os.urandom(64 * 1024) for _ in range(64)]
    half = sum(len(p) for p in pieces[:32])
    h = hasher(path)
    caught_up = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            with open(path, "ab", buffering=0) as f:
                for i, piece in enumerate(pieces):
                    if i == 32 and not caught_up.wait(10):
                        raise AssertionError("hasher never caught up with the first half")
                    f.write(piece)
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while thread.is_alive():
            if h.feed() >= half:
                caught_up.set()
        # Writer done: this is where readiness would call finish().
    finally:
        thread.join(10)
    assert not errors
    assert caught_up.is_set()  # the hasher really followed the copy mid-way
    data = b"".join(pieces)
    result = h.finish(expected_size=len(data))
    assert result.digest == sha(data)
    assert RestartReason.SHRANK not in result.restarts


def test_header_rewritten_last_with_a_newer_mtime_is_rehashed(tmp_path: Path) -> None:
    # llama.cpp's quantizer writes a zero placeholder header, the tensors, then the header.
    path = tmp_path / "quant.gguf"
    body = os.urandom(5 * CHUNK)
    header = b"GGUF" + os.urandom(996)
    h = hasher(path)
    with open(path, "wb") as f:
        f.write(bytes(len(header)))
        f.flush()
        h.feed()
        f.write(body)
        f.flush()
        h.feed()
        f.seek(0)
        f.write(header)
    bump_mtime(path, 1)
    result = h.finish(expected_size=len(header) + len(body))
    assert result.digest == sha(header + body)
    assert result.restarts == (RestartReason.REWRITTEN,)


def test_header_rewritten_within_the_same_mtime_tick_is_caught_by_the_head_check(
    tmp_path: Path,
) -> None:
    path = tmp_path / "quant.gguf"
    body = os.urandom(5 * CHUNK)
    header = b"GGUF" + os.urandom(996)
    with open(path, "wb") as f:
        f.write(bytes(len(header)) + body)
    h = hasher(path)
    h.feed()
    before = path.stat()
    with open(path, "r+b") as f:
        f.write(header)
    # A coarse timestamp: the rewrite leaves mtime where it was.
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    result = h.finish()
    assert result.digest == sha(header + body)
    assert result.restarts == (RestartReason.HEAD_CHANGED,)


def test_a_file_replaced_by_another_inode_restarts_from_zero(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(os.urandom(3 * CHUNK))
    h = hasher(path)
    h.feed()
    replacement = os.urandom(4 * CHUNK)
    (tmp_path / "tmp").write_bytes(replacement)
    os.replace(tmp_path / "tmp", path)
    h.feed()
    result = h.finish(expected_size=len(replacement))
    assert result.digest == sha(replacement)
    assert result.restarts == (RestartReason.REPLACED,)
    assert result.key.ino == path.stat().st_ino


def test_a_file_truncated_and_rewritten_restarts_from_zero(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(os.urandom(4 * CHUNK))
    h = hasher(path)
    h.feed()
    second = os.urandom(2 * CHUNK)
    path.write_bytes(second)  # O_TRUNC, same inode
    assert h.feed() == len(second)
    result = h.finish()
    assert result.digest == sha(second)
    assert result.restarts == (RestartReason.SHRANK,)


def test_times_set_back_after_the_copy_do_not_cost_a_second_read(tmp_path: Path) -> None:
    # scp -p / cp -p / rsync -t: the content is unchanged, only utimes() ran.
    path = tmp_path / "model.gguf"
    data = os.urandom(3 * CHUNK)
    path.write_bytes(data)
    h = hasher(path)
    h.feed()
    os.utime(path, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    result = h.finish()
    assert result.digest == sha(data)
    assert result.restarts == ()
    assert result.key.mtime_ns == 1_600_000_000_000_000_000


def test_growth_with_an_older_mtime_restarts_from_zero(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(os.urandom(CHUNK))
    h = hasher(path)
    h.feed()
    with open(path, "ab") as f:
        f.write(b"more")
    bump_mtime(path, -100)
    h.feed()
    result = h.finish()
    assert result.digest == sha(path.read_bytes())
    assert result.restarts == (RestartReason.MTIME_BACKWARDS,)


def test_one_newer_mtime_without_growth_then_growth_is_an_append_not_a_rewrite(
    tmp_path: Path,
) -> None:
    # Linux updates mtime before i_size, so a stat can land between the two during an append.
    path = tmp_path / "model.gguf"
    path.write_bytes(os.urandom(CHUNK))
    h = hasher(path)
    h.feed()
    bump_mtime(path, 1)
    h.feed()
    with open(path, "ab") as f:
        f.write(os.urandom(CHUNK))
    bump_mtime(path, 2)
    h.feed()
    result = h.finish()
    assert result.digest == sha(path.read_bytes())
    assert result.restarts == ()


def test_an_in_place_writer_is_detected_and_hashed_once_at_the_end(tmp_path: Path) -> None:
    # A download manager preallocates the full size, then fills it in place.
    path = tmp_path / "model.gguf"
    size = 4 * CHUNK
    path.write_bytes(bytes(size))
    read: list[int] = []
    h = hasher(path, on_progress=read.append)
    h.feed()
    final = os.urandom(size)
    for i in range(4):
        with open(path, "r+b") as f:
            f.seek(i * CHUNK)
            f.write(final[i * CHUNK : (i + 1) * CHUNK])
        bump_mtime(path, 1)
        h.feed()
    assert h.restarts == (RestartReason.REWRITTEN,)
    result = h.finish(expected_size=size)
    assert result.digest == sha(final)
    assert len(read) == 2 * (size // CHUNK)  # the first pass, then one more: no re-hash per write


def test_a_sparse_preallocated_file_is_not_followed_until_finish(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    size = 64 * 1024 * 1024
    with open(path, "wb") as f:
        f.truncate(size)
    if path.stat().st_blocks * 512 >= size // 2:
        pytest.skip("this file system does not create sparse files")
    h = hasher(path)
    assert h.feed() == 0
    result = h.finish(expected_size=size)
    assert result.digest == sha(bytes(size))


def test_finish_refuses_a_size_other_than_the_expected_one(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"x" * 100)
    with pytest.raises(FileChangedError, match="has 100 bytes, readiness expected 200"):
        hasher(path).finish(expected_size=200)


def test_finish_reports_a_vanished_file(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"x" * 100)
    h = hasher(path)
    path.unlink()
    with pytest.raises(FileChangedError, match="vanished"):
        h.finish()


def test_feed_waits_for_a_file_that_is_not_there_yet(tmp_path: Path) -> None:
    path = tmp_path / "later.gguf"
    h = hasher(path)
    assert h.feed() == 0
    path.write_bytes(b"now")
    assert h.feed() == 3
    assert h.finish().digest == sha(b"now")


def test_cache_returns_the_remembered_digest_until_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"weights")
    with StateStore.open(tmp_path / "state") as store:
        assert cached_digest(store, path) is None
        first = hash_file(path, store=store)
        assert not first.cached
        hit = cached_digest(store, path)
        assert hit is not None and hit.cached and hit.digest == sha(b"weights")
        assert hash_file(path, store=store).cached
        path.write_bytes(b"weights, v2")
        assert cached_digest(store, path) is None
        second = hash_file(path, store=store)
        assert second.digest == sha(b"weights, v2") and not second.cached


def test_cache_survives_a_restart_of_the_store(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"weights")
    with StateStore.open(tmp_path / "state") as store:
        remember(store, hasher(path).finish())
    with StateStore.open(tmp_path / "state") as store:
        hit = cached_digest(store, path)
    assert hit is not None and hit.digest == sha(b"weights")

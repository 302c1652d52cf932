"""Starting a file's writeback early (``imports.writeback``) is only a hint: it never changes
what is read or hashed, and where it cannot apply nothing happens."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pytest

from dropzone.imports.hashing import FollowingHasher
from dropzone.imports.writeback import start_writeback


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")
def test_it_starts_on_a_regular_file_and_leaves_its_bytes_alone(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    data = os.urandom(3 << 20)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.write(fd, data)
        assert start_writeback(fd, 0, 1 << 20) and start_writeback(fd, 1 << 20)
    finally:
        os.close(fd)
    assert path.read_bytes() == data


def test_it_reports_what_it_could_not_do_without_raising(tmp_path: Path) -> None:
    r, w = os.pipe()
    try:
        assert not start_writeback(r)  # a pipe has no pages to write
        assert not start_writeback(w, -1)
    finally:
        os.close(r)
        os.close(w)
    closed = os.open(tmp_path / "x", os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(closed)
    assert not start_writeback(closed)


def test_a_follower_writing_back_as_it_hashes_gets_the_same_digest(tmp_path: Path) -> None:
    path = tmp_path / "growing.bin"
    parts = [os.urandom(1 << 20) for _ in range(3)]
    with path.open("wb") as writer, FollowingHasher(path) as hasher:
        for part in parts:
            writer.write(part)
            writer.flush()
            hasher.feed()
            hasher.start_writeback()
        result = hasher.finish(3 << 20)
    assert result.digest == "sha256:" + hashlib.sha256(b"".join(parts)).hexdigest()

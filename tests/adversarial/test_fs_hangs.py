"""FIFOs swapped in where dropzone reads (issue 13): nothing blocks, stop is answered.

A FIFO opened for reading blocks until a writer comes; the daemon must never open one (every
open is ``O_NONBLOCK`` and then checked), and every thread stop waits for must end in bounded
time. The invariants: the daemon alive (a SIGHUP rescan completes), SIGTERM answered within
``STOP_SECONDS`` with exit 0.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from e2e_env import Dropzone

from dropzone.imports import follow
from dropzone.imports.follow import Followers
from dropzone.imports.hashing import FollowingHasher
from dropzone.testing.builders import build_gguf


@pytest.mark.timeout(60)
def test_a_followed_half_written_gguf_replaced_by_a_fifo_blocks_neither_loop_nor_stop(
    dropzone: Dropzone, tmp_path: Path
) -> None:
    process = dropzone.run()
    model = dropzone.drop / "half.gguf"
    build_gguf(tmp_path / "full.gguf", n_tensors=8, tensor_elems=4096)
    truncate_to = (tmp_path / "full.gguf").stat().st_size // 2
    model.write_bytes((tmp_path / "full.gguf").read_bytes()[:truncate_to])
    process.wait_for("artifact.pending", path=str(model), timeout=15)
    model.unlink()
    os.mkfifo(model)
    process.rescan(timeout=10)  # the main loop still answers
    process.rescan(timeout=10)  # and the followers' checks did not wedge it
    assert process.running
    assert process.stop() == 0  # within STOP_SECONDS, or stop() fails


@pytest.mark.timeout(60)
def test_a_sidecar_swapped_for_a_fifo_by_rename_blocks_neither_loop_nor_stop(
    dropzone: Dropzone, tmp_path: Path
) -> None:
    build_gguf(dropzone.drop / "tiny.gguf")
    (dropzone.drop / "tiny.json").write_text('{"model": "tiny-fifo"}')
    process = dropzone.run()
    process.wait_for("model.created", timeout=20)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    os.rename(fifo, dropzone.drop / "tiny.json")
    (dropzone.drop / "tiny.gguf").touch()  # the operator asks for a retry
    process.rescan(timeout=10)
    process.rescan(timeout=10)
    assert process.running
    assert process.stop() == 0


def follower_threads(path: Path) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"follow:{path.name}" and t.is_alive()]


class _BlockingHasher(FollowingHasher):
    """A hasher whose read never returns (a hung NFS server): only its thread is stuck."""

    release = threading.Event()

    def feed(self) -> int:
        _BlockingHasher.release.wait(30)
        return 0


@pytest.mark.timeout(30)
def test_cancelling_followers_returns_even_when_a_follower_thread_is_stuck(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(follow, "FollowingHasher", _BlockingHasher)
    path = tmp_path / "stuck.gguf"
    path.write_bytes(b"GGUF")
    followers = Followers(threading.Semaphore(2), threading.Event(), tmp_path)
    followers.follow(path)
    cancelling = threading.Thread(target=followers.drop_except, args=(lambda _p: False,))
    try:
        cancelling.start()
        # Returns on its own (it gives up waiting) while the read is still stuck: the stuck
        # thread is not released before the cancel has returned.
        cancelling.join(timeout=20)
        assert not cancelling.is_alive(), "drop_except waited for a stuck read"
        assert follower_threads(path)  # still stuck: left to end by itself
    finally:
        _BlockingHasher.release.set()


class _SlowHasher(FollowingHasher):
    """A hasher that takes a tenth of a second per 1 MiB chunk (a slow disk), and says when
    it has begun."""

    begun = threading.Event()
    gate = threading.Event()  # never set: each chunk waits its full tenth

    def __init__(self, path: Path, **kwargs: object) -> None:
        super().__init__(path, on_progress=self._progress, **kwargs)  # type: ignore[arg-type]

    def _progress(self, _hashed: int) -> None:
        _SlowHasher.begun.set()
        _SlowHasher.gate.wait(0.1)


@pytest.mark.timeout(30)
def test_a_cancelled_follower_stops_between_chunks_of_a_long_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(follow, "FollowingHasher", _SlowHasher)
    path = tmp_path / "big.gguf"
    path.write_bytes(bytes(1 << 20) * 64)  # 64 chunks: 6.4 s to read at this pace
    followers = Followers(threading.Semaphore(1), threading.Event(), tmp_path)
    followers.follow(path)
    assert _SlowHasher.begun.wait(10)
    followers.cancel_all()
    # cancel_all waits for the thread, a second at most: it ended between two chunks, rather
    # than being left behind reading the ~6 s of chunks still to come.
    assert not follower_threads(path)

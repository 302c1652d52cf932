"""A read of a regular file that does not return (a hung NFS or FUSE server): the hash of a
long file reads ahead on a helper thread, and a stop must not wait for that thread's read
(issue 13). The file is on a real FUSE mount whose reads past 4 MiB hang until released."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from slowfs import FAST_BYTES, SlowFile, SlowFsUnavailableError, slow_file

from dropzone.errors import StoppedError
from dropzone.imports.hashing import hash_file
from dropzone.testing.waiting import wait_until


@pytest.fixture
def slow(tmp_path: Path) -> Iterator[SlowFile]:
    try:
        mounted = slow_file(tmp_path)
        handle = mounted.__enter__()
    except SlowFsUnavailableError as exc:
        pytest.skip(str(exc))
    try:
        yield handle
    finally:
        mounted.__exit__(None, None, None)


@pytest.mark.timeout(60)
def test_a_hash_stops_while_its_read_ahead_thread_is_stuck_in_a_read(slow: SlowFile) -> None:
    stopping = threading.Event()
    hashed: list[int] = []
    ended: list[BaseException | None] = []

    def run() -> None:
        try:
            hash_file(slow.path, stop=stopping.is_set, on_progress=hashed.append)
        except BaseException as exc:  # the outcome the test looks at
            ended.append(exc)
        else:
            ended.append(None)

    thread = threading.Thread(target=run, name="test-hash", daemon=True)
    thread.start()
    wait_until(lambda: hashed and hashed[-1] >= FAST_BYTES, timeout=20, what="fast part hashed")
    stopping.set()
    # The read-ahead thread is still inside a read that never returns: the hash must end anyway.
    wait_until(lambda: ended, timeout=15, what="the hash to end after stop")
    assert isinstance(ended[0], StoppedError), ended[0]

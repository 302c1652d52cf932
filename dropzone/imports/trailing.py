"""A same-host copy that trails the follower (issue 17): while a drop file is still being
written, the bytes its follower has hashed are copied in the kernel into a temporary name in
the server's ``blobs/`` folder, hashed back from there and sent to disk. Once the file is
complete, what is left is its last bytes, the comparison of the copy's own digest with the
file's, and an ``fsync`` that finds little to write; the copy is then staged (``staging``) for
the import of record to commit, as an early copy made after the close would be.

Without it, a copy could only start once the digest was known, after the close: the whole
file copied, hashed back and flushed on the path from close to model (7.2 s for 2 GiB here,
``bench/RESULTS.md``), as long as an upload. Nothing is trusted for it being early: the copy
becomes a blob only if its own bytes, read back from the temporary, hash to the digest of
record, and the drop file still has the identity that digest was taken with at the commit.

The follower drives it (``advance`` after each read, ``reset`` when the hash starts over);
it is only an optimisation, so a failure (a full disk, a blobs folder gone) drops the copy
with a ``blob.discarded`` event and the blob is placed (or uploaded) as it would have been.
Only the copy method trails: a reflink or a hard link costs nothing after the close.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import structlog

from dropzone.errors import FileChangedError
from dropzone.fs.identity import FileKey
from dropzone.imports.blobfiles import (
    BLOB_MODE,
    copy_range,
    create_temporary,
    temporary_name,
    unlink_quietly,
)
from dropzone.imports.hashing import CHUNK_SIZE, HashResult, read_chunks
from dropzone.imports.staging import Staged

log = structlog.get_logger("dropzone.placement")

# ``abandon`` from another thread waits this long for a copy in progress (a read from the
# drop file that hangs): the temporary is then left for the next start's sweep.
ABANDON_WAIT_SECONDS = 1.0


class TrailTarget(Protocol):
    """What a trailing copy needs from its host's placer."""

    host: str
    blobs: Path

    def trails(self, dev: int) -> bool: ...
    def adopt(self, staged: Staged) -> None: ...


class TrailingCopy:
    """The copy of one drop file into one host's blobs folder, kept behind its follower."""

    def __init__(self, target: TrailTarget, path: Path) -> None:
        self.path = path
        self._target = target
        self._lock = threading.Lock()
        self._decided = False
        self._fd: int | None = None  # the temporary, while the copy lives
        self._tmp: Path | None = None
        self._copied = 0  # bytes copied and hashed back
        self._sha = hashlib.sha256()
        self._seconds = 0.0  # own time spent copying, hashing back and flushing
        self._view = memoryview(bytearray(0))

    @property
    def copied(self) -> int:
        return self._copied

    def advance(self, src: int, upto: int, stop: Callable[[], bool]) -> None:
        """Copy the drop file open as ``src`` up to byte ``upto`` (all hashed by the follower).
        Stops between chunks when ``stop()``; never raises for the copy's own failures."""
        with self._lock:
            if not self._decided:
                self._decided = True
                if not self._start(src):
                    return
            if self._fd is None or upto <= self._copied:
                return
            started = time.monotonic()
            try:
                self._copy(src, upto, stop)
            except FileChangedError:
                pass  # cut short under the copy: the follower's hash starts over, and so will it
            except OSError as exc:
                self._drop(f"the copy failed: {exc.strerror or exc}")
            finally:
                self._seconds += time.monotonic() - started

    def reset(self) -> None:
        """The follower's hash starts again from byte zero: so does the copy."""
        with self._lock:
            if self._fd is None:
                return
            try:
                os.ftruncate(self._fd, 0)
            except OSError as exc:
                self._drop(f"the copy could not start again: {exc.strerror or exc}")
                return
            self._copied, self._sha = 0, hashlib.sha256()

    def seal(self, result: HashResult) -> bool:
        """The follower's final digest is ``result``: a copy that reached the same bytes is
        made the blob's staged copy (mode 0644, fsynced); True when it was."""
        with self._lock:
            if self._fd is None or self._tmp is None:
                return False
            why = self._mismatch(result)
            if why is not None:
                self._drop(why, digest=result.digest)
                return False
            started = time.monotonic()
            try:
                os.fchmod(self._fd, BLOB_MODE)
                os.fsync(self._fd)
                tmp_key = FileKey.from_stat(os.lstat(self._tmp))
            except OSError as exc:
                self._drop(f"the copy could not be kept: {exc.strerror or exc}")
                return False
            fd, tmp, self._fd, self._tmp = self._fd, self._tmp, None, None
            os.close(fd)
            self._seconds += time.monotonic() - started
        staged = Staged(
            self.path, result.key, result.digest, tmp, tmp_key, "copy", result.size,
            self._seconds, trailed=True,
        )  # fmt: skip
        self._target.adopt(staged)
        return True

    def abandon(self, reason: str) -> None:
        """Remove the copy (the file will not be imported as followed). Waits
        ABANDON_WAIT_SECONDS at most for a copy in progress."""
        if not self._lock.acquire(timeout=ABANDON_WAIT_SECONDS):
            log.warning(
                "blob.discard.stuck",
                host=self._target.host,
                file=str(self.path),
                error="a copy in progress did not end in time; the next start removes it",
            )
            return
        try:
            self._decided = True  # a late ``advance`` must not start a new copy
            if self._fd is not None:
                self._drop(reason)
        finally:
            self._lock.release()

    # -- under the lock ------------------------------------------------------------------------

    def _start(self, src: int) -> bool:
        if not self._target.trails(os.fstat(src).st_dev):
            return False
        tmp = self._target.blobs / temporary_name()
        try:
            self._fd = create_temporary(tmp)
        except OSError as exc:
            log.info(
                "local_import.skipped",
                host=self._target.host,
                method="copy",
                path=str(self.path),
                reason=f"no copy while the file arrives: {exc.strerror or exc}",
            )
            return False
        self._tmp = tmp
        self._view = memoryview(bytearray(CHUNK_SIZE))
        return True

    def _copy(self, src: int, upto: int, stop: Callable[[], bool]) -> None:
        assert self._fd is not None
        while self._copied < upto and not stop():
            end = copy_range(src, self._fd, self._copied, upto, stop)
            self._hash_back(end)

    def _hash_back(self, end: int) -> None:
        """Hash the temporary's own bytes from ``_copied`` to ``end``, as read back from it."""
        assert self._fd is not None
        with contextlib.closing(read_chunks(self._fd, self._copied, end, self._view)) as chunks:
            for chunk in chunks:
                self._sha.update(chunk)
                self._copied += len(chunk)
        if self._copied < end:
            raise OSError(0, "the copy is shorter than what was written to it")

    def _mismatch(self, result: HashResult) -> str | None:
        assert self._fd is not None
        if self._copied != result.size or os.fstat(self._fd).st_size != result.size:
            return "the copy did not reach the end of the file"
        if "sha256:" + self._sha.hexdigest() != result.digest:
            return "the copied bytes do not match the digest"
        return None

    def _drop(self, reason: str, *, digest: str | None = None) -> None:
        if self._fd is not None:
            os.close(self._fd)
        if self._tmp is not None:
            unlink_quietly(self._tmp)
        log.info(
            "blob.discarded",
            host=self._target.host,
            digest=digest,
            file=str(self.path),
            method="copy",
            bytes=self._copied,
            reason=reason,
        )
        self._fd, self._tmp, self._copied = None, None, 0


"""sha256 of artifact files: streamed, followed while a file grows, cached by stat.

Every byte is read once, in large chunks, into reused buffers; ``hashlib`` releases the GIL
for updates over 2 KiB, so hashing on a worker thread does not stall the daemon. A long read
(``READ_AHEAD_MIN_CHUNKS`` chunks or more) is read ahead on a helper thread: the kernel's copy
out of the page cache took ~15 % of a hash pass (perf), serial with SHA-256. Overlapped, one
2 GiB file hashed 1.16x faster with the second core idle (0.98x the ``openssl speed`` ceiling),
and two files at once (both cores busy, nothing to overlap with) 4 % slower than serial reads
(bench/RESULTS.md, "Hash pass"); from a cold cache the disk reads overlap with hashing too.

``FollowingHasher`` hashes a file while it is still being written. Its digest is trusted only
when the file behaved like an append-only copy: same (device, inode) throughout, size never
shrinking, mtime never going back while it grows, no write that moved mtime on without growing
the file, and the leading region (where llama.cpp's quantizer rewrites the GGUF header last)
unchanged when re-read at the end. On any doubt it starts again from byte zero and records why.
An older mtime with an unchanged size is not a doubt: that is ``scp -p``/``cp -p`` setting
times after the copy, and treating it as one would cost a second read of every such file.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import queue
import threading
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Protocol

import structlog

from dropzone.errors import FileChangedError, StoppedError
from dropzone.fs.identity import FileKey
from dropzone.fs.safeopen import open_regular, open_verified
from dropzone.imports.writeback import start_writeback

MiB = 1024 * 1024
# Measured on a 2 GiB file in page cache (2-core VM with SHA-NI, alternated with openssl dgst):
# serial reads of 64 KiB to 4 MiB hashed at the same rate, and so did read-ahead in 1 or 4 MiB
# chunks. 1 MiB keeps a read-ahead's own three buffers and the caller's within what one 4 MiB
# buffer used to take.
CHUNK_SIZE = 1 * MiB
# A read at least this many chunks long is read ahead on a helper thread, into this many
# buffers (one is being hashed, one is being filled, one absorbs the jitter between them).
READ_AHEAD_MIN_CHUNKS = 16
READ_AHEAD_BUFFERS = 3
# A read that hangs (a dead NFS or FUSE server) must not hold a stop: a chunk awaited this long
# looks at ``stop``; closing a read ahead waits this long for its thread, then leaves it behind.
READ_AHEAD_STOP_CHECK_SECONDS = 0.1
READ_AHEAD_JOIN_SECONDS = 1.0
# The region re-read at the end (``head_size``; a caller knowing the GGUF header length may pass
# it). A header with a large vocabulary exceeds 1 MiB, but a quantizer's placeholder header is
# zeros, so its first bytes (the magic) differ anyway.
HEAD_SIZE = 1 * MiB
# finish() hashes again at most this often before declaring the file unstable.
MAX_FINISH_PASSES = 3

log = structlog.get_logger(__name__)


def sha256_file(path: Path, *, chunk_size: int = CHUNK_SIZE) -> str:
    """Return ``"sha256:<64 lowercase hex>"`` of the file's bytes (no stability checks)."""
    digest = hashlib.sha256()
    view = memoryview(bytearray(chunk_size))
    with (
        open(path, "rb", buffering=0) as f,
        contextlib.closing(read_chunks(f.fileno(), 0, None, view)) as chunks,
    ):
        for chunk in chunks:
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def read_chunks(
    fd: int,
    start: int,
    end: int | None,
    view: memoryview,
    stop: Callable[[], bool] | None = None,
) -> Generator[memoryview, None, None]:
    """The bytes of ``fd`` from ``start`` to ``end`` (``None``: its end), in order, at most
    ``len(view)`` at a time; stops early at the end of the file. Each chunk is valid until the
    next one is asked for. Close the iterator when stopping early (it may own a thread).
    ``stop`` returning true while a read ahead is awaited raises ``StoppedError``."""
    size = len(view)
    length = (os.fstat(fd).st_size if end is None else end) - start
    if length >= READ_AHEAD_MIN_CHUNKS * size:
        yield from _read_ahead(fd, start, end, size, stop or (lambda: False))
        return
    offset = start
    while end is None or offset < end:
        n = os.preadv(fd, [view[: size if end is None else min(size, end - offset)]], offset)
        if not n:
            return
        yield view[:n]
        offset += n


def _read_ahead(
    fd: int, start: int, end: int | None, size: int, stop: Callable[[], bool]
) -> Generator[memoryview, None, None]:
    """``read_chunks`` with the next chunks read by a helper thread while the caller uses this one.

    Buffers go round between two queues: ``free`` (the caller is done with them) and ``ready``
    (filled, in file order). The reader ends with ``None`` (end of range or file) or the
    exception it met. A read can hang (a dead NFS or FUSE server), so nothing waits for the
    reader without a bound: the caller polls ``stop`` while it waits for a chunk, and closing
    the iterator waits ``READ_AHEAD_JOIN_SECONDS`` at most. A reader left behind owns its
    buffers and its own descriptor (a ``dup``), so it can never write into memory the caller
    uses again, nor read a file opened later under a reused descriptor number.
    """
    free: queue.SimpleQueue[memoryview | None] = queue.SimpleQueue()
    ready: queue.SimpleQueue[tuple[memoryview, int] | BaseException | None] = queue.SimpleQueue()
    for _ in range(READ_AHEAD_BUFFERS):
        free.put(memoryview(bytearray(size)))
    halt = threading.Event()
    own_fd = os.dup(fd)

    def reader() -> None:
        offset = start
        try:
            while end is None or offset < end:
                buffer = free.get()
                if buffer is None or halt.is_set():
                    return
                want = size if end is None else min(size, end - offset)
                n = os.preadv(own_fd, [buffer[:want]], offset)
                if not n:
                    break
                ready.put((buffer, n))
                offset += n
        except BaseException as exc:  # handed to the caller, who raises it
            ready.put(exc)
            return
        finally:
            os.close(own_fd)
        ready.put(None)

    thread = threading.Thread(target=reader, name="hash-read-ahead", daemon=True)
    thread.start()
    try:
        while (item := _next_ready(ready, stop)) is not None:
            if isinstance(item, BaseException):
                raise item
            buffer, n = item
            yield buffer[:n]
            free.put(buffer)
    finally:
        halt.set()
        free.put(None)  # wakes a reader waiting for a buffer
        thread.join(READ_AHEAD_JOIN_SECONDS)
        if thread.is_alive():
            log.warning(
                "hash.read_ahead.stuck",
                error="a read did not return in time; its thread is left to end by itself",
            )


def _next_ready(
    ready: queue.SimpleQueue[tuple[memoryview, int] | BaseException | None],
    stop: Callable[[], bool],
) -> tuple[memoryview, int] | BaseException | None:
    """The reader's next item; ``StoppedError`` if ``stop`` turns true while it is awaited."""
    while True:
        try:
            return ready.get(timeout=READ_AHEAD_STOP_CHECK_SECONDS)
        except queue.Empty:
            if stop():
                raise StoppedError("stopped while waiting for a read") from None


@dataclass(frozen=True)
class HashResult:
    digest: str  # "sha256:<hex>"
    key: FileKey  # the file state the digest describes
    restarts: tuple[RestartReason, ...] = ()
    cached: bool = False

    @property
    def size(self) -> int:
        return self.key.size


class RestartReason(StrEnum):
    SHRANK = "shrank"  # size fell below what was hashed: truncated or rewritten
    REPLACED = "replaced"  # the path now names another (device, inode)
    REWRITTEN = "rewritten"  # mtime moved on but the size did not grow: a write in hashed bytes
    MTIME_BACKWARDS = "mtime-backwards"  # grew, yet mtime older than already seen
    HEAD_CHANGED = "head-changed"  # the leading region differs from what was hashed


class DigestStore(Protocol):
    """What the cache needs from the state store (``dropzone.store.state.StateStore`` has it)."""

    def get_digest(self, key: FileKey) -> str | None: ...
    def put_digest(self, key: FileKey, digest: str) -> None: ...


class BytesSink(Protocol):
    """Told of the bytes a ``FollowingHasher`` has hashed (a copy kept behind it, issue 17)."""

    def advance(self, src: int, upto: int, stop: Callable[[], bool]) -> None: ...
    def reset(self) -> None: ...


class FollowingHasher:
    """Hash a file while it is written; driven by the caller, on one thread.

    Call ``feed()`` whenever the file may have grown (a watcher event, a short poll): it hashes
    the bytes present now, never past the current size. Call ``finish(expected_size)`` once
    readiness says the file is complete: it catches up, verifies, and returns the result.
    ``stop()`` returning true aborts either with ``StoppedError`` between chunks.
    """

    def __init__(
        self,
        path: Path,
        *,
        chunk_size: int = CHUNK_SIZE,
        head_size: int = HEAD_SIZE,
        stop: Callable[[], bool] | None = None,
        on_progress: Callable[[int], None] | None = None,
        root: Path | None = None,
        sinks: Sequence[BytesSink] = (),
    ) -> None:
        self.path = path
        self._sinks = tuple(sinks)
        # Under the drop folder every open goes through ``open_verified``; ``dropzone check``
        # hashes paths given on its command line, wherever they are.
        self._root = root
        self._chunk_size = chunk_size
        self._head_size = head_size
        self._stop = stop or (lambda: False)
        self._on_progress = on_progress
        self._view = memoryview(bytearray(chunk_size))
        self._file: io.FileIO | None = None
        self._identity = (0, 0)
        self._restarts: list[RestartReason] = []
        self._digest = hashlib.sha256()
        self._head = hashlib.sha256()  # of the first head_size bytes hashed
        self._hashed = 0
        self._last: os.stat_result | None = None  # fstat taken before the last read
        self._max_mtime_ns = 0
        self._suspect = False  # saw a newer mtime without growth, not yet explained
        self._deferred = False
        self._written_back = 0  # bytes handed to ``start_writeback`` in this pass

    # -- public -------------------------------------------------------------------------

    @property
    def hashed(self) -> int:
        """Bytes hashed so far in the current pass."""
        return self._hashed

    @property
    def restarts(self) -> tuple[RestartReason, ...]:
        return tuple(self._restarts)

    def feed(self) -> int:
        """Hash the bytes present now; return the bytes hashed so far in this pass."""
        if not self._deferred:
            # Renamed away, not there yet, or not a file we may open: the next feed looks again.
            with contextlib.suppress(OSError):
                self._catch_up(final=False)
        return self._hashed

    def finish(self, expected_size: int | None = None) -> HashResult:
        """Catch up, verify the file did not change behind the digest, and return it.

        Raises ``FileChangedError`` if the file vanished, its size is not ``expected_size``,
        or it kept changing over several passes; ``StoppedError`` if stopped.
        """
        try:
            for _ in range(MAX_FINISH_PASSES):
                result = self._finish_pass(expected_size)
                if result is not None:
                    return result
            raise FileChangedError(str(self.path), "kept changing while being hashed")
        finally:
            self.close()

    def start_writeback(self) -> None:
        """Start writing the bytes hashed so far to disk, without waiting (``writeback``):
        what the file's blob placement would otherwise flush after the close."""
        if self._file is not None and self._hashed > self._written_back:
            start = min(self._written_back, self._hashed)
            start_writeback(self._file.fileno(), start, self._hashed - start)
            self._written_back = self._hashed

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> FollowingHasher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------

    def _reset(self) -> None:
        self.close()
        self._digest = hashlib.sha256()
        self._head = hashlib.sha256()
        self._hashed = 0
        self._last = None
        self._max_mtime_ns = 0
        self._suspect = False
        self._deferred = False
        self._written_back = 0
        for sink in self._sinks:
            sink.reset()

    def _restart(self, reason: RestartReason) -> None:
        log.info("hash.restarted", path=str(self.path), reason=str(reason), hashed=self._hashed)
        self._restarts.append(reason)
        self._reset()

    def _stat_open(self) -> os.stat_result:
        """fstat of the open file (opening it if needed); REPLACED if the path moved on."""
        if self._file is None:
            root = self._root
            fd = open_regular(self.path) if root is None else open_verified(root, self.path)
            self._file = io.FileIO(fd, "rb")
            st = os.fstat(self._file.fileno())
            self._identity = (st.st_dev, st.st_ino)
            return st
        path_st = os.stat(self.path)
        if (path_st.st_dev, path_st.st_ino) != self._identity:
            self._restart(RestartReason.REPLACED)
            return self._stat_open()
        return os.fstat(self._file.fileno())

    def _catch_up(self, *, final: bool) -> None:
        st = self._stat_open()
        reason = self._doubt(st, final=final)
        if reason is RestartReason.REWRITTEN and not final:
            # The writer is not append-only (preallocation, in-place edits): following it
            # would re-hash on every write, so wait for finish() and hash once.
            self._restart(reason)
            self._deferred = True
            return
        if reason is not None:
            self._restart(reason)
            st = self._stat_open()
        if final or not _mostly_sparse(st):
            self._read_to(st)

    def _doubt(self, st: os.stat_result, *, final: bool) -> RestartReason | None:
        """Why the bytes hashed so far may not be the file's bytes any more, if they may not."""
        if st.st_size < self._hashed:
            return RestartReason.SHRANK
        last = self._last
        if last is None:
            return None
        if st.st_size == last.st_size:
            # A newer mtime without growth is a write inside the hashed bytes, or an append
            # caught between its mtime update and its size update (Linux bumps mtime first).
            # A second such sighting in a row, or one still unexplained at the end, decides.
            newer = st.st_mtime_ns > last.st_mtime_ns
            if (final and (newer or self._suspect)) or (newer and self._suspect):
                return RestartReason.REWRITTEN
            self._suspect = self._suspect or newer
            # An older mtime is utimes() after the copy (scp -p, cp -p, rsync -t, curl -R):
            # a write would set mtime to now, so the content is unchanged.
            return None
        self._suspect = False  # it grew: the newer mtime belonged to an append
        if st.st_mtime_ns < self._max_mtime_ns:
            return RestartReason.MTIME_BACKWARDS  # grew, yet older: not one append-only writer
        return None

    def _read_to(self, st: os.stat_result) -> None:
        """Hash from what is hashed so far up to ``st.st_size`` (never past it)."""
        assert self._file is not None
        limit = st.st_size
        chunks = read_chunks(self._file.fileno(), self._hashed, limit, self._view, self._stop)
        with contextlib.closing(chunks):
            for chunk in chunks:
                if self._stop():
                    raise StoppedError(f"hashing {self.path} stopped")
                self._digest.update(chunk)
                if self._hashed < self._head_size:
                    self._head.update(chunk[: self._head_size - self._hashed])
                self._hashed += len(chunk)
                if self._on_progress is not None:
                    self._on_progress(self._hashed)
        if self._hashed < limit:  # the file shrank between fstat and read
            self._restart(RestartReason.SHRANK)
            return
        for sink in self._sinks:
            sink.advance(self._file.fileno(), self._hashed, self._stop)
        self._last = st
        self._max_mtime_ns = max(self._max_mtime_ns, st.st_mtime_ns)

    def _finish_pass(self, expected_size: int | None) -> HashResult | None:
        """One catch-up-and-verify pass; None when another pass is needed."""
        self._deferred = False
        try:
            self._catch_up(final=True)
            st = self._stat_open()
        except FileNotFoundError:
            raise FileChangedError(str(self.path), "vanished while being hashed") from None
        except OSError as exc:  # replaced by a link out of the drop folder, a FIFO…
            raise FileChangedError(str(self.path), exc.strerror or str(exc)) from exc
        if expected_size is not None and st.st_size != expected_size:
            raise FileChangedError(
                str(self.path), f"has {st.st_size} bytes, readiness expected {expected_size}"
            )
        reason = self._doubt(st, final=True)
        if reason is None and st.st_size != self._hashed:
            return None  # grew since the catch-up: catch up again in the next pass
        if reason is None and not self._head_unchanged():
            reason = RestartReason.HEAD_CHANGED
        if reason is not None:
            self._restart(reason)
            return None
        # The head re-read only proves something if nothing was written meanwhile.
        after = self._stat_open()
        if (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
            return None
        digest = "sha256:" + self._digest.hexdigest()
        return HashResult(digest, FileKey.from_stat(st), tuple(self._restarts))

    def _head_unchanged(self) -> bool:
        assert self._file is not None
        length = min(self._head_size, self._hashed)
        head = os.pread(self._file.fileno(), length, 0)
        return len(head) == length and hashlib.sha256(head).digest() == self._head.digest()


def _mostly_sparse(st: os.stat_result) -> bool:
    """A file with most of its size unallocated was preallocated (download managers); its
    holes are not data yet, so following it would hash zeros only to hash it again."""
    blocks = getattr(st, "st_blocks", None)
    return blocks is not None and st.st_size > HEAD_SIZE and blocks * 512 < st.st_size // 2


def cached_digest(store: DigestStore, path: Path) -> HashResult | None:
    """The cached digest for the file as it is now, or None."""
    key = FileKey.from_stat(os.stat(path))
    digest = store.get_digest(key)
    return None if digest is None else HashResult(digest, key, cached=True)


def remember(store: DigestStore, result: HashResult) -> None:
    store.put_digest(result.key, result.digest)


def hash_file(
    path: Path,
    *,
    store: DigestStore | None = None,
    expected_size: int | None = None,
    stop: Callable[[], bool] | None = None,
    on_progress: Callable[[int], None] | None = None,
    root: Path | None = None,
) -> HashResult:
    """Digest of a file that is complete now: from the cache, else hashed, checked and cached."""
    hit = None if store is None else cached_digest(store, path)
    if hit is not None and (expected_size is None or hit.size == expected_size):
        return hit
    hasher = FollowingHasher(path, stop=stop, on_progress=on_progress, root=root)
    result = hasher.finish(expected_size)
    if store is not None:
        remember(store, result)
    return result

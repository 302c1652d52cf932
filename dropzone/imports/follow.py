"""Hash files while they are still being copied, so the digest is ready when the copy ends.

One ``Follower`` per growing file, each on its own thread, bounded by the hash slots: a file
that finds no free slot is simply hashed after it is complete. The follower polls the file
(cheap: one fstat, then only the new bytes) until ``finish`` is called.

A follower keeps its slot for as long as the copy lasts, hours over a slow link. A complete
file must not wait that long, so ``Followers.slot()`` takes a slot from a follower when none
comes free quickly; the preempted file is followed again later, or hashed once complete.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import structlog

from dropzone.errors import DropzoneError, StoppedError
from dropzone.imports.hashing import FollowingHasher, HashResult
from dropzone.imports.trailing import TrailingCopy

log = structlog.get_logger("dropzone.follow")

POLL_SECONDS = 0.02
PREEMPT_AFTER_SECONDS = 0.05  # a slot held by a hash of a complete file frees in this order
# How long ``cancel`` waits for a follower's thread. It stops between chunks (1 MiB), so this is
# only reached when a read itself hangs (a dead NFS server): the thread is then left behind, a
# daemon thread that closes its file and frees its slot if the read ever returns (issue 13).
CANCEL_WAIT_SECONDS = 1.0


class HashSlots(threading.Semaphore):
    """The hash slots, counting the ones taken: a slot must never outlive its reason (issue 11),
    and ``in_use`` lets a test (and a debugger) see that."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self._count_lock = threading.Lock()
        self._taken = 0

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        got = super().acquire(blocking, timeout)
        if got:
            with self._count_lock:
                self._taken += 1
        return got

    def release(self, n: int = 1) -> None:
        with self._count_lock:
            self._taken -= n
        super().release(n)

    @property
    def in_use(self) -> int:
        with self._count_lock:
            return self._taken


class Follower:
    def __init__(
        self,
        path: Path,
        slots: threading.Semaphore,
        stop: threading.Event,
        root: Path | None = None,
        *,
        write_back: bool = False,
        trails: Sequence[TrailingCopy] = (),
    ) -> None:
        self.path = path
        self._write_back = write_back
        self._trails = tuple(trails)
        self._ended = False  # the following thread is past its loop (under _release_lock)
        self._slots = slots
        self._halt = threading.Event()
        self._cancelled = False
        # The slot goes from the following thread to ``finish``'s caller, who holds it through
        # the final pass (a full re-hash on doubt): released once, by whoever ends last.
        self._finishing = False
        self._released = False
        self._release_lock = threading.Lock()
        self._stopping = stop
        self._thread = threading.Thread(target=self._loop, name=f"follow:{path.name}", daemon=True)
        self._hasher = FollowingHasher(path, stop=self._interrupted, root=root, sinks=trails)
        self._thread.start()

    def _interrupted(self) -> bool:
        """Checked between chunks: the daemon stops, or (on this follower's own thread only)
        following ends. ``finish`` catches up on the caller's thread, which ``halt`` must not
        interrupt."""
        if self._stopping.is_set():
            return True
        return self._halt.is_set() and threading.current_thread() is self._thread

    def _loop(self) -> None:
        try:
            while not self._halt.is_set() and not self._stopping.is_set():
                self._hasher.feed()
                if self._write_back:
                    self._hasher.start_writeback()
                self._halt.wait(POLL_SECONDS)
        except DropzoneError as exc:
            log.debug("hash.follow.stopped", path=str(self.path), error=str(exc))
        finally:
            with self._release_lock:
                self._ended = True
                cancelled = self._cancelled
                keep = self._finishing  # ``finish`` holds the slot from here on
            if cancelled:
                self._hasher.close()  # here, never under a read still in progress
                self._end_trails()
            if not keep:
                self._release_slot()

    def _release_slot(self) -> None:
        with self._release_lock:
            if self._released:
                return
            self._released = True
        self._slots.release()

    def finish(self, expected_size: int | None) -> HashResult:
        """Stop following, catch up with the last bytes, verify, and return the digest; the
        hash slot is held until then."""
        with self._release_lock:
            self._finishing = True
            lost = self._released  # the thread ended on its own (an error) and freed it
            self._released = False
        while lost and not self._slots.acquire(timeout=POLL_SECONDS * 5):
            if self._stopping.is_set():
                with self._release_lock:
                    self._released = True
                raise StoppedError(f"following {self.path} stopped")
        self._halt.set()
        try:
            while self._thread.is_alive():  # ends between two chunks; a stop does not wait
                self._thread.join(POLL_SECONDS * 5)
                if self._stopping.is_set() and self._thread.is_alive():
                    raise StoppedError(f"following {self.path} stopped")
            # The hasher checks identity, growth and the leading region; it re-hashes on doubt.
            result = self._hasher.finish(expected_size)
        except BaseException:
            self._end_trails()
            raise
        finally:
            self._release_slot()
        for trail in self._trails:
            trail.seal(result)
        return result

    def cancel(self, deadline: float | None = None) -> None:
        """Stop following; waits until ``deadline`` (monotonic; default: CANCEL_WAIT_SECONDS
        from now) at most. The thread closes the file itself."""
        self.halt()
        wait = CANCEL_WAIT_SECONDS if deadline is None else deadline - time.monotonic()
        self._thread.join(max(0.0, wait))
        if not self._thread.is_alive():
            self._hasher.close()  # it may have ended on a stop, before the cancel
            self._end_trails()
        else:
            log.warning(
                "hash.follow.stuck",
                path=str(self.path),
                error="a read did not return in time; its thread is left to end by itself",
            )

    def halt(self) -> None:
        """Stop following without waiting: the thread closes the file and frees the slot
        itself, at the end of its current chunk (never a wait on the main loop)."""
        with self._release_lock:
            self._cancelled = True
            ended = self._ended
        self._halt.set()
        if ended:  # else the thread ends them itself, at the end of its current chunk
            self._end_trails()

    def _end_trails(self) -> None:
        """Remove the copies kept behind this follower: its file is not imported as followed
        (a copy already sealed is the import's to commit, and stays)."""
        reason = "stopping" if self._stopping.is_set() else "the file is no longer followed"
        for trail in self._trails:
            trail.abandon(reason)


class Followers:
    """The followers of the daemon, by path."""

    def __init__(
        self,
        slots: threading.Semaphore,
        stop: threading.Event,
        root: Path | None = None,
        *,
        write_back: bool = False,
        trails: Callable[[Path], Sequence[TrailingCopy]] | None = None,
    ) -> None:
        self._slots = slots
        self._trails = trails  # the copies to keep behind a follower (a same-host store)
        self._stop = stop
        self.root = root  # the drop folder: every file is opened through open_verified
        # A host's store is on this machine (issue 17): the blob placement fsyncs (or clones)
        # the drop file, so its bytes are sent to disk as they are hashed, not after the close.
        self.write_back = write_back
        self._by_path: dict[Path, Follower] = {}
        self._lock = threading.Lock()
        self._wanted = 0  # complete files waiting for a slot: start no follower meanwhile

    def follow(self, path: Path) -> None:
        """Start following ``path`` if a hash slot is free and nobody follows it yet."""
        with self._lock:
            if path in self._by_path or self._wanted:
                return
            if not self._slots.acquire(blocking=False):
                return
            trails = () if self._trails is None else self._trails(path)
            self._by_path[path] = Follower(
                path, self._slots, self._stop, self.root, write_back=self.write_back, trails=trails
            )
            log.debug("hash.follow.started", path=str(path))

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold a hash slot for a complete file, taking one from a follower if need be."""
        with self._lock:
            self._wanted += 1
        try:
            while not self._slots.acquire(timeout=PREEMPT_AFTER_SECONDS):
                if self._stop.is_set():
                    raise StoppedError("stopping")
                self._preempt_one()
        finally:
            with self._lock:
                self._wanted -= 1
        try:
            yield
        finally:
            self._slots.release()

    def _preempt_one(self) -> None:
        with self._lock:
            if not self._by_path:
                return
            # The newest follower has hashed the least: the least work is lost.
            path = next(reversed(self._by_path))
            follower = self._by_path.pop(path)
        follower.cancel()  # its thread releases the slot
        log.debug("hash.follow.preempted", path=str(path))

    def live(self) -> list[Path]:
        """The files followed now, sorted (issue 11: none outlives its reason; tests list them)."""
        with self._lock:
            return sorted(self._by_path)

    def take(self, path: Path) -> Follower | None:
        with self._lock:
            return self._by_path.pop(path, None)

    def release(self, gone: Callable[[Path], bool]) -> list[Path]:
        """Stop following the files ``gone`` says can no longer become an import (issue 11),
        without waiting: each thread frees its slot at the end of its current chunk."""
        with self._lock:
            paths = [p for p in self._by_path if gone(p)]
            followers = [self._by_path.pop(p) for p in paths]
        for path, follower in zip(paths, followers, strict=True):
            follower.halt()
            log.debug("hash.follow.stopped", path=str(path), reason="not an import as it is")
        return paths

    def drop_except(self, keep: Callable[[Path], bool]) -> None:
        """Cancel followers of files that are gone or no longer wanted: all are told at once,
        then waited for together, CANCEL_WAIT_SECONDS at most in all."""
        with self._lock:
            gone = [p for p in self._by_path if not keep(p)]
            followers = [self._by_path.pop(p) for p in gone]
        for follower in followers:
            follower.halt()
        deadline = time.monotonic() + CANCEL_WAIT_SECONDS
        for follower in followers:
            follower.cancel(deadline)

    def cancel_all(self) -> None:
        self.drop_except(lambda _p: False)

"""The watcher: file-system events (watchdog's inotify, or polling) → ``Change`` hints on a queue.

Events are only a trigger: they say "look at this path again". The daemon reconciles the
drop folder against the state store on every hint, at start and on every rescan, so a lost or
duplicated event can delay work but never cause wrong work. No watchdog type leaves this module.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import structlog
from watchdog.events import (
    DirAttribEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
    FileSystemMovedEvent,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from dropzone.fs import info as fsinfo
from dropzone.service._overflow import OverflowObserver
from dropzone.service.watch_mode import WatchPlan, WatchSetting, decide, out_of_watches

log = structlog.get_logger("dropzone.watcher")

# What the kernel answers when inotify runs out: watches (ENOSPC) or instances (EMFILE).
_INOTIFY_REFUSALS = (errno.ENOSPC, errno.EMFILE)


# Not "opened" nor "closed without writing": dropzone's own header reads would raise them by
# the thousand on every rescan (measured: 1.1 s of inotify traffic per 10,000 files).
_WANTED_EVENTS = (
    DirAttribEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    DirMovedEvent,
    FileAttribEvent,  # ``touch``: new mtime, same bytes (how an operator asks for a retry)
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
)


class ChangeKind(StrEnum):
    CHANGED = "changed"  # created, modified, moved here: look again
    CLOSED = "closed"  # a writer closed the file: readiness may shorten its quiet wait
    REMOVED = "removed"  # deleted or moved away
    RESCAN = "rescan"  # events were lost (overflow) or a rescan was asked for: look at everything


@dataclass(frozen=True)
class Change:
    kind: ChangeKind
    path: Path | None = None


class ChangeQueue:
    """A coalescing, bounded queue of hints, safe across threads.

    A path already waiting is not queued twice. When more than ``limit`` distinct paths wait,
    the individual hints are dropped in favour of one RESCAN: a full reconciliation is cheaper
    than an unbounded backlog, and it is what an overflow means anyway.
    """

    def __init__(self, limit: int = 10_000) -> None:
        self._limit = limit
        self._pending: dict[Path, ChangeKind] = {}
        self._rescan = False
        self._cond = threading.Condition()

    def put(self, change: Change) -> None:
        with self._cond:
            if change.kind is ChangeKind.RESCAN or change.path is None:
                self._rescan = True
                self._pending.clear()
            elif not self._rescan:
                previous = self._pending.get(change.path)
                # CLOSED carries more information than CHANGED; never downgrade it.
                if previous is not ChangeKind.CLOSED or change.kind is ChangeKind.REMOVED:
                    self._pending[change.path] = change.kind
                if len(self._pending) > self._limit:
                    self._rescan = True
                    self._pending.clear()
            self._cond.notify_all()

    def drain(self, timeout: float | None = None) -> list[Change]:
        """Everything waiting now (a RESCAN alone if one was asked for); [] after ``timeout``."""
        with self._cond:
            if not self._rescan and not self._pending:
                self._cond.wait(timeout)
            if self._rescan:
                self._rescan = False
                self._pending.clear()
                return [Change(ChangeKind.RESCAN)]
            changes = [Change(kind, path) for path, kind in self._pending.items()]
            self._pending.clear()
            return changes

    def wake(self) -> None:
        """Release a waiting ``drain`` without a change (used at shutdown)."""
        with self._cond:
            self._cond.notify_all()


class _Handler(FileSystemEventHandler):
    """Translates and enqueues, nothing more: it runs on watchdog's single dispatch thread."""

    def __init__(self, sink: ChangeQueue, ignore: Callable[[Path], bool]) -> None:
        self._sink = sink
        self._ignore = ignore

    def _put(self, kind: ChangeKind, raw: bytes | str) -> None:
        path = Path(os.fsdecode(raw))
        if not self._ignore(path):
            self._sink.put(Change(kind, path))

    def on_any_event(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        if kind in ("opened", "closed_no_write"):
            return
        if isinstance(event, FileSystemMovedEvent):
            self._put(ChangeKind.REMOVED, event.src_path)
            self._put(ChangeKind.CHANGED, event.dest_path)
        elif kind == "deleted":
            self._put(ChangeKind.REMOVED, event.src_path)
        elif isinstance(event, FileClosedEvent):
            self._put(ChangeKind.CLOSED, event.src_path)
        else:
            self._put(ChangeKind.CHANGED, event.src_path)


def native_events_work(root: Path, timeout: float = 2.0) -> bool:
    """Create a hidden probe file in ``root`` and report whether inotify tells us about it.

    NFS, SMB, FUSE and some container mounts accept inotify watches but never deliver events
    for changes made elsewhere (or at all); only a real probe tells.
    """
    seen = threading.Event()
    probe = root / f".dropzone-probe-{uuid.uuid4().hex}"

    class _Probe(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            if Path(os.fsdecode(event.src_path)).name == probe.name:
                seen.set()

    observer = Observer()
    observer.schedule(_Probe(), str(root), recursive=False)
    observer.start()
    try:
        probe.write_bytes(b"")
        return seen.wait(timeout)
    except OSError:
        # A read-only drop folder cannot be probed; polling is the choice that cannot miss.
        return False
    finally:
        # Stop watching before deleting, so the deletion is not delivered to a stopping emitter.
        observer.stop()
        observer.join()
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)


class Watcher:
    """Watches ``root`` recursively and puts hints on ``sink`` until stopped."""

    def __init__(
        self,
        root: Path,
        sink: ChangeQueue,
        *,
        setting: WatchSetting = "auto",
        poll_interval: float = 0,
        ignore: Callable[[Path], bool] = lambda _p: False,
        probe: Callable[[Path], bool] = native_events_work,
    ) -> None:
        self._root = root
        self._sink = sink
        self._setting = setting
        self._poll_interval = poll_interval
        self._ignore = ignore
        self._probe = probe
        self._observer: BaseObserver | None = None
        self.plan: WatchPlan | None = None  # how and why, once started
        self.fs_type: str | None = None
        self._identity: tuple[int, int] | None = None  # (dev, ino) of the folder watched

    @property
    def mode(self) -> str:
        return self.plan.mode if self.plan else ""

    @property
    def fallback(self) -> bool:
        """True when native events were wanted but could not be had."""
        return self.plan is not None and self.plan.fallback

    def moved(self) -> bool:
        """True when ``root`` is no longer the folder being watched: deleted, or deleted and
        re-created (inotify keeps watching the dead inode and reports nothing, issue 13). One
        ``stat``: cheap enough for every turn of the daemon's loop."""
        try:
            st = os.stat(self._root)
        except OSError:
            return True
        return (st.st_dev, st.st_ino) != self._identity

    def start(self) -> str:
        """Start watching; return the mode used: ``native`` or ``polling`` (``plan`` says why)."""
        st = os.stat(self._root)
        self._identity = (st.st_dev, st.st_ino)
        mount = fsinfo.file_system_of(self._root)
        self.fs_type = mount.fs_type if mount else None
        try:
            plan = decide(
                self._setting, self._poll_interval, self.fs_type, lambda: self._probe(self._root)
            )
            if plan.mode == "native":
                self._observer = self._scheduled(OverflowObserver(self._overflowed))
                self._observer.start()
        except OSError as exc:
            if exc.errno not in _INOTIFY_REFUSALS:
                raise
            self._observer = None
            plan = out_of_watches(exc, self._poll_interval)
        if plan.mode == "polling":
            self._observer = self._scheduled(PollingObserver(timeout=plan.poll_interval))
            self._observer.start()
        self.plan = plan
        return plan.mode

    def _scheduled(self, observer: BaseObserver) -> BaseObserver:
        observer.schedule(
            _Handler(self._sink, self._ignore),
            str(self._root),
            recursive=True,
            event_filter=list(_WANTED_EVENTS),
        )
        return observer

    def _overflowed(self) -> None:
        # On watchdog's reading thread: a flag on the queue and one event, nothing slower.
        log.warning(
            "watcher.overflow",
            path=str(self._root),
            error="the kernel's inotify queue overflowed and events were lost;"
            " looking at the whole drop folder again",
        )
        self._sink.put(Change(ChangeKind.RESCAN))

    def stop(self, timeout: float = 5.0) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout)
            self._observer = None
        self._sink.wake()

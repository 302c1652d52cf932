"""Is the state store writable? A full disk degrades the daemon, it never ends it (issue 13).

A write that fails (``database or disk is full``, a read-only remount, an I/O error) made the
daemon exit, and under systemd that is a restart loop that can only fail again. Instead the
daemon turns "read-only": it says so once (``state.unwritable``, with the fix), starts no work
and does nothing destructive (no model deleted for a removed file, no cleanup: those need the
store to record them), and tries one small write every ``RETRY_SECONDS``. When that succeeds it
says ``state.writable`` and looks at everything again. Thread-safe: jobs report failures too.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Protocol

import structlog

log = structlog.get_logger("dropzone.daemon")

RETRY_SECONDS = 5.0
PROBE_KEY = "store.probe"


class Probeable(Protocol):
    def set_meta(self, values: dict[str, str]) -> None: ...


class StoreHealth:
    def __init__(self, where: str) -> None:
        self._where = where
        self._lock = threading.Lock()
        self._failing = False
        self._next_try = 0.0

    @property
    def ok(self) -> bool:
        with self._lock:
            return not self._failing

    def next_try(self) -> float:
        """The monotonic time of the next probe (infinity while writable)."""
        with self._lock:
            return self._next_try if self._failing else float("inf")

    def failed(self, exc: sqlite3.Error) -> None:
        """A write failed: go read-only (one event on the change)."""
        with self._lock:
            first = not self._failing
            self._failing = True
            self._next_try = time.monotonic() + RETRY_SECONDS
        if first:
            log.error(
                "state.unwritable",
                path=self._where,
                error=str(exc),
                retry_in=RETRY_SECONDS,
                fix="free space on the state directory's file system (or make it writable);"
                " dropzone imports nothing and deletes nothing until it can record again",
            )

    def recovered(self, store: Probeable) -> bool:
        """While read-only and due: one small write; True when it worked (writable again)."""
        with self._lock:
            if not self._failing or time.monotonic() < self._next_try:
                return False
        try:
            store.set_meta({PROBE_KEY: str(time.time())})
        except sqlite3.Error:
            with self._lock:
                self._next_try = time.monotonic() + RETRY_SECONDS
            return False
        with self._lock:
            self._failing = False
        log.info("state.writable", path=self._where)
        return True

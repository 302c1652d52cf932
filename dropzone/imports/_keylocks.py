"""One lock per key, created on demand and dropped when nobody holds or waits for it.

The importer holds one per (host, blob digest) from its ``HEAD`` to the end of the upload, so a
blob is never sent twice at once: not by an early upload and the import that follows it, nor by
two artifacts made of the same bytes (one GGUF dropped twice with different sidecars).
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterator
from contextlib import contextmanager

from dropzone.errors import StoppedError

# How often a waiter looks at the stop event: a stop must not wait for another thread's upload.
STOP_CHECK_SECONDS = 0.25


class KeyLocks:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._locks: dict[Hashable, tuple[threading.Lock, int]] = {}  # key → (lock, users)

    @contextmanager
    def hold(self, key: Hashable, stop: threading.Event) -> Iterator[None]:
        """Hold the lock of ``key``; raise ``StoppedError`` if ``stop`` is set while waiting."""
        with self._lock:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            while not lock.acquire(timeout=STOP_CHECK_SECONDS):
                if stop.is_set():
                    raise StoppedError("stopping")
            try:
                yield
            finally:
                lock.release()
        finally:
            with self._lock:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)

    def users(self, key: Hashable) -> int:
        """Threads holding or waiting for ``key``."""
        with self._lock:
            return self._locks.get(key, (None, 0))[1]

    def __len__(self) -> int:
        """Keys held or waited for."""
        with self._lock:
            return len(self._locks)

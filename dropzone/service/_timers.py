"""When to look again: the dispatcher's wake-ups and the backoff after failures that are not
a server's answer. Timers, never jobs: a wake-up makes the service look at a unit again."""

from __future__ import annotations

import heapq
import threading
import time

import structlog

log = structlog.get_logger("dropzone.daemon")

# Backoff after failures that are not the server's answer (a persisting digest mismatch).
BACKOFF_FIRST_SECONDS = 2.0
BACKOFF_MAX_SECONDS = 600.0


class Timers:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wakeups: list[tuple[float, str, str]] = []  # (monotonic time, unit, rel)
        self._failures: dict[str, int] = {}  # rel → failures in a row not due to a server
        self._not_before: dict[str, float] = {}  # rel → monotonic time its backoff ends

    def wake_at(self, when: float, unit: str, rel: str = "") -> None:
        """Look at ``unit`` again at ``when``; with ``rel``, judge that artifact afresh then
        (a retry time has come: its "nothing to do since" signature no longer holds)."""
        with self._lock:
            heapq.heappush(self._wakeups, (when, unit, rel))

    def next_wakeup(self) -> float:
        with self._lock:
            return self._wakeups[0][0] if self._wakeups else float("inf")

    def due(self, now: float) -> tuple[set[str], set[str]]:
        """The units to look at now, and the artifacts to judge afresh."""
        units: set[str] = set()
        rels: set[str] = set()
        with self._lock:
            while self._wakeups and self._wakeups[0][0] <= now:
                _, unit, rel = heapq.heappop(self._wakeups)
                units.add(unit)
                if rel:
                    rels.add(rel)
        return units, rels

    def back_off(self, rel: str) -> None:
        """Hold ``rel`` back for a doubling delay after a failure that is not the server's
        (a digest mismatch, an unexpected error); ``succeeded`` resets it."""
        with self._lock:
            attempts = self._failures.get(rel, 0) + 1
            self._failures[rel] = attempts
            delay = min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** (attempts - 1))
            self._not_before[rel] = time.monotonic() + delay
        log.warning("retry.scheduled", path=rel, attempts=attempts, retry_in=round(delay, 1))

    def succeeded(self, rel: str) -> None:
        with self._lock:
            self._failures.pop(rel, None)
            self._not_before.pop(rel, None)

    def not_before(self, rel: str) -> float:
        """The monotonic time ``rel``'s backoff ends (0 when it has none)."""
        with self._lock:
            return self._not_before.get(rel, 0.0)

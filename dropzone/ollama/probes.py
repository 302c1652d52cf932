"""When to look again at hosts that did not answer: every few seconds, backing off.

A host that is down holds its work back with a per-artifact backoff that grows to minutes; a
probe (one ``GET /api/version``, cheap for the server) notices it is back within seconds, and
the daemon then releases that work at once (``host.up``). Pure bookkeeping, clock passed in.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

PROBE_FIRST_SECONDS = 2.0
PROBE_MAX_SECONDS = 30.0


class _Host(Protocol):
    url: str


class Probes:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        # url → (host, interval, next probe time, a probe is running)
        self._down: dict[str, tuple[_Host, float, float, bool]] = {}

    def down(self, host: _Host) -> None:
        """``host`` did not answer a request: probe it from now on (if not already)."""
        with self._lock:
            if host.url not in self._down:
                first = PROBE_FIRST_SECONDS
                self._down[host.url] = (host, first, self._clock() + first, False)

    def due(self, now: float) -> list[_Host]:
        """Hosts to probe now; each is marked running until ``up`` or ``failed``."""
        with self._lock:
            ready = [
                (url, item)
                for url, item in self._down.items()
                if not item[3] and item[2] <= now
            ]
            for url, (host, interval, when, _) in ready:
                self._down[url] = (host, interval, when, True)
            return [item[0] for _, item in ready]

    def next_due(self) -> float:
        with self._lock:
            times = [when for _, _, when, running in self._down.values() if not running]
        return min(times, default=float("inf"))

    def up(self, host: _Host) -> None:
        with self._lock:
            self._down.pop(host.url, None)

    def failed(self, host: _Host) -> None:
        with self._lock:
            if host.url in self._down:
                interval = min(PROBE_MAX_SECONDS, self._down[host.url][1] * 2)
                self._down[host.url] = (host, interval, self._clock() + interval, False)

"""Fault injection and request counters for the Ollama emulator; both are thread-safe.

Tests arm a fault, run the code under test, then assert on the counters::

    emulator.faults.fail_next(2, path_prefix="/api/blobs/")   # two 500s, blobs only
    emulator.faults.stall(path_prefix="/api/create")          # hold creates until release()
    emulator.faults.cut_upload(after_bytes=4096)              # drop the next upload midway
    emulator.counters.blob_posts("sha256:…"), emulator.counters.requests

Stopping, starting and restarting the server are methods of ``Emulator`` itself.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str  # without the query string, percent-decoded
    status: int  # 0 when the connection was dropped without a response


class Counters:
    """What the emulator saw. Digests are keyed exactly as they appeared in the URL."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._posts: Counter[str] = Counter()
        self._bodies: Counter[str] = Counter()
        self._heads: Counter[str] = Counter()
        self._creates: Counter[str] = Counter()
        self._requests: list[RequestRecord] = []

    def blob_posts(self, digest: str) -> int:
        """``POST /api/blobs/<digest>`` requests, whatever their outcome."""
        with self._cond:
            return self._posts[digest]

    def blob_bodies_read(self, digest: str) -> int:
        """Blob POSTs whose body the emulator started to read (new content, not 200-early)."""
        with self._cond:
            return self._bodies[digest]

    def blob_heads(self, digest: str) -> int:
        with self._cond:
            return self._heads[digest]

    def creates(self, model: str) -> int:
        """``POST /api/create`` requests with a valid name, keyed by its short form (``m:tag``)."""
        with self._cond:
            return self._creates[model]

    @property
    def requests(self) -> list[RequestRecord]:
        """Completed requests in completion order."""
        with self._cond:
            return list(self._requests)

    def reset(self) -> None:
        with self._cond:
            for counter in (self._posts, self._bodies, self._heads, self._creates):
                counter.clear()
            self._requests.clear()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Wait until ``predicate()`` holds (re-checked at every recorded event)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.1))
            return True

    # --- recording (emulator side) ----------------------------------------------------------

    def _bump(self, counter: Counter[str], key: str) -> None:
        with self._cond:
            counter[key] += 1
            self._cond.notify_all()

    def record_blob_post(self, digest: str) -> None:
        self._bump(self._posts, digest)

    def record_body_read(self, digest: str) -> None:
        self._bump(self._bodies, digest)

    def record_blob_head(self, digest: str) -> None:
        self._bump(self._heads, digest)

    def record_create(self, model: str) -> None:
        self._bump(self._creates, model)

    def record_request(self, method: str, path: str, status: int) -> None:
        with self._cond:
            self._requests.append(RequestRecord(method, path, status))
            self._cond.notify_all()


@dataclass
class _Failure:
    remaining: int
    status: int
    path_prefix: str
    error: str = "injected fault"
    method: str | None = None  # any method when None


class Faults:
    """Misbehaviour the next requests will meet. ``clear()`` disarms everything."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._failures: list[_Failure] = []
        self._stall_prefix: str | None = None
        self._stall_until: float | None = None
        self._stall_method: str | None = None
        self._held = 0
        self._cuts: list[int] = []
        self._load_failures: list[str] = []

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 500,
        path_prefix: str = "",
        error: str = "injected fault",
        method: str | None = None,
    ) -> None:
        """Answer the next ``count`` requests (of ``method``, if given) whose path starts with
        ``path_prefix`` with ``status`` and ``{"error": error}``, without processing them."""
        with self._cond:
            self._failures.append(_Failure(count, status, path_prefix, error, method))

    def fail_load(self, error: str, count: int = 1) -> None:
        """The next ``count`` load requests (``POST /api/generate`` without a prompt) fail as
        a runner that cannot load the model does: 500 with ``error`` as the server's text."""
        with self._cond:
            self._load_failures.extend([error] * count)

    def take_load_failure(self) -> str | None:
        with self._cond:
            return self._load_failures.pop(0) if self._load_failures else None

    def stall(
        self, *, path_prefix: str = "", duration: float | None = None, method: str | None = None
    ) -> None:
        """Hold matching requests (of ``method``, if given; after their headers arrive) until
        ``release()`` is called or ``duration`` seconds have passed since this call."""
        with self._cond:
            self._stall_prefix = path_prefix
            self._stall_method = method
            self._stall_until = None if duration is None else time.monotonic() + duration
            self._cond.notify_all()

    def release(self) -> None:
        """End the stall; held requests proceed."""
        with self._cond:
            self._stall_prefix = None
            self._cond.notify_all()

    @property
    def held(self) -> int:
        """Requests currently held by a stall."""
        with self._cond:
            return self._held

    def wait_held(self, count: int = 1, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._held < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def cut_upload(self, after_bytes: int, *, count: int = 1) -> None:
        """Drop the connection of each of the next ``count`` blob uploads whose body is read,
        after ``after_bytes`` body bytes, without a response; the partial blob is discarded."""
        with self._cond:
            self._cuts.extend([after_bytes] * count)

    def clear(self) -> None:
        with self._cond:
            self._failures.clear()
            self._cuts.clear()
            self._load_failures.clear()
            self._stall_prefix = None
            self._cond.notify_all()

    # --- consulted by the server ------------------------------------------------------------

    def take_failure(self, path: str, method: str = "GET") -> tuple[int, str] | None:
        """The status and error text to answer ``path`` with, if a failure is armed for it."""
        with self._cond:
            for failure in self._failures:
                if path.startswith(failure.path_prefix) and failure.method in (None, method):
                    failure.remaining -= 1
                    if failure.remaining <= 0:
                        self._failures.remove(failure)
                    return failure.status, failure.error
            return None

    def take_cut(self) -> int | None:
        with self._cond:
            return self._cuts.pop(0) if self._cuts else None

    def hold(self, path: str, aborted: Callable[[], bool], method: str = "GET") -> None:
        """Block while a stall matches ``path``; returns early once ``aborted()`` is true."""
        with self._cond:
            if self._stall_method not in (None, method) or not self._stalling(path):
                return
            self._held += 1
            self._cond.notify_all()
            try:
                while self._stalling(path) and not aborted():
                    timeout = 0.05
                    if self._stall_until is not None:
                        timeout = min(timeout, max(self._stall_until - time.monotonic(), 0))
                    self._cond.wait(timeout)
            finally:
                self._held -= 1
                self._cond.notify_all()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _stalling(self, path: str) -> bool:
        if self._stall_prefix is None or not path.startswith(self._stall_prefix):
            return False
        if self._stall_until is not None and time.monotonic() >= self._stall_until:
            self._stall_prefix = None
            return False
        return True

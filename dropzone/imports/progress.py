"""Progress of files arriving, long hashing and uploads: a status line on a terminal, periodic
events otherwise.

Under systemd nobody watches a bar, but a 40 GB upload should still say how far it is:
``artifact.arriving`` / ``hash.progress`` / ``blob.upload.progress`` events every ``interval``
seconds (``progress_seconds``). On a terminal the
same figures become one redrawn line on stderr (all transfers in progress, side by side).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

import structlog

log = structlog.get_logger("dropzone.progress")

EVENT_EVERY_SECONDS = 10.0
REDRAW_EVERY_SECONDS = 0.2
BAR_WIDTH = 20


@dataclass
class _Item:
    label: str
    total: int | None
    done: int
    started: float
    last_event: float
    start: int  # bytes already there when tracking began (a file arriving)
    arrival: bool

    def line(self, now: float) -> str:
        seconds = now - self.started
        if self.arrival:
            return render_arrival(self.label, self.done, self.total, seconds, start=self.start)
        return render(self.label, self.done, self.total or 0, seconds)


def _bar(done: int, total: int) -> str:
    fraction = min(1.0, done / total) if total else 1.0
    filled = int(fraction * BAR_WIDTH)
    return f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {fraction * 100:3.0f}%"


def render(label: str, done: int, total: int, seconds: float) -> str:
    """``label [#####-----]  45%  1.2 GB/s`` (pure, for the terminal line)."""
    rate = done / max(seconds, 1e-9) / 1e9
    return f"{label} {_bar(done, total)} {rate:5.2f} GB/s"


def render_arrival(
    label: str, done: int, expected: int | None, seconds: float, *, start: int = 0
) -> str:
    """``label [####------]  45% of 3.00 GB 35.2 MB/s``, or ``label 1.20 GB 35.2 MB/s`` while
    the size to expect is unknown. The rate counts the bytes that arrived since ``start``."""
    rate = (done - start) / max(seconds, 1e-9) / 1e6
    if not expected:
        return f"{label} {done / 1e9:.2f} GB {rate:.1f} MB/s"
    return f"{label} {_bar(done, expected)} of {expected / 1e9:.2f} GB {rate:.1f} MB/s"


class Progress:
    def __init__(
        self,
        terminal: TextIO | None = None,
        *,
        interval: float = EVENT_EVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._terminal = terminal
        self._interval = interval
        self._clock = clock
        self._items: dict[int, _Item] = {}
        self._lock = threading.Lock()
        self._next_id = 0
        self._last_draw = 0.0
        self._drawn = False  # a bar is on the terminal's last line

    def track(
        self, event: str, label: str, total: int, **fields: Any
    ) -> tuple[Callable[[int], None], Callable[[], None]]:
        """Start tracking one transfer: ``(update(bytes_done), done())``."""
        return self._track(event, _Item(label, total, 0, 0.0, 0.0, 0, False), fields)

    def arrival(
        self, label: str, have: int, expected: int | None, **fields: Any
    ) -> tuple[Callable[[int, int | None], None], Callable[[], None]]:
        """Start tracking a file still arriving (``have`` bytes are there):
        ``(update(bytes_now, expected), done())``; ``artifact.arriving`` events every interval
        with ``bytes``, ``expected_bytes`` (when known) and the rate since tracking began."""
        item = _Item(label, expected, have, 0.0, 0.0, have, True)
        update, finished = self._track("artifact.arriving", item, fields)

        def update_arrival(done: int, expected: int | None) -> None:
            item.total = expected
            update(done)

        return update_arrival, finished

    def _track(
        self, event: str, item: _Item, fields: dict[str, Any]
    ) -> tuple[Callable[[int], None], Callable[[], None]]:
        now = self._clock()
        item.started = item.last_event = now
        with self._lock:
            key = self._next_id
            self._next_id += 1
            self._items[key] = item

        def update(done: int) -> None:
            now = self._clock()
            with self._lock:
                if key not in self._items:
                    return
                item.done = done
                due = now - item.last_event >= self._interval
                if due:
                    item.last_event = now
                if self._terminal is not None and now - self._last_draw >= REDRAW_EVERY_SECONDS:
                    self._last_draw = now
                    line = "  ".join(i.line(now) for i in self._items.values())
                    self._terminal.write("\r\x1b[K" + line)
                    self._terminal.flush()
                    self._drawn = True
            if due and self._terminal is None:
                seconds = max(now - item.started, 1e-9)
                sizes: dict[str, Any]
                if item.arrival:
                    sizes = {"expected_bytes": item.total} if item.total else {}
                else:
                    sizes = {"total": item.total}
                log.info(
                    event,
                    **fields,
                    bytes=done,
                    **sizes,
                    rate_mb_s=round((done - item.start) / 1e6 / seconds, 1),
                )

        def finished() -> None:
            with self._lock:
                self._items.pop(key, None)
                empty = not self._items
            if empty:
                self.clear_line()

        return update, finished

    def clear_line(self) -> None:
        """Take the bar off the terminal, so that a log line written now starts at column 0
        (the next update draws it again below)."""
        with self._lock:
            if self._drawn and self._terminal is not None:
                self._terminal.write("\r\x1b[K")
                self._terminal.flush()
                self._drawn = False

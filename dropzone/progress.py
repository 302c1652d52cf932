"""Progress of long hashing and uploads: a status line on a terminal, periodic events otherwise.

Under systemd nobody watches a bar, but a 40 GB upload should still say how far it is:
``hash.progress`` / ``blob.upload.progress`` events every ``interval`` seconds. On a terminal the
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
    total: int
    done: int
    started: float
    last_event: float


def render(label: str, done: int, total: int, seconds: float) -> str:
    """``label [#####-----]  45%  1.2 GB/s`` (pure, for the terminal line)."""
    fraction = min(1.0, done / total) if total else 1.0
    filled = int(fraction * BAR_WIDTH)
    rate = done / max(seconds, 1e-9) / 1e9
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    return f"{label} [{bar}] {fraction * 100:3.0f}% {rate:5.2f} GB/s"


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

    def track(
        self, event: str, label: str, total: int, **fields: Any
    ) -> tuple[Callable[[int], None], Callable[[], None]]:
        """Start tracking one transfer: ``(update(bytes_done), done())``."""
        now = self._clock()
        with self._lock:
            key = self._next_id
            self._next_id += 1
            self._items[key] = _Item(label, total, 0, now, now)

        def update(done: int) -> None:
            now = self._clock()
            with self._lock:
                item = self._items.get(key)
                if item is None:
                    return
                item.done = done
                due = now - item.last_event >= self._interval
                if due:
                    item.last_event = now
                draw = self._terminal is not None and now - self._last_draw >= REDRAW_EVERY_SECONDS
                if draw:
                    self._last_draw = now
                    line = "  ".join(
                        render(i.label, i.done, i.total, now - i.started)
                        for i in self._items.values()
                    )
            if due and self._terminal is None:
                seconds = max(now - item.started, 1e-9)
                log.info(
                    event,
                    **fields,
                    bytes=done,
                    total=total,
                    rate_mb_s=round(done / 1e6 / seconds, 1),
                )
            if draw and self._terminal is not None:
                self._terminal.write("\r\x1b[K" + line)
                self._terminal.flush()

        def finished() -> None:
            with self._lock:
                self._items.pop(key, None)
                empty = not self._items
            if empty and self._terminal is not None:
                self._terminal.write("\r\x1b[K")
                self._terminal.flush()

        return update, finished

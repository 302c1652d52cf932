"""watchdog's inotify observer, told about kernel queue overflows.

When events arrive faster than they are read, the kernel drops them and queues one
``IN_Q_OVERFLOW``. watchdog (7.1 and later) answers it by rebuilding its recursive watches and by
calling ``on_queue_overflow`` on every callback registered on its inotify instance; it sends no
event to handlers. This observer registers one such callback on the watched folder, so the
signal does not depend on log levels or on the wording of watchdog's log lines.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from watchdog.observers.api import BaseObserver
from watchdog.observers.inotify import InotifyEmitter
from watchdog.observers.inotify_c import (
    CallbackId,
    InotifyConstants,
    InotifyEvent,
    InotifyFD,
    Mask,
    WatchDescriptor,
)

# IN_MASK_ADD: share the watch watchdog already has on the folder without replacing its mask.
_SHARED_WATCH = Mask(InotifyConstants.IN_DELETE_SELF | InotifyConstants.IN_MASK_ADD)


class _OverflowCallback:
    """A ``watchdog.observers.inotify_c.WatchCallback`` that only cares about overflows."""

    def __init__(self, on_overflow: Callable[[], None]) -> None:
        self._on_overflow = on_overflow

    def on_event(self, event: InotifyEvent) -> None:
        """The emitter's own callback turns events into watchdog events."""

    def on_watch_deleted(self, wd: WatchDescriptor) -> None:
        """The watcher notices a deleted folder by its identity (``Watcher.moved``)."""

    def on_queue_overflow(self) -> None:
        self._on_overflow()


class OverflowObserver(BaseObserver):
    """``InotifyObserver`` plus ``on_overflow``, called on watchdog's reading thread after
    watchdog has rebuilt the watches: a rescan it starts cannot miss a folder made meanwhile.

    Raises ``OSError`` from ``start`` when the kernel refuses the inotify instance or the watch
    on a scheduled folder (``EMFILE``, ``ENOSPC``): the caller decides what to fall back to.
    """

    def __init__(self, on_overflow: Callable[[], None]) -> None:
        self._fd = InotifyFD()
        super().__init__(InotifyEmitter, inotify_fd=self._fd)
        self._callback = _OverflowCallback(on_overflow)

    def on_thread_start(self) -> None:
        self._fd.start()
        try:
            # The emitters register their watches first, so watchdog calls their overflow
            # callbacks (the rebuild) before this one: it walks its watches in creation order.
            super().on_thread_start()
            for emitter in self.emitters:
                self._fd.add_callback(
                    os.fsencode(emitter.watch.path),
                    _SHARED_WATCH,
                    self._callback,
                    CallbackId(id(self._callback)),
                )
        except BaseException:
            self._clear_emitters()
            self._stop_fd()
            raise

    def on_thread_stop(self) -> None:
        super().on_thread_stop()
        self._stop_fd()

    def _stop_fd(self) -> None:
        self._fd.stop()
        if self._fd.is_alive():
            self._fd.join()

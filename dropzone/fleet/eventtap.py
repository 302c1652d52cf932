"""Events as a feed: a structlog processor hands every event to whoever subscribed (issue 16).

Why metrics and hooks listen to events instead of being called at each site: every fact they
need is already an event with stable name and fields (design §6: ``hash.done``,
``blob.uploaded``, ``model.created``, ``artifact.done``, ``retry.scheduled``,
``ollama.unreachable``, ``host.up`` …), emitted once, in one place, by the code that knows it.
Calling a metrics object beside each of those lines would scatter a second copy of the same
facts through the hasher, the importer and the daemon, and every change to the pipeline would
have to keep both in step. Here the mapping from events to metrics is one table
(``metrics.py``), and the pipeline does not know metrics exist.

The price, stated: the processor must be in structlog's chain. ``logs.configure_logging``
puts it first, before the level filter, so ``log_level = "error"`` does not blind the metrics;
a program (or a test) that configures structlog itself adds ``tap`` to its processors, and a
daemon with metrics on says so (``metrics.untapped``) when it finds the tap missing.

A subscriber runs on the thread that logged the event, so it must be quick and must not log
from inside (hooks only enqueue). One that raises is never allowed to break logging.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import structlog
from structlog.typing import EventDict, WrappedLogger

Subscriber = Callable[[Mapping[str, Any]], None]

_lock = threading.Lock()
_subscribers: tuple[Subscriber, ...] = ()


def tap(_: WrappedLogger, method: str, event: EventDict) -> EventDict:
    """The processor: every subscriber sees the event (with ``level``); the event goes on
    unchanged."""
    subscribers = _subscribers  # a tuple, replaced whole: no lock on the hot path
    if subscribers:
        seen = {**event, "level": event.get("level", method)}
        for subscriber in subscribers:
            try:
                subscriber(seen)
            except Exception:  # noqa: S112 - a metrics bug must never cost an event
                continue
    return event


def subscribe(subscriber: Subscriber) -> Callable[[], None]:
    """Start feeding ``subscriber``; returns the function that stops it."""
    global _subscribers  # noqa: PLW0603 - the one process-wide feed, as structlog's own config
    with _lock:
        _subscribers = (*_subscribers, subscriber)

    def unsubscribe() -> None:
        global _subscribers  # noqa: PLW0603
        with _lock:
            _subscribers = tuple(s for s in _subscribers if s is not subscriber)

    return unsubscribe


def tapped() -> bool:
    """Is ``tap`` in structlog's current processor chain?"""
    processors = structlog.get_config().get("processors", ())
    return any(p is tap for p in processors)

"""structlog configuration, done once by the CLI.

Every event, dropzone's own and the stdlib loggers' (httpx, watchdog), goes through one stdlib
handler and one ``ProcessorFormatter``: one lock, so lines from worker threads never interleave,
and one shape. JSON lines (``event``, ``level``, ``timestamp`` in ISO 8601 UTC, then the fields)
when the stream is not a terminal or ``fmt="json"``; on a terminal one short line per event,
key fields first (``console_line``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import PurePath
from typing import Any, TextIO

import structlog
import structlog.tracebacks
from structlog.typing import EventDict, Processor, WrappedLogger

from dropzone.fleet.eventtap import tap
from dropzone.fs.bytenames import shown_in

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR, "critical": logging.CRITICAL}  # fmt: skip
# httpx logs every request at INFO ("HTTP Request: HEAD …"): a flood in the journal during an
# import. httpcore's DEBUG trace is noise at any level dropzone offers.
# watchdog logs every raw inotify event at DEBUG (~10 a second during a copy, issue 15): its
# warnings (a polled share that cannot be read) help an operator, its debug lines never do.
# Its inotify modules warn only of a queue overflow, which dropzone reports itself (one
# ``watcher.overflow``), so they keep their errors only.
QUIET_LOGGERS = {
    "httpx": logging.WARNING,
    "httpcore": logging.WARNING,
    "watchdog": logging.WARNING,
    "watchdog.observers.inotify": logging.ERROR,
    "watchdog.observers.inotify_c": logging.ERROR,
}
# watchdog logs this at ERROR when an inotify emitter is stopped while it reads an event: for
# dropzone always its own stop (the start-up probe's observer, the service's shutdown), never
# something an operator can act on. Its other errors (watches that cannot be rebuilt) stay.
STOPPED_EMITTER = "InotifyEmitter.queue_events() called when the thread is inactive"
# The console (issue 15): the fields an operator looks for first, in this order, and a cut for
# values that would run a line to hundreds of characters.
CONSOLE_HEAD = ("path", "model", "host")
CONSOLE_ERROR = ("error", "fix")
CONSOLE_MAX_VALUE = 100


class _StoppedEmitterFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != STOPPED_EMITTER


_STOPPED_EMITTER_FILTER = _StoppedEmitterFilter()


class _DropzoneHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler this module installed, so reconfiguring replaces it; calls
    ``before_line`` before each line (a progress bar on the same terminal steps aside)."""

    def __init__(self, stream: TextIO, before_line: Callable[[], None] | None = None) -> None:
        super().__init__(stream)
        self._before_line = before_line

    def emit(self, record: logging.LogRecord) -> None:
        if self._before_line is not None:
            self._before_line()
        super().emit(record)


def _paths_as_text(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    # Events carry absolute paths as strings (design §6); a Path would render as PosixPath('…').
    for key, value in event.items():
        if isinstance(value, PurePath):
            event[key] = str(value)
    return event


def _valid_utf8(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    # Issue 13: a file name that is not UTF-8 arrives as a str with surrogate escapes. Written
    # as is, stdout under systemd (C.UTF-8) emits the raw byte and jq refuses the journal; a
    # strict stream drops the line. Every string, nested ones too, is shown escaped instead.
    return {key: shown_in(value) for key, value in event.items()}


def _head_keys_first(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    # Readers scan ``timestamp level event`` first, as in every other log line they read.
    head = {k: event.pop(k) for k in ("timestamp", "level", "event") if k in event}
    return {**head, **event}


def _shown_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        text = "[" + ", ".join(str(v) for v in value) + "]"
    elif isinstance(value, float):
        text = f"{value:g}"
    else:
        text = str(value)
    text = text.replace("\n", " ")
    if len(text) > CONSOLE_MAX_VALUE:
        text = text[: CONSOLE_MAX_VALUE - 1] + "…"
    return text


def console_line(_: WrappedLogger, __: str, event: EventDict) -> str:
    """``10:57:32 info model.created path=… model=… host=… seconds=1.5`` (pure).

    One line per event: time, level, event, then the key fields, the error and its fix, the
    rest. ``None`` fields are left out; ``problems`` is left out when ``error`` tells it (a
    refusal's problems repeat its error with the path and the fix). A traceback follows on
    its own lines.
    """
    fields = dict(event)
    stamp = str(fields.pop("timestamp", ""))
    clock = stamp[11:19] if len(stamp) >= 19 else stamp
    level = str(fields.pop("level", ""))
    name = str(fields.pop("event", ""))
    exception = fields.pop("exception", None)
    if "error" in fields:
        fields.pop("problems", None)
    order = [k for k in (*CONSOLE_HEAD, *CONSOLE_ERROR) if k in fields]
    order += [k for k in fields if k not in order]
    parts = [p for p in (clock, level, name) if p]
    parts += [f"{k}={_shown_value(fields[k])}" for k in order if fields[k] is not None]
    line = " ".join(parts)
    return f"{line}\n{exception}" if exception else line


def configure_logging(
    *,
    fmt: str,
    level: str,
    stream: TextIO | None = None,
    before_line: Callable[[], None] | None = None,
) -> None:
    """Route structlog and stdlib logging to ``stream`` (default stdout) as JSON or console.

    ``fmt`` is ``auto`` (console on a TTY, JSON otherwise), ``json`` or ``console``; ``level``
    one of ``debug``, ``info``, ``warning``, ``error``. Calling it again replaces the previous
    configuration (tests and ``main()`` run more than once per process).
    """
    if fmt not in ("auto", "json", "console"):
        raise ValueError(f"unknown log format {fmt!r}")
    numeric = LEVELS.get(level.lower())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}")
    out = stream if stream is not None else sys.stdout
    is_tty = out.isatty()
    use_json = fmt == "json" or (fmt == "auto" and not is_tty)

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        _paths_as_text,
    ]
    renderer: list[Processor]
    if use_json:
        renderer = [
            # No locals: they may hold a proxy token, and they bloat the journal.
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ),
            _head_keys_first,
            _valid_utf8,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ]
    else:
        renderer = [structlog.processors.format_exc_info, _valid_utf8, console_line]
    formatter = structlog.stdlib.ProcessorFormatter(
        # Records from stdlib loggers (httpx, watchdog) get the same fields as our events.
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
    )
    handler = _DropzoneHandler(out, before_line)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _DropzoneHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name, quiet in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(max(quiet, numeric))
    logging.getLogger("watchdog.observers.inotify").addFilter(_STOPPED_EMITTER_FILTER)

    structlog.configure(
        processors=[
            tap,  # metrics and hooks see every event, whatever the level (eventtap)
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: structlog.testing.capture_logs() must work for loggers made at import.
        cache_logger_on_first_use=False,
    )


def reset_logging() -> None:
    """Undo ``configure_logging`` (for tests): structlog defaults, our handler removed."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _DropzoneHandler)]:
        root.removeHandler(old)
    root.setLevel(logging.WARNING)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)
    logging.getLogger("watchdog.observers.inotify").removeFilter(_STOPPED_EMITTER_FILTER)
    structlog.reset_defaults()


def get_logger(name: str | None = None, **fields: Any) -> Any:
    """A structlog logger; events are ``noun.verb`` strings with fields, never f-strings."""
    return structlog.get_logger(name, **fields)

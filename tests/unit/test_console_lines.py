"""Issue 15: the console an operator reads. One line per event, the key fields first (event,
path, model, host), long values cut, an error told once, third-party debug chatter kept out."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
import structlog

from dropzone.logs import configure_logging, reset_logging


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    reset_logging()


def console(level: str = "info") -> io.StringIO:
    out = io.StringIO()
    configure_logging(fmt="console", level=level, stream=out)
    return out


def test_one_line_per_event_with_event_path_model_host_first() -> None:
    out = console()
    structlog.get_logger("dropzone.daemon").info(
        "model.created", seconds=1.5, host="http://h:11434", model="m:latest", path="/d/m.gguf"
    )
    (line,) = out.getvalue().splitlines()
    words = line.split()
    assert words[1:3] == ["info", "model.created"]  # after the time
    assert words[3:6] == ["path=/d/m.gguf", "model=m:latest", "host=http://h:11434"]
    assert words[6:] == ["seconds=1.5"]


def test_long_values_are_cut_and_lines_stay_short() -> None:
    out = console()
    structlog.get_logger("dropzone.daemon").info(
        "artifact.detected", path="/d/x.gguf", note="y" * 500
    )
    (line,) = out.getvalue().splitlines()
    assert len(line) <= 200
    assert "…" in line


def test_an_error_is_told_once() -> None:
    # A refusal carries ``error`` and ``problems`` (the same text with path and fix): the console
    # shows the error and the fix, not the problems list repeating them.
    out = console()
    structlog.get_logger("dropzone.daemon").error(
        "sidecar.invalid",
        path="/d/m.gguf",
        file="/d/m.toml",
        key="quantize",
        error="quantization is only supported for F16, BF16 and F32 models",
        fix="remove quantize",
        problems=["/d/m.toml: quantization is only supported for F16, BF16 and F32 models"],
    )
    (line,) = out.getvalue().splitlines()
    assert line.count("quantization is only supported") == 1
    assert "fix=" in line and "problems" not in line


def test_none_fields_are_left_out() -> None:
    out = console()
    structlog.get_logger("dropzone.daemon").info("artifact.pending", path="/d/m", missing=None)
    assert "missing" not in out.getvalue()


def test_watchdogs_raw_debug_lines_are_not_events(  # issue 15: ~10 a second during a copy
) -> None:
    out = console(level="debug")
    logging.getLogger("watchdog.observers.inotify_buffer").debug("in-event <InotifyEvent: ...>")
    logging.getLogger("watchdog.observers.polling").warning("share unreachable, polling on")
    logging.getLogger("watchdog.observers.inotify_c").warning("Inotify queue overflowed")
    structlog.get_logger("dropzone.daemon").debug("scan.done", artifacts=1)
    text = out.getvalue()
    assert "InotifyEvent" not in text
    assert "share unreachable" in text  # a warning still helps
    assert "overflowed" not in text  # dropzone says it itself: watcher.overflow
    assert "scan.done" in text

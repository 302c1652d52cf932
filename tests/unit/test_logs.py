"""Logging: JSON lines off a terminal, console on one, stdlib loggers through the same chain."""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import queue
import select
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs
from watchdog.observers.api import ObservedWatch
from watchdog.observers.inotify import InotifyEmitter

from dropzone.imports.hashing import FollowingHasher
from dropzone.logs import configure_logging, reset_logging


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    reset_logging()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_off_a_terminal_every_event_is_one_json_object_per_line() -> None:
    out = io.StringIO()
    configure_logging(fmt="auto", level="info", stream=out)
    log = structlog.get_logger("dropzone.test")
    log.info("hash.done", path=Path("/srv/dropzone/a.gguf"), bytes=42, digest="sha256:ab")
    log.warning("artifact.pending", path="/srv/dropzone/b.gguf", have=1, expected=2)
    first, second = lines(out)
    assert list(first)[:3] == ["timestamp", "level", "event"]
    assert first["event"] == "hash.done" and first["level"] == "info"
    assert first["path"] == "/srv/dropzone/a.gguf"  # a Path is rendered as plain text
    assert (first["bytes"], first["digest"]) == (42, "sha256:ab")
    stamp = datetime.fromisoformat(first["timestamp"])
    assert stamp.utcoffset() is not None and stamp.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60
    assert (second["event"], second["level"], second["have"]) == ("artifact.pending", "warning", 1)


def test_events_below_the_level_are_dropped() -> None:
    out = io.StringIO()
    configure_logging(fmt="json", level="warning", stream=out)
    log = structlog.get_logger("dropzone.test")
    log.info("scan.done")
    log.error("model.failed", model="m:latest")
    assert [e["event"] for e in lines(out)] == ["model.failed"]


def test_stdlib_loggers_go_through_the_same_chain_as_json() -> None:
    out = io.StringIO()
    configure_logging(fmt="json", level="info", stream=out)
    logging.getLogger("watchdog.observers.polling").warning("share gone for %d s", 30)
    (event,) = lines(out)
    assert event["event"] == "share gone for 30 s"
    assert (event["level"], event["logger"]) == ("warning", "watchdog.observers.polling")
    assert "timestamp" in event


@pytest.mark.parametrize("level", ["info", "debug"])
def test_httpx_request_lines_are_kept_out_of_the_journal(level: str) -> None:
    out = io.StringIO()
    configure_logging(fmt="json", level=level, stream=out)
    logging.getLogger("httpx").info('HTTP Request: HEAD http://h/api/blobs/x "HTTP/1.1 200 OK"')
    logging.getLogger("httpcore.connection").debug("connect_tcp.started")
    logging.getLogger("httpx").warning("something httpx really wants to say")
    assert [e["event"] for e in lines(out)] == ["something httpx really wants to say"]


def test_exceptions_are_structured_without_local_variables() -> None:
    out = io.StringIO()
    configure_logging(fmt="json", level="info", stream=out)
    token = "Bearer s3cret"
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        structlog.get_logger("dropzone.test").exception("model.failed", model="m", host="h")
    (event,) = lines(out)
    (exc,) = event["exception"]
    assert (exc["exc_type"], exc["exc_value"]) == ("RuntimeError", "boom")
    assert token not in out.getvalue()


def test_configuring_again_replaces_the_handler_instead_of_adding_one() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging(fmt="json", level="info", stream=first)
    configure_logging(fmt="json", level="info", stream=second)
    structlog.get_logger("dropzone.test").info("daemon.started")
    assert first.getvalue() == ""
    assert [e["event"] for e in lines(second)] == ["daemon.started"]


def test_on_a_terminal_auto_uses_the_console_renderer() -> None:
    master, replica = pty.openpty()
    try:
        with open(replica, "w", closefd=False) as tty:
            configure_logging(fmt="auto", level="info", stream=tty)
            structlog.get_logger("dropzone.test").info("daemon.started", host="h1")
            tty.flush()
        ready, _, _ = select.select([master], [], [], 10)
        assert ready, "nothing was written to the terminal"
        text = os.read(master, 65536).decode()
    finally:
        reset_logging()
        os.close(master)
        os.close(replica)
    assert "daemon.started" in text and "host" in text and "h1" in text
    assert not text.lstrip().startswith("{")


def test_console_format_can_be_forced_off_a_terminal() -> None:
    out = io.StringIO()
    configure_logging(fmt="console", level="info", stream=out)
    structlog.get_logger("dropzone.test").info("scan.done", artifacts=3)
    text = out.getvalue()
    assert "scan.done" in text and "artifacts=3" in text
    assert not text.startswith("{")


def test_capture_logs_sees_events_of_loggers_created_at_import(tmp_path: Path) -> None:
    configure_logging(fmt="json", level="info", stream=io.StringIO())
    path = tmp_path / "m.gguf"
    path.write_bytes(b"first version")
    hasher = FollowingHasher(path)
    hasher.feed()
    path.write_bytes(b"x")  # shrinks: the hasher restarts and says so
    with capture_logs() as captured:
        hasher.feed()
    hasher.close()
    assert {"event": "hash.restarted", "log_level": "info", "path": str(path),
            "reason": "shrank", "hashed": 13} in captured  # fmt: skip


@pytest.mark.parametrize(("fmt", "level"), [("xml", "info"), ("json", "loud")])
def test_unknown_format_or_level_is_refused(fmt: str, level: str) -> None:
    with pytest.raises(ValueError, match="unknown log"):
        configure_logging(fmt=fmt, level=level, stream=io.StringIO())


@pytest.mark.parametrize("errors", ["surrogateescape", "strict"])
def test_undecodable_names_and_lone_surrogates_are_shown_escaped_in_valid_utf8_json(
    errors: str,
) -> None:
    # Issue 13: under systemd (C.UTF-8) stdout writes a surrogate escape as its raw byte, and
    # jq refuses the journal; under a UTF-8 locale the line was lost to a logging error.
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8", errors=errors, write_through=True)
    configure_logging(fmt="json", level="info", stream=out)
    name = os.fsdecode(b"/srv/dropzone/mod\xe8le.gguf")
    structlog.get_logger("dropzone.test").error(
        "artifact.invalid",
        path=Path(name),
        file=name,
        problems=[f"{name}: bad", {"system": "\ud800"}],
        error="café",
    )
    logging.getLogger("watchdog.test").warning("gone: %s", name)
    first, second = (json.loads(line) for line in raw.getvalue().decode("utf-8").splitlines())
    assert first["path"] == first["file"] == "/srv/dropzone/mod\\xe8le.gguf"
    assert first["problems"] == ["/srv/dropzone/mod\\xe8le.gguf: bad", {"system": "\\ud800"}]
    assert first["error"] == "café"  # valid text is untouched
    assert second["event"] == "gone: /srv/dropzone/mod\\xe8le.gguf"


def test_the_console_shows_undecodable_names_escaped_too() -> None:
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8", errors="strict", write_through=True)
    configure_logging(fmt="console", level="info", stream=out)
    structlog.get_logger("dropzone.test").info("artifact.detected", path=os.fsdecode(b"\xff"))
    assert "path=\\xff" in raw.getvalue().decode("utf-8")


def test_an_inotify_emitter_stopped_with_an_event_pending_logs_no_error(tmp_path: Path) -> None:
    """watchdog logs "queue_events() called when the thread is inactive" at ERROR when an
    emitter is stopped while it reads an event: the start-up probe's observer sometimes is
    (seen in 1 of 40 probes on a loaded machine), so an operator found an error line at start.
    Driven here without the race: the real emitter, stopped, then asked for its events."""
    out = io.StringIO()
    configure_logging(fmt="json", level="info", stream=out)
    emitter = InotifyEmitter(queue.Queue(), ObservedWatch(str(tmp_path), recursive=False))
    emitter.on_thread_start()
    emitter.on_thread_stop()
    emitter.queue_events(0.0)
    logging.getLogger("watchdog.observers.inotify").error("Unable to rebuild watches below x")
    assert [e["event"] for e in lines(out)] == ["Unable to rebuild watches below x"]

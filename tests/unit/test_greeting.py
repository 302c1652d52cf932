"""Greeting hosts at start: in parallel, within a deadline, and never past a stop (issue 13)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from structlog.testing import capture_logs

from dropzone.errors import UnreachableError
from dropzone.imports.importer import Host
from dropzone.service._greeting import greet_hosts


class FakeClient:
    """``version()`` answers at once, fails, or blocks until released."""

    def __init__(self, answer: str | None = None, *, block: bool = False) -> None:
        self.answer = answer
        self.release = threading.Event()
        self.block = block

    def version(self) -> str:
        if self.block:
            self.release.wait(30)
        if self.answer is None:
            raise UnreachableError("refused", host="h")
        return self.answer


def host(url: str, client: FakeClient) -> Host:
    return Host(url, client)  # type: ignore[arg-type]


@pytest.mark.timeout(20)
def test_a_silent_host_stays_unknown_and_holds_back_no_other_host() -> None:
    silent = FakeClient("0.1.0", block=True)
    hosts = [host("http://silent", silent), host("http://ok", FakeClient("0.33.0"))]
    with capture_logs() as logs:
        greet_hosts(hosts, seconds=0.5)
    assert hosts[0].version is None
    assert hosts[1].version == "0.33.0"
    late = [e for e in logs if e["event"] == "ollama.unreachable"]
    assert [e["host"] for e in late] == ["http://silent"]
    silent.release.set()


@pytest.mark.timeout(20)
def test_a_stop_ends_the_greeting_at_once_whatever_the_deadline() -> None:
    silent = FakeClient(block=True)
    stopping = threading.Event()
    stopping.set()
    greet_hosts([host("http://silent", silent)], stopping.is_set, seconds=3600)
    silent.release.set()


def test_a_host_that_refuses_is_reported_unreachable() -> None:
    hosts = [host("http://down", FakeClient(None))]
    with capture_logs() as logs:
        greet_hosts(hosts)
    events: list[dict[str, Any]] = [e for e in logs if e["event"] == "ollama.unreachable"]
    assert events[0]["error"] == "refused"

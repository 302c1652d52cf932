"""The Ollama client against a hostile server (issue 13): every call ends in bounded time with a
clear error, and reads a bounded number of bytes whatever the server sends.

Time is bounded by each test's own ``timeout`` marker (a hang is a failure, not a stuck run) and
the client's deadlines, never by asserting how fast something ran. Memory is the peak RSS of a
child process that makes one call (``client_child.py``), which reports its own ``VmHWM``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from hostile_server import (
    MIB,
    Chunk,
    HostileServer,
    answer,
    drip,
    drip_forever,
    flood,
    huge_body,
    json_answer,
    ndjson_head,
    redirect,
    stall,
    statuses,
    statuses_forever,
)
from structlog.testing import capture_logs

from dropzone.errors import (
    RedirectError,
    RequestError,
    RequestTimeoutError,
    TransientError,
)
from dropzone.ollama.client import CREATE_LINE_CAP, OllamaClient, Timeouts, make_http_client

CHILD = Path(__file__).with_name("client_child.py")
# What a hostile server sends in the memory cases: far more than any cap, small enough that the
# old client (which read it whole, several copies) fails the bound without exhausting the box.
FLOOD_BYTES = 256 * MIB
# A child that imports dropzone and httpx peaks near 50 MiB; the caps add a few MiB at most.
RSS_BOUND_BYTES = 128 * MIB


def client_for(server: HostileServer, **timeouts: Any) -> OllamaClient:
    return OllamaClient(server.url, make_http_client(), timeouts=Timeouts(**timeouts))


def route(server: HostileServer, path: str, chunks: Any) -> None:
    """Serve ``chunks()`` (a fresh iterable per request) at ``path``."""

    def behaviour(method: str, p: str, body: bytes) -> Iterable[Chunk]:
        return chunks()  # type: ignore[no-any-return]

    server.routes[path] = behaviour


def run_child(url: str, operation: str, tmp_path: Path) -> tuple[dict[str, Any], int]:
    """One client call in a child: its printed outcome and its peak RSS in bytes (the child's
    own ``VmHWM``, see ``client_child``)."""
    with (tmp_path / f"child-{operation}.stderr").open("w+b") as err:
        process = subprocess.Popen(
            [sys.executable, str(CHILD), url, operation], stdout=subprocess.PIPE, stderr=err
        )
        assert process.stdout is not None
        with process.stdout:
            out = process.stdout.read()
        process.wait()
        err.seek(0)
        assert process.returncode == 0, err.read().decode(errors="replace")[-3000:]
    outcome: dict[str, Any] = json.loads(out)
    return outcome, int(outcome.pop("peak_rss"))


# --- time: drips and stalls -------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_a_version_answer_dripped_byte_by_byte_ends_at_the_quick_deadline(
    hostile: HostileServer,
) -> None:
    # Each byte comes well within the per-read timeout: only a deadline on the whole answer ends it.
    route(hostile, "/api/version", lambda: drip_forever(every=0.2))
    with pytest.raises(RequestTimeoutError) as info:
        client_for(hostile, quick=2.0).version()
    assert info.value.transient


@pytest.mark.timeout(30)
def test_a_version_body_dripped_after_quick_headers_ends_at_the_quick_deadline(
    hostile: HostileServer,
) -> None:
    body = b'{"version": "0.33.0"}' + b" " * 10_000

    def dripped() -> Iterable[Chunk]:
        yield b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
        yield from drip(body, every=0.2)

    route(hostile, "/api/version", dripped)
    with pytest.raises(RequestTimeoutError):
        client_for(hostile, quick=2.0).version()


@pytest.mark.timeout(30)
def test_a_server_that_never_answers_times_out(hostile: HostileServer) -> None:
    route(hostile, "/api/version", stall)
    with pytest.raises(RequestTimeoutError):
        client_for(hostile, quick=1.0).version()


@pytest.mark.timeout(30)
def test_a_create_dripping_one_line_for_ever_ends_at_the_create_deadline(
    hostile: HostileServer,
) -> None:
    def dripped() -> Iterable[Chunk]:
        yield ndjson_head()
        yield from drip(b'{"status":"' + b"x" * 100_000, every=0.1)

    route(hostile, "/api/create", dripped)
    with pytest.raises(TransientError, match="create"):
        list(client_for(hostile, create_total=2.0).create({"model": "m"}))


@pytest.mark.timeout(30)
def test_a_create_that_streams_statuses_for_ever_without_progress_ends_transient(
    hostile: HostileServer,
) -> None:
    route(hostile, "/api/create", lambda: statuses_forever(every=0.05))
    with pytest.raises(TransientError, match="no progress") as info:
        list(client_for(hostile, create_total=2.0).create({"model": "m"}))
    assert info.value.transient


@pytest.mark.timeout(60)
def test_a_create_that_keeps_reporting_progress_outlives_its_deadline(
    hostile: HostileServer,
) -> None:
    # 40 lines 0.1 s apart: about 4 s of a 1 s deadline, each line completing more bytes.
    lines = [
        {"status": "copying file", "digest": "sha256:aa", "total": 40, "completed": n}
        for n in range(1, 41)
    ]
    route(hostile, "/api/create", lambda: statuses([*lines, {"status": "success"}], every=0.1))
    seen = list(client_for(hostile, create_total=1.0).create({"model": "m"}))
    assert seen[-1] == {"status": "success"}
    assert len(seen) == 41


# --- redirects and garbage ---------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_not_followed_and_names_the_location_and_the_fix(
    hostile: HostileServer, status: int
) -> None:
    location = "https://ollama.example:443/api/version"
    route(hostile, "/api/version", lambda: redirect(status, location))
    with pytest.raises(RedirectError) as info:
        client_for(hostile).version()
    error = info.value
    assert error.transient  # a configuration problem the operator fixes: not refused for ever
    assert error.status == status
    assert error.location == location
    assert location in str(error)
    assert "https://ollama.example:443" in str(error)
    assert "point the host URL at the server itself" in str(error)
    assert hostile.requests == [("GET", "/api/version")]


@pytest.mark.timeout(30)
def test_a_redirected_create_is_a_redirect_error(hostile: HostileServer) -> None:
    route(hostile, "/api/create", lambda: redirect(302, "/login?next=/api/create"))
    with capture_logs() as logs, pytest.raises(RedirectError, match="/login"):
        list(client_for(hostile).create({"model": "m"}))
    assert [e for e in logs if e["event"] == "ollama.redirect"]


@pytest.mark.timeout(30)
def test_a_garbled_show_after_a_200_confirms_existence_with_a_warning(
    hostile: HostileServer,
) -> None:
    route(hostile, "/api/show", lambda: answer(200, b"<html>\x00\xff garbage", "text/html"))
    with capture_logs() as logs:
        assert client_for(hostile).show("m") == {}
    warnings = [e for e in logs if e["event"] == "ollama.show.garbled"]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == "warning"
    assert warnings[0]["model"] == "m"


@pytest.mark.timeout(30)
def test_a_show_that_is_json_but_not_an_object_also_confirms_existence(
    hostile: HostileServer,
) -> None:
    route(hostile, "/api/show", lambda: json_answer([1, 2, 3]))
    with capture_logs():
        assert client_for(hostile).show("m") == {}


@pytest.mark.timeout(30)
def test_a_missing_model_is_still_a_404_request_error(hostile: HostileServer) -> None:
    route(hostile, "/api/show", lambda: json_answer({"error": "model 'm' not found"}, 404))
    with pytest.raises(RequestError) as info:
        client_for(hostile).show("m")
    assert info.value.status == 404


@pytest.mark.timeout(30)
def test_garbage_json_from_version_is_a_request_error(hostile: HostileServer) -> None:
    route(hostile, "/api/version", lambda: answer(200, b'{"version": "0.3', "text/plain"))
    with pytest.raises(RequestError, match="/api/version"):
        client_for(hostile).version()


# --- memory: huge bodies and lines ------------------------------------------------------------


@pytest.mark.timeout(120)
def test_a_huge_version_body_is_refused_past_its_cap_in_bounded_memory(
    hostile: HostileServer, tmp_path: Path
) -> None:
    route(hostile, "/api/version", lambda: huge_body(200, b'{"version": "', FLOOD_BYTES, b'"}'))
    outcome, peak = run_child(hostile.url, "version", tmp_path)
    assert outcome["error"] == "ServerError"  # transient: a proxy may be fixed
    assert "larger than" in outcome["message"]
    assert peak < RSS_BOUND_BYTES, f"peak RSS {peak >> 20} MiB"


@pytest.mark.timeout(120)
def test_a_huge_error_body_is_cut_in_bounded_memory(hostile: HostileServer, tmp_path: Path) -> None:
    route(hostile, "/api/tags", lambda: huge_body(500, b"<html>", FLOOD_BYTES))
    outcome, peak = run_child(hostile.url, "tags", tmp_path)
    assert outcome["error"] == "ServerError"
    assert outcome["message_chars"] < 1000
    assert peak < RSS_BOUND_BYTES, f"peak RSS {peak >> 20} MiB"


@pytest.mark.timeout(120)
def test_show_of_a_model_with_a_huge_description_confirms_it_in_bounded_memory(
    hostile: HostileServer, tmp_path: Path
) -> None:
    # As Ollama orders its answer: details before model_info, whose general.description is huge.
    prefix = (
        b'{"license": "MIT", "modelfile": "FROM x", "details": {"format": "gguf",'
        b' "quantization_level": "Q4_K_M"}, "model_info": {"general.description": "'
    )
    route(hostile, "/api/show", lambda: huge_body(200, prefix, FLOOD_BYTES, b'"}}'))
    outcome, peak = run_child(hostile.url, "show", tmp_path)
    assert "error" not in outcome, outcome
    assert outcome["result"] == ["details", "license", "modelfile"]
    assert peak < RSS_BOUND_BYTES, f"peak RSS {peak >> 20} MiB"


@pytest.mark.timeout(120)
def test_a_huge_create_status_line_fails_the_create_in_bounded_memory(
    hostile: HostileServer, tmp_path: Path
) -> None:
    def huge_line() -> Iterable[Chunk]:
        yield ndjson_head()
        yield b'{"status":"parsing GGUF"}\n{"status":"'
        yield from flood(FLOOD_BYTES)
        yield b'"}\n{"status":"success"}\n'

    route(hostile, "/api/create", huge_line)
    outcome, peak = run_child(hostile.url, "create", tmp_path)
    assert outcome["error"] == "ServerError"
    assert f"longer than {CREATE_LINE_CAP}" in outcome["message"]
    assert outcome["message_chars"] < 1000  # and so is every event that quotes it
    assert peak < RSS_BOUND_BYTES, f"peak RSS {peak >> 20} MiB"


@pytest.mark.timeout(30)
def test_a_create_error_line_of_any_length_is_logged_cut(hostile: HostileServer) -> None:
    long_error = {"error": "bad " + "x" * 50_000}
    route(hostile, "/api/create", lambda: statuses([{"status": "parsing"}, long_error]))
    with pytest.raises(Exception, match="bad x") as info:
        list(client_for(hostile).create({"model": "m"}))
    assert len(str(info.value)) < 1000


@pytest.mark.timeout(30)
def test_huge_server_values_in_status_lines_are_cut_before_anyone_logs_them(
    hostile: HostileServer,
) -> None:
    line = {"status": "s" * 20_000, "digest": "d" * 20_000, "completed": 1}
    route(hostile, "/api/create", lambda: statuses([line, {"status": "success"}]))
    first, _ = list(client_for(hostile).create({"model": "m"}))
    assert len(first["status"]) < 1000
    assert len(first["digest"]) < 1000


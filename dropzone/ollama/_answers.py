"""What a server answered, read and put into words for dropzone's errors and events: the
answer read up to a byte cap, the error a status maps to (the server's error text; a redirect
names where it points), a transport failure as text, and server text cut to ``LOGGED_CHARS``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
import structlog

from dropzone.errors import (
    DigestMismatchError,
    OllamaError,
    RedirectError,
    RequestError,
    ServerError,
    TransientError,
)
from dropzone.ollama._bounded import read_capped

# Server text in an error message or an event: enough for any real message, one log line long.
LOGGED_CHARS = 300

log = structlog.get_logger("dropzone.ollama")


@dataclass(frozen=True)
class Answer:
    """A response read as far as a cap: ``more`` if the body went on past ``data``."""

    status: int
    reason: str
    url: httpx.URL
    location: str
    data: bytes
    more: bool

    @classmethod
    def read(cls, response: httpx.Response, cap: int) -> Answer:
        data, more = read_capped(response, cap)
        location = response.headers.get("location", "")
        return cls(response.status_code, response.reason_phrase, response.url, location, data, more)


def status_error(answer: Answer, host: str) -> OllamaError:
    """The error for a status the caller did not expect; its class decides retry or refusal."""
    status = answer.status
    if 300 <= status < 400:
        return _redirect_error(answer, host)
    text = _error_text(answer)
    kind: type[OllamaError] = RequestError
    if status >= 500:
        kind = ServerError
    elif status in (408, 429):  # a proxy's "try again later" must not fail the artifact
        kind = TransientError
    elif status == 400 and text.startswith("digest mismatch"):
        kind = DigestMismatchError
    return kind(text, host=host, status=status)


def _redirect_error(answer: Answer, host: str) -> RedirectError:
    """A proxy's 3xx: where it points, and the host URL that would reach it directly."""
    location = cut(answer.location)
    fix = "point the host URL at the server itself"
    if location:
        target = str(answer.url.join(location))
        path = answer.url.path
        base = target[: -len(path)] if path and target.endswith(path) else ""
        if base and base != host:
            fix += f", e.g. {base} (the proxy redirects there, as from http to https)"
        else:
            fix += ", not a proxy that redirects (to a login page?)"
    message = (
        f"HTTP {answer.status} redirect to {location or '(no Location)'} is not followed;"
        f" fix: {fix}"
    )
    log.warning("ollama.redirect", host=host, status=answer.status, location=location, fix=fix)
    return RedirectError(message, host=host, status=answer.status, location=location)


def _error_text(answer: Answer) -> str:
    """The server's ``{"error": …}`` text, or a status line plus a short plain-text snippet."""
    body = None if answer.more else json_or_none(answer.data)
    if body is not None and isinstance(body.get("error"), str):
        return cut(str(body["error"]))
    shown = snippet(answer.data)
    line = f"HTTP {answer.status} {cut(answer.reason)}".rstrip()
    return f"{line}: {shown}" if shown else line


def json_or_none(data: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(data)
    except ValueError:  # includes a body that is not UTF-8
        return None
    return value if isinstance(value, dict) else None


def snippet(data: bytes | bytearray) -> str:
    return " ".join(bytes(data[: LOGGED_CHARS * 4]).decode("utf-8", "replace").split())[:200]


def cut(text: str) -> str:
    return text if len(text) <= LOGGED_CHARS else text[:LOGGED_CHARS] + "…"


def describe(exc: Exception) -> str:
    # Some httpx exceptions carry no text: then the class name is all there is to say.
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

"""Bounds on what one Ollama server can make the client spend: time and bytes (issue 13).

httpx's timeouts are per socket operation: a server (or a proxy) that sends one byte every few
seconds never trips them, and a request can last for ever. ``Deadline`` is a wall-clock bound on
a whole exchange (connect, send, headers, body). It reaches the socket through a wrapper around
httpcore's network backend (``bound_transports``): while a deadline is active in the calling
thread (``within(deadline)``), every connect, read and write waits at most until it, and fails
with httpcore's own timeout once it has passed, which httpx maps to ``httpx.TimeoutException``.
A keep-alive connection reused for the request is covered as well, since every read of every
connection goes through the wrapper. Without an active deadline nothing changes (uploads keep
only their per-write timeout: a 40 GB upload is fine).

``read_capped`` reads a body up to a byte cap and stops; ``json_members`` parses the complete
top-level members of a JSON object from a prefix of it, so a capped ``/api/show`` still yields
its ``details`` (Ollama sends them before ``model_info``).
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import httpcore
import httpx


class Deadline:
    """A moment on the monotonic clock; ``extend`` moves it later (progress was reported)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def passed(self) -> bool:
        return self.remaining() <= 0

    def extend(self) -> None:
        self.at = time.monotonic() + self.seconds


_ACTIVE: ContextVar[Deadline | None] = ContextVar("dropzone_http_deadline", default=None)


@contextmanager
def within(deadline: Deadline | None) -> Iterator[None]:
    """Every socket operation of this thread inside the block ends by ``deadline``."""
    token = _ACTIVE.set(deadline)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def _bounded(timeout: float | None, expired: type[Exception]) -> float | None:
    deadline = _ACTIVE.get()
    if deadline is None:
        return timeout
    left = deadline.remaining()
    if left <= 0:
        raise expired(f"deadline of {deadline.seconds:g} s passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, bounded))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        stream = self._inner.connect_tcp(host, port, bounded, local_address, socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_unix_socket(path, bounded, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def bound_transports(client: httpx.Client) -> int:
    """Put the deadline wrapper under every transport of ``client`` (its own and its proxy
    mounts); the number wrapped. httpx has no public hook for a network backend, so this sets
    httpcore's ``_network_backend`` on each pool; a test pins that it took effect, so an httpx
    or httpcore upgrade that renames it fails that test instead of silently unbounding reads."""
    wrapped = 0
    transports = [client._transport, *client._mounts.values()]
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if isinstance(backend, httpcore.NetworkBackend):
            if not isinstance(backend, _DeadlineBackend):
                pool._network_backend = _DeadlineBackend(backend)  # type: ignore[union-attr]
            wrapped += 1
    return wrapped


def read_capped(response: httpx.Response, cap: int) -> tuple[bytes, bool]:
    """At most ``cap`` bytes of ``response``'s body, and whether there was more; the response is
    closed either way, so the rest is never read. The body is read a network chunk at a time
    (64 KiB; more only if a server compresses although asked not to), never whole."""
    parts: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_bytes():
            parts.append(chunk)
            size += len(chunk)
            if size > cap:
                return b"".join(parts)[:cap], True
    finally:
        response.close()
    return b"".join(parts), False


_DECODER = json.JSONDecoder()
_SPACE = " \t\n\r"


def json_members(prefix: str) -> dict[str, Any] | None:
    """The top-level members of the JSON object whose first characters are ``prefix`` (a body
    cut at a cap), as far as each is complete: a member counts once the ``,`` or ``}`` after it
    arrived, so a number cut short is not taken for a smaller one. None if ``prefix`` is not
    the start of a JSON object."""
    members: dict[str, Any] = {}
    end = len(prefix)
    i = _skip(prefix, 0)
    if i >= end or prefix[i] != "{":
        return None
    i = _skip(prefix, i + 1)
    while i < end and prefix[i] != "}":
        start = i
        try:
            key, i = _DECODER.raw_decode(prefix, start)
            i = _skip(prefix, i)
            if i < end and (prefix[i] != ":" or not isinstance(key, str)):
                return None
            start = _skip(prefix, i + 1)
            value, i = _DECODER.raw_decode(prefix, start)
        except ValueError:
            # A key or value cut by the cap: what came before it stands. Anything else is garbage.
            return members if _cut_by_the_end(prefix, start) else None
        i = _skip(prefix, i)
        if i >= end:
            break
        if prefix[i] not in ",}":
            return None
        members[key] = value
        if prefix[i] == ",":
            i = _skip(prefix, i + 1)
    return members


def _cut_by_the_end(prefix: str, i: int) -> bool:
    """Whether the JSON text at ``i`` fails only because ``prefix`` ends inside it. A NUL added
    at the end makes a cut string fail there (an unterminated one is reported where it began);
    a cut literal (``tr``) is reported at its first letter, at most ``len("false")`` before."""
    try:
        _DECODER.raw_decode(prefix + "\0", i)
    except json.JSONDecodeError as exc:
        return exc.pos >= len(prefix) - len("false")
    return True  # complete with the NUL: a number or literal cut exactly at the end


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in _SPACE:
        i += 1
    return i

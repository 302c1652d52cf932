"""A loopback HTTP/1.1 server that misbehaves on purpose (issue 13): the Ollama host behind a
proxy that drips, stalls, floods, redirects or answers garbage.

Raw sockets, not ``http.server``: a hostile answer must be able to stop half-way through its
status line, never end, or lie about its length. Each connection reads one request head and
body, then sends whatever the *behaviour* for that path yields: ``bytes`` are sent at once, a
``Pause`` waits (on the stop event, so ``stop()`` ends every behaviour at once). The connection
is closed after each answer. Requests are recorded so a test can check that a redirect was not
followed.

A behaviour is a function ``(method, path, body) -> Iterable[bytes | Pause]``; the helpers below
build the hostile ones.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Pause:
    seconds: float


Chunk = bytes | Pause
Behaviour = Callable[[str, str, bytes], Iterable[Chunk]]
MIB = 1 << 20
_FILL = b"a" * MIB  # one shared buffer: the server must stay small while it floods


def head(status: int, *, length: int | None = None, extra: dict[str, str] | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status} Hostile", "Connection: close"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def answer(status: int, body: bytes, content_type: str = "application/json") -> Iterator[Chunk]:
    yield head(status, length=len(body), extra={"Content-Type": content_type}) + body


def json_answer(value: Any, status: int = 200) -> Iterator[Chunk]:
    return answer(status, json.dumps(value).encode())


def drip(data: bytes, every: float) -> Iterator[Chunk]:
    """``data`` one byte at a time, ``every`` seconds apart: each read gets its byte before any
    per-read timeout fires."""
    for i in range(len(data)):
        yield data[i : i + 1]
        yield Pause(every)


def drip_forever(every: float) -> Iterator[Chunk]:
    """A status line that never ends, one byte at a time."""
    yield b"H"
    while True:
        yield Pause(every)
        yield b"T"


def stall() -> Iterator[Chunk]:
    """Accept, read the request, and never answer."""
    while True:
        yield Pause(3600)


def flood(size: int) -> Iterator[Chunk]:
    """``size`` bytes of filler, sent as fast as the client reads them."""
    while size > 0:
        part = _FILL if size >= MIB else _FILL[:size]
        yield part
        size -= len(part)


def huge_body(status: int, prefix: bytes, size: int, suffix: bytes = b"") -> Iterator[Chunk]:
    """A body of ``prefix``, ``size`` filler bytes and ``suffix``, with a true Content-Length."""
    total = len(prefix) + size + len(suffix)
    yield head(status, length=total, extra={"Content-Type": "application/json"}) + prefix
    yield from flood(size)
    yield suffix


def redirect(status: int, location: str) -> Iterator[Chunk]:
    yield head(status, length=0, extra={"Location": location})


def ndjson_head() -> bytes:
    # No Content-Length and Connection: close: the body runs until the server closes, as a
    # streamed create does behind some proxies.
    return head(200, extra={"Content-Type": "application/x-ndjson"})


def statuses(lines: Iterable[dict[str, Any]], every: float = 0.0) -> Iterator[Chunk]:
    yield ndjson_head()
    for line in lines:
        yield json.dumps(line).encode() + b"\n"
        if every:
            yield Pause(every)


def statuses_forever(every: float) -> Iterator[Chunk]:
    """A create that reports the same status for ever, never any progress."""
    yield ndjson_head()
    while True:
        yield b'{"status":"quantizing F16 model to Q4_K_M"}\n'
        yield Pause(every)


class HostileServer:
    """``routes`` maps a path to its behaviour; any other path answers 404."""

    def __init__(self, routes: dict[str, Behaviour] | None = None) -> None:
        self.routes: dict[str, Behaviour] = dict(routes or {})
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._requests: list[tuple[str, str]] = []
        self._conns: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._acceptor = threading.Thread(target=self._accept, name="hostile-accept", daemon=True)
        self._acceptor.start()

    def __enter__(self) -> HostileServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def requests(self) -> list[tuple[str, str]]:
        with self._cond:
            return list(self._requests)

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[tuple[str, str]]:
        with self._cond:
            self._cond.wait_for(lambda: len(self._requests) >= count, timeout)
            return list(self._requests)

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()
        with self._cond:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._acceptor.join(5)
        for thread in self._threads:
            thread.join(5)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with self._cond:
            self._conns.add(conn)
        try:
            with conn:
                request = _read_request(conn)
                if request is None:
                    return
                method, path, body = request
                with self._cond:
                    self._requests.append((method, path))
                    self._cond.notify_all()
                behaviour = self.routes.get(path)
                chunks = behaviour(method, path, body) if behaviour else answer(404, b"no")
                for chunk in chunks:
                    if self._stop.is_set():
                        return
                    if isinstance(chunk, Pause):
                        self._stop.wait(chunk.seconds)
                    else:
                        conn.sendall(chunk)
        except OSError:
            pass  # the client gave up: exactly what a bounded client should do
        finally:
            with self._cond:
                self._conns.discard(conn)


def _read_request(conn: socket.socket) -> tuple[str, str, bytes] | None:
    data = b""
    while b"\r\n\r\n" not in data:
        part = conn.recv(65536)
        if not part:
            return None
        data += part
    head_text, _, body = data.partition(b"\r\n\r\n")
    lines = head_text.decode("latin-1").split("\r\n")
    method, path = lines[0].split(" ")[:2]
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    while len(body) < length:
        part = conn.recv(65536)
        if not part:
            break
        body += part
    return method, path.split("?")[0], body

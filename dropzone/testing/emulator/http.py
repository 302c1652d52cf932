"""HTTP/1.1 transport of the Ollama emulator: server, connection handling, request bodies.

Behaves like Go's ``net/http`` where clients can tell the difference:

* ``Expect: 100-continue`` is answered only when the handler starts reading the body, so a
  client uploading an existing blob gets its 200 without ever sending the body.
* A response sent while body bytes are still unread closes the connection if 256 KiB or more
  remain (or the client is waiting for ``100 Continue``); a smaller rest is drained first so
  the connection stays alive. After a close the server shuts its write side and lingers
  briefly, reading, so the client can read the response instead of meeting a reset.
* Bodies may use ``Content-Length`` or chunked encoding; there is no size limit or timeout.

Endpoint logic lives in ``emulator_app``; this module only moves bytes.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import json
import socket
import socketserver
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote

from dropzone.testing.emulator.gojson import go_json

if TYPE_CHECKING:
    from dropzone.testing.emulator.app import App

MAX_POST_HANDLER_READ = 256 << 10  # Go's maxPostHandlerReadBytes
LINGER_SECONDS = 0.5  # Go's rstAvoidanceDelay
JSON_UTF8 = "application/json; charset=utf-8"


class BodyError(Exception):
    """The request body ended early or its chunked framing is broken."""


class AbortError(Exception):
    """Drop the connection now, without a response (an injected fault or a server stop)."""


class Body:
    """The request body as a stream; sends ``100 Continue`` on first read if it was asked for."""

    def __init__(self, handler: Handler) -> None:
        self._h = handler
        headers = handler.headers
        self.chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
        length = headers.get("Content-Length")
        self.remaining = 0 if self.chunked else int(length) if length else 0
        self.complete = not self.chunked and self.remaining == 0
        self.started = False
        self.bytes_read = 0
        self._chunk_left = 0

    def readinto(self, buf: memoryview) -> int:
        """Read up to ``len(buf)`` bytes; 0 means the body is complete."""
        if self.complete or not len(buf):
            return 0
        if not self.started:
            self.started = True
            self._h.send_continue()
        rfile = cast(io.BufferedReader, self._h.rfile)
        if self.chunked:
            if self._chunk_left == 0 and not self._next_chunk():
                return 0
            n = rfile.readinto(buf[: min(len(buf), self._chunk_left)])
            if not n:
                raise BodyError("unexpected EOF")
            self._chunk_left -= n
            if self._chunk_left == 0 and rfile.readline(3) not in (b"\r\n", b"\n"):
                raise BodyError("malformed chunked encoding")
        else:
            n = rfile.readinto(buf[: min(len(buf), self.remaining)])
            if not n:
                raise BodyError("unexpected EOF")
            self.remaining -= n
            self.complete = self.remaining == 0
        self.bytes_read += n
        return int(n)

    def _next_chunk(self) -> bool:
        line = self._h.rfile.readline(1024)
        if not line:
            raise BodyError("unexpected EOF")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise BodyError("malformed chunked encoding") from None
        if size == 0:
            while self._h.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                pass  # trailers are ignored
            self.complete = True
            return False
        self._chunk_left = size
        return True

    def read_all(self) -> bytes:
        parts, buf = [], bytearray(64 << 10)
        view = memoryview(buf)
        while n := self.readinto(view):
            parts.append(bytes(view[:n]))
        return b"".join(parts)

    def settle_before_response(self) -> bool:
        """Go's rule for an unread rest; True if the connection can stay alive."""
        if self.complete:
            return True
        if not self.started and self._h.expects_continue:
            return False
        if not self.chunked and self.remaining >= MAX_POST_HANDLER_READ:
            return False
        view = memoryview(bytearray(64 << 10))
        budget = MAX_POST_HANDLER_READ + 1
        try:
            while budget > 0 and (n := self.readinto(view[: min(len(view), budget)])):
                budget -= n
        except (BodyError, OSError):
            return False
        return self.complete


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Go's net/http sets TCP_NODELAY on every connection. Without it a response written as
    # headers then body waits for the client's delayed ACK: ~40 ms per create and show.
    disable_nagle_algorithm = True
    server: EmulatorServer

    def setup(self) -> None:
        super().setup()
        self.expects_continue = False

    # --- http.server hooks ------------------------------------------------------------------

    def handle_expect_100(self) -> bool:
        self.expects_continue = True  # answered lazily by Body.readinto
        return True

    def send_response(self, code: int, message: str | None = None) -> None:
        self.send_response_only(code, message)  # Go sends no Server header
        self.send_header("Date", self.date_time_string())

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log is in Counters

    def handle_one_request(self) -> None:
        self.expects_continue = False
        self.status = 0
        try:
            super().handle_one_request()
        except AbortError:
            self.close_connection = True
            self.server.mark_reset(self.connection)
        except (ConnectionError, TimeoutError, BodyError):
            self.close_connection = True

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_OPTIONS(self) -> None:
        self._dispatch()

    # --- request plumbing -------------------------------------------------------------------

    def _dispatch(self) -> None:
        self.route_path = unquote(self.path.split("?", 1)[0])
        self.responded = False
        app = self.server.app
        try:
            self.body = Body(self)
        except ValueError:  # what Go's server answers before any handler runs
            self.close_connection = True
            self.send_response_only(400)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"400 Bad Request: bad Content-Length")
            app.counters.record_request(self.command, self.route_path, 400)
            return
        try:
            app.faults.hold(self.route_path, self.server.stopping.is_set, self.command)
            if self.server.stopping.is_set():
                raise AbortError
            app.handle(self)
        finally:
            if not self.responded:  # dropped without a response: status 0
                app.counters.record_request(self.command, self.route_path, self.status)

    def send_continue(self) -> None:
        if self.expects_continue and not self.responded:
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _start(self, status: int, headers: list[tuple[str, str]]) -> None:
        keep_alive = self.body.settle_before_response()
        self.responded = True
        self.status = status
        # Counted before the client can see the answer: a test that asserts on the request log
        # right after its call returns must find the request there (it once raced the log).
        self.server.app.counters.record_request(self.command, self.route_path, status)
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        if not keep_alive:
            self.close_connection = True
            self.server.mark_linger(self.connection)
            self.send_header("Connection", "close")
        self.end_headers()

    def respond(
        self,
        status: int,
        body: bytes = b"",
        content_type: str | None = None,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> None:
        headers = [("Content-Type", content_type)] if content_type else []
        headers.extend(extra)
        headers.append(("Content-Length", str(len(body))))
        self._start(status, headers)
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def send_redirect(self, status: int, location: str) -> None:
        """gin's trailing-slash redirect (``http.Redirect``: a small HTML body for GET)."""
        body = b""
        if self.command == "GET":
            body = f'<a href="{location}">Moved Permanently</a>.\n\n'.encode()
        self.respond(status, body, "text/html; charset=utf-8", (("Location", location),))

    def respond_json(self, status: int, value: Any, content_type: str = JSON_UTF8) -> None:
        self.respond(status, go_json(value).encode(), content_type)

    def respond_error(self, status: int, message: str, content_type: str = JSON_UTF8) -> None:
        self.respond_json(status, {"error": message}, content_type)

    def respond_text(self, status: int, text: str) -> None:
        self.respond(status, text.encode(), "text/plain; charset=utf-8")

    def start_stream(self, content_type: str) -> None:
        """Begin a chunked response whose parts are sent (and flushed) one by one."""
        self.chunked_out = self.request_version != "HTTP/1.0"
        headers = [("Content-Type", content_type)]
        if self.chunked_out:
            headers.append(("Transfer-Encoding", "chunked"))
        else:
            self.close_connection = True
        self._start(200, headers)

    def stream_part(self, data: bytes) -> None:
        if self.chunked_out:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        self.wfile.write(data)

    def end_stream(self) -> None:
        if self.chunked_out:
            self.wfile.write(b"0\r\n\r\n")

    def host_allowed(self) -> bool:
        """``allowedHostsMiddleware`` for a loopback listener (DNS-rebinding protection)."""
        if not self.server.loopback:
            return True
        host = self.headers.get("Host", "")
        if host.startswith("["):
            host = host[1 : host.find("]")]
        elif host.count(":") == 1:
            host = host.split(":", 1)[0]
        host = host.lower()
        if host in ("", "localhost", socket.gethostname().lower()):
            return True
        if host.endswith((".localhost", ".local", ".internal")):
            return True
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        return ip.is_loopback or ip.is_private or ip.is_unspecified or ip.is_link_local


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: App) -> None:
        self.app = app
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._linger: set[socket.socket] = set()
        self._reset: set[socket.socket] = set()
        super().__init__(address, Handler)
        self.loopback = ipaddress.ip_address(str(self.server_address[0])).is_loopback

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # skips HTTPServer's slow getfqdn lookup
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def mark_linger(self, sock: socket.socket) -> None:
        with self._lock:
            self._linger.add(sock)

    def mark_reset(self, sock: socket.socket) -> None:
        with self._lock:
            self._reset.add(sock)

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            linger = request in self._linger
            reset = request in self._reset
            self._linger.discard(request)
            self._reset.discard(request)
        if reset:  # an abrupt close: RST instead of FIN, as a crashed server would
            request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif linger:
            _linger(request)  # still in _open, so a stop can cut the wait short
        else:
            with contextlib.suppress(OSError):
                request.shutdown(socket.SHUT_WR)
        with self._lock:
            self._open.discard(request)
        request.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that vanished is not the emulator's problem

    def drop_connections(self) -> None:
        """Wake every handler blocked on a socket (used by stop)."""
        with self._lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _linger(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + LINGER_SECONDS
        sock.settimeout(LINGER_SECONDS)
        while time.monotonic() < deadline and sock.recv(1 << 16):
            pass
    except OSError:
        pass


def read_body(h: Handler) -> bytes | None:
    """The request body, or None once a 400 with the reason has been answered (a body that
    breaks its framing: a bad chunk, a short Content-Length)."""
    try:
        return h.body.read_all()
    except BodyError as exc:
        h.respond_error(400, str(exc))
        return None


def parse_json_body(raw: bytes) -> tuple[Any, str | None]:
    """Go's ``json.Decoder.Decode`` of the first value: (value, error text or None).

    An empty or blank body is ``missing request body``; trailing bytes are ignored.
    """
    text = raw.decode("utf-8", errors="replace").lstrip(" \t\r\n")
    if not text:
        return None, "missing request body"
    try:
        value, _ = json.JSONDecoder().raw_decode(text)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(exc.doc):
            return None, "unexpected EOF"
        return None, f"invalid character {exc.doc[exc.pos]!r} looking for beginning of value"
    return value, None

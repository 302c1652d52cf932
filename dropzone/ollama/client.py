"""Thin client for one Ollama host over an injected ``httpx.Client`` (ollama-api.md §2-§5).

This module, with ``_answers.py`` (how an answer is read and described), is the only boundary
between httpx and dropzone: every transport error and every unexpected status is converted here
into the tree of ``errors.py``, chained with ``from`` and carrying ``host`` (the base URL) and
``status`` (``None`` when no response arrived).

Local trouble during ``push_blob`` uses the hasher's errors, not the Ollama branch: the ``cancel``
event raises ``StoppedError`` (checked between chunks, so within one 2 MiB write), and a file whose
size changes, or that cannot be read, raises ``FileChangedError`` (look again later: re-hash).

Upload body: a generator over the file opened unbuffered, yielding a *fresh* ``bytes`` object per
2 MiB ``read``. No buffer is reused, so no consumer can see a chunk change under it (``b"".join``
over the stream, as ``MockTransport`` does, stays correct). On loopback this ran at 2.7 GB/s
against 2.1 GB/s for ``readinto`` a reused buffer plus a ``bytes`` copy (one memcpy fewer), with
the same flat peak RSS. An explicit ``Content-Length`` keeps httpx from switching to chunked
encoding, which was much slower.

Chunk size is a trade-off (bench/upload.py; bench/RESULTS.md, "Upload"). Each chunk costs ~50 us
of Python in httpx/httpcore/h11, so against a receiver that keeps up (the transport ceiling)
bigger is better: sender CPU per 2 GiB was 0.72 s at 1 MiB, 0.70 s at 2 MiB, 0.64 s at 4 MiB.
Against a receiver on the same machine that hashes and writes (a local Ollama; the emulator),
the sender's cache footprint (two chunks alive) slows the receiver's memory copies: with 4 MiB
chunks they took ~11 % more CPU than with curl's 64 KiB buffer (perf). 2 MiB sits between the
two optima: 0.95x curl to the emulator and 1.03x to a discarding receiver over 15 runs; no size
stayed ahead of the ±5 % the medians move between runs on both targets.

Bounds (issue 13; design §10 item 7): every answer is read as a stream and only up to a byte cap
(``*_CAP`` below), and every request but an upload has a deadline on the whole exchange, not
only per read (``bounded_http``): a quick request ends within ``Timeouts.quick`` seconds, a
create within ``Timeouts.create_total`` seconds of its last progress. A 3xx is never followed:
it is a ``RedirectError`` naming the Location and the fix. Any server text put in an error or
yielded for logging is cut to ``_answers.LOGGED_CHARS``.
"""

from __future__ import annotations

import io
import os
import re
import ssl
import threading
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import structlog

from dropzone.errors import (
    ConfigError,
    CreateError,
    FileChangedError,
    RequestError,
    RequestTimeoutError,
    ServerError,
    StoppedError,
    TransientError,
    UnreachableError,
)
from dropzone.ollama._answers import (
    LOGGED_CHARS,
    Answer,
    cut,
    describe,
    json_or_none,
    snippet,
    status_error,
)
from dropzone.ollama._bounded import Deadline, bound_transports, json_members, within

CHUNK_BYTES = 2 << 20
PROGRESS_EVERY_BYTES = 8 << 20
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")

# Byte caps on answers (issue 13: a 1 GiB create line took the daemon to 6.2 GiB RSS; a GGUF's
# 200 MiB general.description came back inside /api/show). Each is far above what Ollama sends.
# {"version":"0.33.0"} is 20 bytes; 64 KiB also holds any proxy's error page whole.
VERSION_BODY_CAP = 64 << 10
# Only ``details`` are used (a base's quantization) and Ollama sends them first, within a few KiB;
# ``model_info`` after them holds the GGUF's own strings, of any size. 1 MiB of license, Modelfile
# and template is generous; past the cap the complete members before it are used.
SHOW_BODY_CAP = 1 << 20
# About 400 bytes per model: 32 MiB lists some 80,000 models.
TAGS_BODY_CAP = 32 << 20
# An error is one {"error": "..."} line or a proxy's HTML page; only LOGGED_CHARS are kept.
ERROR_BODY_CAP = 64 << 10
# A create status line is ~150 bytes, an error line one Go error text; 64 KiB is 400 times that.
CREATE_LINE_CAP = 64 << 10

log = structlog.get_logger("dropzone.ollama")


@dataclass(frozen=True)
class Timeouts:
    """Seconds per operation; ``None`` waits forever. An upload has no overall timeout."""

    connect: float = 5.0
    # The whole exchange of version, HEAD, show, tags, delete: connect, send, every byte of the
    # answer. Also each read's timeout. A server dripping one byte at a time is cut off here.
    quick: float = 30.0
    # Bounds one stalled 2 MiB socket write, never the whole upload: a 40 GB file is fine.
    upload_write: float | None = 300.0
    # After the last byte: the server renames and compares; a buffering reverse proxy may first
    # have to forward the whole body.
    upload_response: float = 900.0
    # Silence allowed between two create lines: quantizing or hashing a big layer takes minutes.
    create_line: float = 1800.0
    # A whole create, moved later by each status line whose ``completed`` grows: a server that
    # streams statuses for ever without progress ends here (settings: create_timeout_seconds).
    create_total: float | None = 3600.0
    pool: float = 60.0

    def for_quick(self) -> httpx.Timeout:
        return httpx.Timeout(self.quick, connect=self.connect, pool=self.pool)

    def for_upload(self) -> httpx.Timeout:
        return httpx.Timeout(
            connect=self.connect,
            read=self.upload_response,
            write=self.upload_write,
            pool=self.pool,
        )

    def for_create(self) -> httpx.Timeout:
        return httpx.Timeout(
            connect=self.connect, read=self.create_line, write=self.quick, pool=self.pool
        )


def make_http_client(*, verify: bool | str = True) -> httpx.Client:
    """An HTTP/1.1 keep-alive client without default timeouts; ``verify`` may be a CA path."""
    tls: bool | ssl.SSLContext
    if isinstance(verify, bool):
        tls = verify
    else:
        # httpx 0.28 deprecates verify=<path>; a context is the supported spelling.
        try:
            if os.path.isdir(verify):
                tls = ssl.create_default_context(capath=verify)
            else:
                tls = ssl.create_default_context(cafile=verify)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError([f"TLS CA bundle {verify!r} is unusable: {exc}"]) from exc
    client = httpx.Client(
        http1=True,
        http2=False,
        verify=tls,
        timeout=httpx.Timeout(None),
        # Compressed answers would inflate up to 1000-fold per network chunk before any cap.
        headers={"User-Agent": "dropzone", "Accept-Encoding": "identity"},
    )
    bound_transports(client)
    return client


class OllamaClient:
    """One Ollama host. Thread-safe: it holds no state besides its configuration."""

    def __init__(
        self,
        base_url: str,
        http: httpx.Client,
        *,
        headers: Mapping[str, str] | None = None,
        timeouts: Timeouts = Timeouts(),  # frozen: a shared default is safe
    ) -> None:
        self.host = base_url.rstrip("/")
        self._http = http
        self._headers = dict(headers or {})
        self._timeouts = timeouts

    def version(self) -> str:
        body = self._json_object(self._quick("GET", "/api/version", VERSION_BODY_CAP))
        if not isinstance(body.get("version"), str):
            raise RequestError(f"no version in {cut(repr(body))}", host=self.host, status=200)
        return cut(str(body["version"]))

    def blob_exists(self, digest: str) -> bool:
        answer = self._quick("HEAD", _blob_path(digest), ERROR_BODY_CAP)
        if answer.status == 404:
            return False
        self._expect(answer, 200)
        return True

    def push_blob(
        self,
        digest: str,
        source: Path | str | int,
        *,
        progress: Callable[[int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> bool:
        """Upload ``source`` as ``digest``: True if created (201), False if already there (200).

        ``source`` is a path, or a file descriptor the caller opened (and verified: see
        ``safeopen.open_verified``) and still owns; it is read from its current offset."""
        url = _blob_path(digest)
        name = f"fd {source}" if isinstance(source, int) else str(source)
        try:
            fd = os.dup(source) if isinstance(source, int) else os.open(source, os.O_RDONLY)
        except OSError as exc:
            raise FileChangedError(name, f"cannot be opened for upload: {exc}") from exc
        with io.FileIO(fd, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            body = _chunks(file, name, size, progress, cancel)
            try:
                with self._mapped():
                    response = self._send(
                        "POST",
                        url,
                        self._timeouts.for_upload(),
                        content=body,
                        headers={"Content-Length": str(size)},
                    )
                    answer = Answer.read(response, ERROR_BODY_CAP)
            finally:
                body.close()  # the server may answer 200 without reading: release the file
        self._expect(answer, 200, 201)
        return answer.status == 201

    def create(self, request: Mapping[str, Any]) -> Generator[dict[str, Any], None, None]:
        """Yield each status object of a streamed create; the request is sent on first next().

        Runs to the end of the stream (a pull inside create sends its own ``success``) and raises
        ``CreateError`` on any ``{"error": …}`` line, although such lines come with HTTP 200.
        The whole create ends within ``Timeouts.create_total`` seconds of its start or of its
        last progress (a ``completed`` that grew), with a transient ``RequestTimeoutError``.
        String values of each status are cut to ``LOGGED_CHARS`` (they are logged).
        """
        body = {**request, "stream": True}
        total = self._timeouts.create_total
        deadline = Deadline(total) if total is not None else None
        with self._mapped(deadline, "create"), within(deadline):
            response = self._send(
                "POST", "/api/create", self._timeouts.for_create(), json_body=body
            )
        try:
            if response.status_code != 200:
                with self._mapped(deadline, "create"), within(deadline):
                    answer = Answer.read(response, ERROR_BODY_CAP)
                raise status_error(answer, self.host)
            last = None
            progress = _Progress()
            for line in self._lines(response, deadline):
                item = self._parse_line(line)
                if "error" in item:
                    raise CreateError(cut(str(item["error"])), host=self.host, status=200)
                last = item.get("status")
                if deadline is not None and progress.grew(item):
                    deadline.extend()
                yield {k: cut(v) if isinstance(v, str) else v for k, v in item.items()}
            if last != "success":
                raise ServerError("create stream ended without success", host=self.host, status=200)
        finally:
            response.close()

    def show(self, model: str) -> dict[str, Any]:
        """The model's description, or as much of it as fits in ``SHOW_BODY_CAP``.

        A 200 whose body is not a JSON object (a proxy's page, a garbled answer) returns ``{}``
        with an ``ollama.show.garbled`` warning rather than an error: Ollama answers 404 for a
        model it does not have, so the 200 itself confirms existence, which is what the importer
        asks after a create the server reported successful. Retrying the confirmation instead
        would meet the same garbled answer and hold a model that exists in backoff, then send
        its create again. A caller that needs a member (``details``) finds it missing and does
        what it does when the server says nothing (the create goes out; the server decides).
        """
        answer = self._quick("POST", "/api/show", SHOW_BODY_CAP, json_body={"model": model})
        self._expect(answer, 200)
        members: dict[str, Any] | None
        if answer.more:  # e.g. a GGUF's huge general.description inside model_info
            members = json_members(answer.data.decode("utf-8", "replace"))
        else:
            members = json_or_none(answer.data)
        if members is None:
            log.warning(
                "ollama.show.garbled",
                host=self.host,
                model=model,
                error=f"not a JSON object: {snippet(answer.data)}",
            )
            return {}
        return members

    def tags(self) -> list[dict[str, Any]]:
        body = self._json_object(self._quick("GET", "/api/tags", TAGS_BODY_CAP))
        models = body.get("models") or []
        if not isinstance(models, list) or not all(isinstance(m, dict) for m in models):
            raise RequestError("unexpected /api/tags body", host=self.host, status=200)
        return models

    def delete(self, model: str) -> None:
        answer = self._quick("DELETE", "/api/delete", ERROR_BODY_CAP, json_body={"model": model})
        self._expect(answer, 200)

    # --- the boundary -----------------------------------------------------------------------

    @contextmanager
    def _mapped(self, deadline: Deadline | None = None, what: str = "") -> Iterator[None]:
        """Convert httpx's exceptions (no response, or a broken one) into dropzone's tree."""
        try:
            yield
        except httpx.TimeoutException as exc:
            message = describe(exc)
            if deadline is not None and deadline.passed():
                message = f"{what} made no progress for {deadline.seconds:g} s ({message})"
            raise RequestTimeoutError(message, host=self.host) from exc
        except (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.InvalidURL) as exc:
            raise RequestError(describe(exc), host=self.host) from exc
        except httpx.TransportError as exc:  # refused, DNS, reset, connection cut mid-way
            raise UnreachableError(describe(exc), host=self.host) from exc
        except httpx.HTTPError as exc:  # e.g. a body that fails to decode
            raise TransientError(describe(exc), host=self.host) from exc

    def load(self, model: str, *, keep_alive: int | None = None, seconds: float = 600.0) -> None:
        """``POST /api/generate`` with the model and no prompt: the server loads it (with
        ``keep_alive=0``, unloads it) and answers 200 ``done`` at once. Loading a big model
        from disk takes minutes, hence its own deadline. Errors are mapped as for any request
        (a runner that cannot load the model is a 500 ``ServerError`` with the server's text)."""
        body: dict[str, Any] = {"model": model}
        if keep_alive is not None:
            body["keep_alive"] = keep_alive
        deadline = Deadline(seconds)
        timeout = httpx.Timeout(seconds, connect=self._timeouts.connect, pool=self._timeouts.pool)
        with self._mapped(deadline, "POST /api/generate"), within(deadline):
            response = self._send("POST", "/api/generate", timeout, json_body=body)
            answer = Answer.read(response, ERROR_BODY_CAP)
        self._expect(answer, 200)

    def _quick(self, method: str, path: str, cap: int, *, json_body: Any = None) -> Answer:
        """One short request, its answer read up to ``cap`` bytes (an error's up to
        ``ERROR_BODY_CAP``), all of it within ``Timeouts.quick`` seconds."""
        deadline = Deadline(self._timeouts.quick)
        with self._mapped(deadline, f"{method} {path}"), within(deadline):
            response = self._send(method, path, self._timeouts.for_quick(), json_body=json_body)
            return Answer.read(response, cap if response.status_code == 200 else ERROR_BODY_CAP)

    def _send(
        self,
        method: str,
        path: str,
        timeout: httpx.Timeout,
        *,
        json_body: Any = None,
        content: Iterator[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """The request, answered as far as its headers: the body is the caller's to read."""
        request = self._http.build_request(
            method,
            self.host + path,
            json=json_body,
            content=content,
            headers={**self._headers, **(headers or {})},
            timeout=timeout,
        )
        return self._http.send(request, stream=True, follow_redirects=False)

    def _lines(self, response: httpx.Response, deadline: Deadline | None) -> Iterator[bytes]:
        """The body's lines, each at most ``CREATE_LINE_CAP`` bytes: a longer one fails the
        create before it is read whole. Each read waits at most until ``deadline``."""
        chunks = response.iter_bytes()
        buffer = bytearray()
        while True:
            with self._mapped(deadline, "create"), within(deadline):
                chunk = next(chunks, None)
            if chunk is None:
                break
            buffer += chunk
            while (end := buffer.find(b"\n")) >= 0:
                line = bytes(buffer[:end])
                del buffer[: end + 1]
                self._check_line(line)
                if line.strip():
                    yield line
            self._check_line(buffer)
        if buffer.strip():
            yield bytes(buffer)

    def _check_line(self, line: bytes | bytearray) -> None:
        if len(line) > CREATE_LINE_CAP:
            raise ServerError(
                f"a create status line longer than {CREATE_LINE_CAP} bytes"
                f" (cut, not read further): {snippet(line[:LOGGED_CHARS])}",
                host=self.host,
                status=200,
            )

    def _expect(self, answer: Answer, *statuses: int) -> None:
        if answer.status not in statuses:
            raise status_error(answer, self.host)

    def _json_object(self, answer: Answer) -> dict[str, Any]:
        self._expect(answer, 200)
        if answer.more:
            message = f"answer from {answer.url.path} larger than {len(answer.data)} bytes"
            raise ServerError(message, host=self.host, status=answer.status)
        body = json_or_none(answer.data)
        if body is None:
            message = f"expected a JSON object from {answer.url.path}: {snippet(answer.data)}"
            raise RequestError(message, host=self.host, status=answer.status)
        return body

    def _parse_line(self, line: bytes) -> dict[str, Any]:
        item = json_or_none(line)
        if item is None:
            raise ServerError(f"bad create line: {snippet(line)}", host=self.host, status=200)
        return item


class _Progress:
    """Whether a create status reports progress: its ``completed`` grew for the same digest (a
    new digest counts from 0). Keeps one digest only, whatever the server sends."""

    def __init__(self) -> None:
        self._digest: object = None
        self._completed = 0

    def grew(self, item: Mapping[str, Any]) -> bool:
        completed = item.get("completed")
        if not isinstance(completed, int) or isinstance(completed, bool):
            return False
        digest = item.get("digest")
        digest = digest[:LOGGED_CHARS] if isinstance(digest, str) else None
        before = self._completed if digest == self._digest else 0
        self._digest, self._completed = digest, completed
        return completed > before


def _chunks(
    file: io.FileIO,
    path: str,
    size: int,
    progress: Callable[[int], None] | None,
    cancel: threading.Event | None,
) -> Generator[bytes, None, None]:
    """The upload body. Checked before every chunk, so nothing of a changed file is sent."""
    sent = reported = 0
    while sent < size:
        if cancel is not None and cancel.is_set():
            raise StoppedError(f"upload of {path} cancelled after {sent} bytes")
        try:
            chunk = file.read(min(CHUNK_BYTES, size - sent))
            now = os.fstat(file.fileno()).st_size
        except OSError as exc:
            raise FileChangedError(path, f"read failed during upload: {exc}") from exc
        if not chunk or now != size:
            raise FileChangedError(path, f"size changed during upload: {size} -> {now} bytes")
        yield chunk  # resumes once httpcore has written it to the socket
        sent += len(chunk)
        if progress is not None and (sent - reported >= PROGRESS_EVERY_BYTES or sent == size):
            progress(sent)
            reported = sent


def _blob_path(digest: str) -> str:
    # Any other spelling (dash, upper case) always ends in a 400 mismatch (ollama-api.md §3).
    if not _DIGEST.fullmatch(digest):
        raise ValueError(f"digest must be sha256:<64 lowercase hex>, got {digest!r}")
    return f"/api/blobs/{digest}"

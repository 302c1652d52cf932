"""Thin client for one Ollama host over an injected ``httpx.Client`` (ollama-api.md §2-§5).

This module is the only boundary between httpx and dropzone: every transport error and every
unexpected status is converted here into the tree of ``errors.py``, chained with ``from`` and
carrying ``host`` (the base URL) and ``status`` (``None`` when no response arrived).

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
"""

from __future__ import annotations

import io
import json
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

from dropzone.errors import (
    ConfigError,
    CreateError,
    DigestMismatchError,
    FileChangedError,
    OllamaError,
    RequestError,
    RequestTimeoutError,
    ServerError,
    StoppedError,
    TransientError,
    UnreachableError,
)

CHUNK_BYTES = 2 << 20
PROGRESS_EVERY_BYTES = 8 << 20
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Timeouts:
    """Seconds per operation; ``None`` waits forever. There is deliberately no overall timeout."""

    connect: float = 5.0
    quick: float = 30.0  # read/write of version, HEAD, show, tags, delete
    # Bounds one stalled 2 MiB socket write, never the whole upload: a 40 GB file is fine.
    upload_write: float | None = 300.0
    # After the last byte: the server renames and compares; a buffering reverse proxy may first
    # have to forward the whole body.
    upload_response: float = 900.0
    # Silence allowed between two create lines: quantizing or hashing a big layer takes minutes.
    create_line: float = 1800.0
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
    return httpx.Client(
        http1=True,
        http2=False,
        verify=tls,
        timeout=httpx.Timeout(None),
        headers={"User-Agent": "dropzone"},
    )


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
        body = self._json_object(self._send("GET", "/api/version", self._timeouts.for_quick()))
        if not isinstance(body.get("version"), str):
            raise RequestError(f"no version in {body!r:.200}", host=self.host, status=200)
        return str(body["version"])

    def blob_exists(self, digest: str) -> bool:
        response = self._send("HEAD", _blob_path(digest), self._timeouts.for_quick())
        if response.status_code == 404:
            return False
        self._expect(response, 200)
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
                response = self._send(
                    "POST",
                    url,
                    self._timeouts.for_upload(),
                    content=body,
                    headers={"Content-Length": str(size)},
                )
            finally:
                body.close()  # the server may answer 200 without reading: release the file
        self._expect(response, 200, 201)
        return response.status_code == 201

    def create(self, request: Mapping[str, Any]) -> Generator[dict[str, Any], None, None]:
        """Yield each status object of a streamed create; the request is sent on first next().

        Runs to the end of the stream (a pull inside create sends its own ``success``) and raises
        ``CreateError`` on any ``{"error": …}`` line, although such lines come with HTTP 200.
        """
        body = {**request, "stream": True}
        response = self._send(
            "POST", "/api/create", self._timeouts.for_create(), json_body=body, stream=True
        )
        try:
            with self._mapped():
                if response.status_code != 200:
                    response.read()
                    raise self._status_error(response)
                last = None
                for line in response.iter_lines():
                    if not line.strip():
                        continue
                    item = self._parse_line(line)
                    if "error" in item:
                        raise CreateError(str(item["error"]), host=self.host, status=200)
                    last = item.get("status")
                    yield item
            if last != "success":
                raise ServerError("create stream ended without success", host=self.host, status=200)
        finally:
            response.close()

    def show(self, model: str) -> dict[str, Any]:
        response = self._send(
            "POST", "/api/show", self._timeouts.for_quick(), json_body={"model": model}
        )
        return self._json_object(response)

    def tags(self) -> list[dict[str, Any]]:
        body = self._json_object(self._send("GET", "/api/tags", self._timeouts.for_quick()))
        models = body.get("models") or []
        if not isinstance(models, list) or not all(isinstance(m, dict) for m in models):
            raise RequestError("unexpected /api/tags body", host=self.host, status=200)
        return models

    def delete(self, model: str) -> None:
        response = self._send(
            "DELETE", "/api/delete", self._timeouts.for_quick(), json_body={"model": model}
        )
        self._expect(response, 200)

    # --- the boundary -----------------------------------------------------------------------

    @contextmanager
    def _mapped(self) -> Iterator[None]:
        """Convert httpx's exceptions (no response, or a broken one) into dropzone's tree."""
        try:
            yield
        except httpx.TimeoutException as exc:
            raise RequestTimeoutError(_describe(exc), host=self.host) from exc
        except (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.InvalidURL) as exc:
            raise RequestError(_describe(exc), host=self.host) from exc
        except httpx.TransportError as exc:  # refused, DNS, reset, connection cut mid-way
            raise UnreachableError(_describe(exc), host=self.host) from exc
        except httpx.HTTPError as exc:  # e.g. a body that fails to decode
            raise TransientError(_describe(exc), host=self.host) from exc

    def _send(
        self,
        method: str,
        path: str,
        timeout: httpx.Timeout,
        *,
        json_body: Any = None,
        content: Iterator[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        with self._mapped():
            request = self._http.build_request(
                method,
                self.host + path,
                json=json_body,
                content=content,
                headers={**self._headers, **(headers or {})},
                timeout=timeout,
            )
            return self._http.send(request, stream=stream)

    def _expect(self, response: httpx.Response, *statuses: int) -> None:
        if response.status_code not in statuses:
            raise self._status_error(response)

    def _status_error(self, response: httpx.Response) -> OllamaError:
        status = response.status_code
        text = _error_text(response)
        kind: type[OllamaError] = RequestError
        if status >= 500:
            kind = ServerError
        elif status in (408, 429):  # a proxy's "try again later" must not fail the artifact
            kind = TransientError
        elif status == 400 and text.startswith("digest mismatch"):
            kind = DigestMismatchError
        return kind(text, host=self.host, status=status)

    def _json_object(self, response: httpx.Response) -> dict[str, Any]:
        self._expect(response, 200)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            message = f"expected a JSON object from {response.url.path}: {_snippet(response)}"
            raise RequestError(message, host=self.host, status=response.status_code)
        return body

    def _parse_line(self, line: str) -> dict[str, Any]:
        try:
            item = json.loads(line)
        except ValueError:
            item = None
        if not isinstance(item, dict):
            raise ServerError(f"bad create line: {line[:200]}", host=self.host, status=200)
        return item


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


def _error_text(response: httpx.Response) -> str:
    """The server's ``{"error": …}`` text, or a status line plus a short plain-text snippet."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    snippet = _snippet(response)
    line = f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
    return f"{line}: {snippet}" if snippet else line


def _snippet(response: httpx.Response) -> str:
    return " ".join(response.text.split())[:200]


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

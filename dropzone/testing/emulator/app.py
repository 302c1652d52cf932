"""Routing and the blob endpoints of the Ollama emulator (ollama-api.md §1, §2, §3, §5.1-5.2).

``App`` holds everything a request may touch (store, version flags, faults, counters) and is
shared by all connection threads. Model endpoints live in ``emulator_create`` and
``emulator_models``.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dropzone.testing.emulator import create as emulator_create
from dropzone.testing.emulator import generate as emulator_generate
from dropzone.testing.emulator import models as emulator_models
from dropzone.testing.emulator.faults import Counters, Faults
from dropzone.testing.emulator.http import AbortError, BodyError, Handler
from dropzone.testing.emulator.store import InvalidDigestError, Store

BUFFER_SIZE = 1 << 20

# Ollama's routes (server/routes.go GenerateRoutes); a known path with another method is a 405.
KNOWN_ROUTES: dict[str, frozenset[str]] = {
    "/": frozenset({"GET", "HEAD"}),
    "/api/version": frozenset({"GET", "HEAD"}),
    "/api/tags": frozenset({"GET", "HEAD"}),
    "/api/blobs/:digest": frozenset({"HEAD", "POST"}),
    "/api/create": frozenset({"POST"}),
    "/api/show": frozenset({"POST"}),
    "/api/delete": frozenset({"DELETE"}),
    "/api/copy": frozenset({"POST"}),
    "/api/pull": frozenset({"POST"}),
    "/api/push": frozenset({"POST"}),
    "/api/generate": frozenset({"POST"}),
    "/api/chat": frozenset({"POST"}),
    "/api/embed": frozenset({"POST"}),
    "/api/embeddings": frozenset({"POST"}),
    "/api/ps": frozenset({"GET"}),
    "/v1/chat/completions": frozenset({"POST"}),
    "/v1/completions": frozenset({"POST"}),
    "/v1/embeddings": frozenset({"POST"}),
    "/v1/models": frozenset({"GET"}),
    "/v1/models/:model": frozenset({"GET"}),
}


def match_route(path: str) -> tuple[str, str] | None:
    """(route pattern, path parameter) for a path, like gin's tree (one segment per ``:x``)."""
    parts = path.split("/")
    for pattern in KNOWN_ROUTES:
        pattern_parts = pattern.split("/")
        if len(pattern_parts) != len(parts):
            continue
        param = ""
        for want, got in zip(pattern_parts, parts, strict=True):
            if want.startswith(":"):
                if not got:
                    break
                param = got
            elif want != got:
                break
        else:
            return pattern, param
    return None


@dataclass(frozen=True)
class Features:
    version: str
    validate_gguf: bool  # v0.30+: llama-quantize "validation copy" of file-sourced GGUFs
    split_gguf: bool  # v0.30+: split GGUF shards merged into one layer
    oci_rootfs: bool = False  # before v0.32.7: the config blob carries "rootfs" (#17619)


class App:
    def __init__(self, store: Store, features: Features, faults: Faults, counters: Counters):
        self.store = store
        self.features = features
        self.faults = faults
        self.counters = counters
        self.registry: Store | None = None  # where a create ``from`` a missing model pulls it
        self._local = threading.local()

    def buffer(self) -> memoryview:
        """This thread's reusable 1 MiB receive buffer."""
        view: memoryview | None = getattr(self._local, "view", None)
        if view is None:
            view = self._local.view = memoryview(bytearray(BUFFER_SIZE))
        return view

    def handle(self, h: Handler) -> None:
        if not h.host_allowed():
            h.respond(403)
            return
        failure = self.faults.take_failure(h.route_path, h.command)
        if failure is not None:
            h.respond_error(*failure)
            return
        path, method = h.route_path, h.command
        found = match_route(path)
        if found is None or method not in KNOWN_ROUTES[found[0]]:
            trimmed = path[:-1] if path.endswith("/") and path != "/" else None
            redirect = match_route(trimmed) if trimmed else None
            if trimmed and redirect and method in KNOWN_ROUTES[redirect[0]]:
                h.send_redirect(301 if method == "GET" else 307, trimmed)
            elif found is not None:
                h.respond_text(405, "405 method not allowed")
            else:
                h.respond_text(404, "404 page not found")
            return
        self._endpoint(found[0], method)(h, found[1])

    def _endpoint(self, pattern: str, method: str) -> Callable[[Handler, str], None]:
        endpoints: dict[tuple[str, str], Callable[[Handler, str], None]] = {
            ("/", "GET"): self._root,
            ("/", "HEAD"): self._root,
            ("/api/version", "GET"): self._version,
            ("/api/version", "HEAD"): self._version,
            ("/api/blobs/:digest", "HEAD"): self._head_blob,
            ("/api/blobs/:digest", "POST"): self._post_blob,
            ("/api/tags", "GET"): lambda h, _: emulator_models.tags(self, h),
            ("/api/tags", "HEAD"): lambda h, _: emulator_models.tags(self, h),
            ("/api/show", "POST"): lambda h, _: emulator_models.show(self, h),
            ("/api/delete", "DELETE"): lambda h, _: emulator_models.delete(self, h),
            ("/api/copy", "POST"): lambda h, _: emulator_models.copy(self, h),
            ("/api/create", "POST"): lambda h, _: emulator_create.create(self, h),
            ("/api/generate", "POST"): lambda h, _: emulator_generate.generate(self, h),
            # PsHandler: nothing is ever loaded here, and Ollama sends an empty list, not null.
            ("/api/ps", "GET"): lambda h, _: h.respond_json(200, {"models": []}),
        }
        return endpoints.get((pattern, method), self._not_emulated)

    def _not_emulated(self, h: Handler, _: str) -> None:
        h.respond_error(501, "not implemented by the dropzone Ollama emulator")

    def _root(self, h: Handler, _: str) -> None:
        h.respond_text(200, "Ollama is running")

    def _version(self, h: Handler, _: str) -> None:
        h.respond_json(200, {"version": self.features.version})

    def _blob_path(self, h: Handler, digest: str) -> Path | None:
        """Where the blob lives; None after answering 400 for a digest the server rejects."""
        try:
            return self.store.blob_path(digest)
        except InvalidDigestError as exc:
            h.respond_error(400, str(exc))
            return None

    def _head_blob(self, h: Handler, digest: str) -> None:
        self.counters.record_blob_head(digest)
        path = self._blob_path(h, digest)
        if path is None:
            return
        if path.exists():
            h.respond(200)
        else:
            h.respond_error(404, f"blob {go_quote(digest)} not found")

    def _post_blob(self, h: Handler, digest: str) -> None:
        """``CreateBlobHandler``: 200 early for a present blob, else hash-while-storing."""
        self.counters.record_blob_post(digest)
        path = self._blob_path(h, digest)
        if path is None:
            return
        if path.exists():
            h.respond(200)  # the body is never read
            return
        self.counters.record_body_read(digest)
        try:
            computed = self._receive(h)
        except (BodyError, OSError) as exc:
            h.respond_error(500, str(exc) or type(exc).__name__)
            return
        if computed == digest:
            h.respond(201)
        else:
            message = f"digest mismatch, expected {go_quote(digest)}, got {go_quote(computed)}"
            h.respond_error(400, message)

    def _receive(self, h: Handler) -> str:
        cut = self.faults.take_cut()
        view = self.buffer()
        temp, f = self.store.temp_file()
        try:
            sha = hashlib.sha256()
            received = 0
            with f:
                while True:
                    limit = len(view)
                    if cut is not None:
                        if received >= cut:
                            raise AbortError
                        limit = min(limit, cut - received)
                    n = h.body.readinto(view[:limit])
                    if not n:
                        break
                    chunk = view[:n]
                    sha.update(chunk)
                    written = f.write(chunk)
                    while written is not None and written < n:
                        written += f.write(chunk[written:]) or 0
                    received += n
            digest, _ = self.store.commit_blob(temp, sha.hexdigest())
            return digest
        finally:
            temp.unlink(missing_ok=True)


def go_quote(text: str) -> str:
    """Go's ``%q`` for the ASCII texts the emulator quotes (digests, names)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

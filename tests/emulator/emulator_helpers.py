"""Helpers for the emulator conformance tests: real HTTP and raw sockets to the emulator."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import subprocess
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from dropzone.testing import builders
from dropzone.testing.ollama import Emulator
from dropzone.testing.waiting import wait_until


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def manifest_layers(emulator: Emulator, name: str) -> list[dict[str, object]]:
    """The layers of the stored manifest of ``name``, which must exist."""
    manifest = emulator.manifest(name)
    assert manifest is not None
    return list(manifest["layers"])


@dataclass
class Reply:
    status: int
    content_type: str
    text: str

    @property
    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line]

    @property
    def statuses(self) -> list[str]:
        return [line.get("status", "") for line in self.lines]

    def json(self) -> Any:
        return json.loads(self.text)

    @property
    def error(self) -> str | None:
        last = self.lines[-1] if self.text else {}
        return last.get("error")


class Api:
    def __init__(self, emulator: Emulator, client: httpx.Client, work: Path) -> None:
        self.emulator = emulator
        self.client = client
        self.work = work

    def upload(self, data: bytes) -> str:
        digest = digest_of(data)
        response = self.client.post(f"/api/blobs/{digest}", content=data)
        assert response.status_code in (200, 201), response.text
        return digest

    def upload_file(self, path: Path) -> str:
        return self.upload(path.read_bytes())

    def gguf(self, name: str = "model.gguf", **kwargs: Any) -> str:
        """Build a small GGUF with ``builders.build_gguf`` and upload it."""
        return self.upload_file(builders.build_gguf(self.work / name, **kwargs))

    def folder(self, folder: Path) -> dict[str, str]:
        """Upload every file of a folder; the ``files`` map (relative name → digest)."""
        return {
            p.relative_to(folder).as_posix(): self.upload_file(p)
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }

    def call(self, method: str, path: str, body: Any = None, raw: bytes | None = None) -> Reply:
        content = (
            raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
        )
        response = self.client.request(method, path, content=content)
        return Reply(response.status_code, response.headers.get("content-type", ""), response.text)

    def create(self, **body: Any) -> Reply:
        return self.call("POST", "/api/create", body)

    def show(self, model: str) -> Reply:
        return self.call("POST", "/api/show", {"model": model})


class RawConnection:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed before {marker!r}; got {self.buffer!r}")
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(marker)
        return head + marker

    def read_head(self) -> tuple[int, dict[str, str]]:
        head = self.read_until(b"\r\n\r\n").decode()
        status_line, *header_lines = head.strip().split("\r\n")
        headers = {}
        for line in header_lines:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        return int(status_line.split()[1]), headers

    def read_exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed early")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def read_to_eof(self) -> bytes:
        data = self.buffer
        while chunk := self.sock.recv(65536):
            data += chunk
        self.buffer = b""
        return data

    def close(self) -> None:
        self.sock.close()


@contextmanager
def emulator_process(argv: Sequence[str], cwd: Path | None = None) -> Iterator[str]:
    """Run an emulator child (``argv`` ends with its options) and yield the URL it prints;
    on leaving, stop it and fail if it printed a traceback."""
    child = subprocess.Popen(list(argv), stderr=subprocess.PIPE, text=True, cwd=cwd)
    lines: list[str] = []

    def read() -> None:
        assert child.stderr is not None
        lines.extend(iter(child.stderr.readline, ""))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        found = wait_until(
            lambda: (
                next((m for line in lines if (m := re.search(r"http://\S+", line))), None)
                or child.poll() is not None
            ),
            timeout=30,
            what="the emulator's listening line",
        )
        assert isinstance(found, re.Match), "".join(lines)
        yield found.group(0)
    finally:
        child.terminate()
        child.wait(timeout=30)
        reader.join(timeout=30)
        assert child.stderr is not None
        child.stderr.close()
        assert not any("Traceback" in line for line in lines), "".join(lines)

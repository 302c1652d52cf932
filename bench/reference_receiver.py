"""The reference receiver for bench/emulator_receive.py: the least a blob endpoint must do.

A stdlib ``http.server`` handler that reads a ``Content-Length`` body with ``readinto`` into
one reused 1 MiB buffer, hashes it, writes it to a temp file in the target directory, renames
the file to its digest and answers 201. No routing, no digest check, no faults.

    python bench/reference_receiver.py --port 18435 --dir /tmp/ref-blobs
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BUFFER = 1 << 20


_local = threading.local()


def _buffer() -> memoryview:
    """This connection thread's reusable 1 MiB buffer."""
    if not hasattr(_local, "view"):
        _local.view = memoryview(bytearray(BUFFER))
    view: memoryview = _local.view
    return view


class Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    target: Path

    def do_POST(self) -> None:
        remaining = int(self.headers.get("Content-Length", "0"))
        view = _buffer()
        sha = hashlib.sha256()
        fd, temp = tempfile.mkstemp(dir=self.target, prefix="ref-")
        with os.fdopen(fd, "wb", buffering=0) as f:
            while remaining:
                n = self.rfile.readinto(view[: min(BUFFER, remaining)])  # type: ignore[attr-defined]
                if not n:
                    break
                sha.update(view[:n])
                f.write(view[:n])
                remaining -= n
        os.replace(temp, self.target / ("sha256-" + sha.hexdigest()))
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    Receiver.target = args.dir
    ThreadingHTTPServer(("127.0.0.1", args.port), Receiver).serve_forever()


if __name__ == "__main__":
    main()

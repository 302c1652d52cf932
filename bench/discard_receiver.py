"""The transport ceiling for bench/upload.py: a receiver that reads a body and throws it away.

Stdlib ``http.server`` (HTTP/1.1, keep-alive, one thread per connection). A ``POST`` or ``PUT``
with ``Content-Length`` is read with ``readinto`` into one reused buffer per thread and
discarded; the answer is 201 with an empty body. ``HEAD`` answers 404 (no blob is ever kept).
``Expect: 100-continue`` is answered at once by ``http.server``. Chunked bodies get 411: the
senders measured here all send a length. Doing no hashing and no writing, it cannot hide a
slow sender the way a receiver at 100 % CPU does.

    .venv/bin/python bench/discard_receiver.py --port 18436
"""

from __future__ import annotations

import argparse
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import cast

BUFFER = 1 << 20
_local = threading.local()


def _buffer() -> memoryview:
    """This connection thread's buffer, allocated once."""
    if not hasattr(_local, "view"):
        _local.view = memoryview(bytearray(BUFFER))
    return cast(memoryview, _local.view)


class Discard(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        length = self.headers.get("Content-Length")
        if length is None:
            self._answer(411)
            self.close_connection = True
            return
        remaining = int(length)
        view = _buffer()
        readinto = self.rfile.readinto  # a BufferedReader: large reads go straight to view
        while remaining:
            n = readinto(view[: min(BUFFER, remaining)])
            if not n:
                self.close_connection = True
                return
            remaining -= n
        self._answer(201)

    do_PUT = do_POST  # noqa: N815 - curl -T without -X sends PUT

    def do_HEAD(self) -> None:
        self._answer(404)

    def _answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer((args.host, args.port), Discard)
    server.daemon_threads = True
    print(f"discarding receiver on http://{args.host}:{server.server_address[1]}", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

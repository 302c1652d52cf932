"""Getting the metrics out: an HTTP endpoint on ``metrics_listen`` and a node_exporter
textfile (``metrics_textfile``), both opt-in (issue 16).

``metrics_listen`` is ``host:port`` (a bare port means loopback) or an absolute Unix socket
path. The endpoint listens on every interface only when the operator wrote so
(``0.0.0.0:9464`` or ``[::]:9464``): ``:9464``, which Go programs read as "everywhere", is
refused, so no spelling opens the port to the network by accident. Port 0 picks a free port
(the ``metrics.listening`` event says which).

The textfile is written to a temporary file in the same folder and renamed over the target,
so node_exporter never reads half a file; the temporary name starts with a dot and does not
end in ``.prom``, which the textfile collector skips.
"""

from __future__ import annotations

import contextlib
import os
import socket
import socketserver
import stat
import tempfile
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import MetricsHandler

from dropzone.config.listen import ListenAddress

log = structlog.get_logger("dropzone.metrics")

TEXTFILE_INTERVAL_SECONDS = 15.0


class _TCPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: ListenAddress, handler: Any) -> None:
        self.address_family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
        super().__init__((address.host, address.port), handler)


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self) -> tuple[Any, Any]:
        request, _ = super().get_request()
        # http.server wants a (host, port) peer; a Unix peer has none.
        return request, ("unix", 0)


class MetricsServer:
    """The scrape endpoint for one registry, served on its own thread until ``close``."""

    def __init__(self, address: ListenAddress, registry: CollectorRegistry) -> None:
        handler = MetricsHandler.factory(registry)
        self._unix = address.unix
        self._server: socketserver.BaseServer
        if address.unix is not None:
            _remove_stale_socket(address.unix)
            self._server = _UnixServer(str(address.unix), handler)
            self.address = address
        else:
            tcp = _TCPServer(address, handler)
            self._server = tcp
            self.address = ListenAddress(host=address.host, port=tcp.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-http", daemon=True
        )
        self._thread.start()
        log.info("metrics.listening", address=str(self.address))

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2)
        if self._unix is not None:
            with contextlib.suppress(OSError):
                self._unix.unlink()


def _remove_stale_socket(path: Path) -> None:
    """A socket left by a daemon that was killed would make bind fail; only a socket is
    removed, never another kind of file that happens to have the name."""
    try:
        if stat.S_ISSOCK(path.lstat().st_mode):
            path.unlink()
    except FileNotFoundError:
        pass


def write_textfile(path: Path, registry: CollectorRegistry) -> None:
    """The registry's exposition written to ``path`` atomically: a temporary file in the
    same folder (same file system), flushed to disk, then renamed over ``path``."""
    data = generate_latest(registry)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # node_exporter runs as another user: the file must be readable by others (0644);
        # mkstemp makes it 0600.
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class TextfileWriter:
    """Writes the textfile now, then every ``interval`` seconds, and once more at ``close``."""

    def __init__(
        self,
        path: Path,
        registry: CollectorRegistry,
        interval: float = TEXTFILE_INTERVAL_SECONDS,
    ) -> None:
        self.path = path
        self._registry = registry
        self._interval = interval
        self._stop = threading.Event()
        self._failing = False
        self.write()
        self._thread = threading.Thread(target=self._run, name="metrics-textfile", daemon=True)
        self._thread.start()

    def write(self) -> bool:
        try:
            write_textfile(self.path, self._registry)
        except OSError as exc:
            if not self._failing:  # once per run of failures, not every 15 s
                log.warning(
                    "metrics.textfile_failed",
                    path=str(self.path),
                    error=exc.strerror or str(exc),
                    fix="let the service write that folder (ReadWritePaths= in the unit)",
                )
            self._failing = True
            return False
        self._failing = False
        return True

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.write()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.write()

"""An Ollama API emulator: a real HTTP server on a loopback port behaving like Ollama v0.33
for model creation (ollama-api.md §10 and §12), with fault injection for tests.

Use it from tests::

    with Emulator(tmp_path / "ollama") as emulator:      # started; stopped on exit
        httpx.get(emulator.url + "/api/version")
        emulator.faults.fail_next(1, path_prefix="/api/create")
        emulator.restart(prune_age_seconds=0)            # prune unreferenced blobs like a start
        emulator.counters.blob_posts("sha256:…"), emulator.manifest("mario")

or standalone: ``python -m dropzone.testing.ollama --port 11434 --store DIR``.

Version behaviour. ``version`` (default ``0.33.0``) is what ``/api/version`` reports and decides
the create features: from 0.30 on (and for a ``0.0.0`` source build) split GGUF shards are
merged and file-sourced GGUFs get the "validating GGUF model" copy, which gives the model layer
a new digest and rejects GGUFs whose tensor data is cut short; below 0.30 the uploaded blob is
referenced as-is. ``validate_gguf`` overrides the validation part (see ``emulator_create``).
Clients should not depend on either, unless pinned to a server version.

Store. Blobs and manifests are laid out as Ollama's (``store.py``); ``start`` prunes blobs
older than ``prune_age_seconds`` that no manifest references, as the server does at start.

GGUF. Blobs are read with dropzone's own header reader (``dropzone.formats``), through
``emulator/gguf_view.py``; the emulator only writes GGUF of its own (``gguf_writer.py``). A
plain install runs it: no numpy, gguf-py or safetensors.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from dropzone.recipes.names import InvalidNameError, parse_name
from dropzone.testing.emulator.app import App, Features
from dropzone.testing.emulator.faults import Counters, Faults, RequestRecord
from dropzone.testing.emulator.http import EmulatorServer
from dropzone.testing.emulator.store import Store

__all__ = ["Counters", "Emulator", "Faults", "RequestRecord", "main"]

DEFAULT_VERSION = "0.33.0"
PRUNE_AGE_SECONDS = 3600.0


def _version_tuple(version: str) -> tuple[int, int, int]:
    numbers = [int(n) for n in re.findall(r"\d+", version)[:3]]
    major, minor, patch = [*numbers, 0, 0, 0][:3]
    return major, minor, patch


def modern(version: str) -> bool:
    """True for v0.30+ features (a source build reports 0.0.0 and has them all)."""
    v = _version_tuple(version)
    return v >= (0, 30, 0) or v == (0, 0, 0)


class Emulator:
    """The emulator server. Thread-safe; ``start``/``stop`` may be called repeatedly."""

    def __init__(
        self,
        store: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        version: str = DEFAULT_VERSION,
        validate_gguf: bool | None = None,
        registry: Path | None = None,
    ) -> None:
        self.store = Store(Path(store))
        self.host = host
        self.port = port  # the bound port once started; kept across stop/start
        self.faults = Faults()
        self.counters = Counters()
        features = Features(
            version=version,
            validate_gguf=modern(version) if validate_gguf is None else validate_gguf,
            split_gguf=modern(version),
            oci_rootfs=_version_tuple(version) < (0, 32, 7)
            and _version_tuple(version) != (0, 0, 0),
        )
        self.app = App(self.store, features, self.faults, self.counters)
        # A create ``from`` a model this store lacks pulls it from here (another store), as
        # Ollama pulls from its registry; without one every such pull fails as a registry 404.
        self.app.registry = Store(Path(registry)) if registry is not None else None
        self._server: EmulatorServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def root(self) -> Path:
        """The store directory (``blobs/`` and ``manifests/`` live here)."""
        return self.store.root

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def version(self) -> str:
        return self.app.features.version

    @property
    def validate_gguf(self) -> bool:
        return self.app.features.validate_gguf

    def start(self, *, prune_age_seconds: float | None = PRUNE_AGE_SECONDS) -> Emulator:
        """Prune (unless None), bind (the same port again after a stop) and serve."""
        with self._lock:
            if self._server is not None:
                return self
            if prune_age_seconds is not None:
                with self.store.lock:
                    self.store.prune(prune_age_seconds)
            server = EmulatorServer((self.host, self.port), self.app)
            self.port = server.server_address[1]
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.02},
                name=f"ollama-emulator:{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listening socket (clients get "connection refused") and every connection;
        requests in progress are cut off. Waits for the handler threads."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
            if server is None:
                return
            server.stopping.set()
            self.faults.wake()
            server.shutdown()
            server.drop_connections()
            server.server_close()  # also joins the handler threads
            if thread is not None:
                thread.join()

    def restart(self, prune_age_seconds: float | None = PRUNE_AGE_SECONDS) -> None:
        """Stop, then start on the same port, pruning as a real server start does."""
        self.stop()
        self.start(prune_age_seconds=prune_age_seconds)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- store inspection -------------------------------------------------------------------

    def manifest(self, name: str) -> dict[str, Any] | None:
        """The stored manifest of a model (name matched ignoring case), or None."""
        try:
            parsed = parse_name(name)
        except InvalidNameError:
            return None
        stored = self.store.load(self.store.existing_name(parsed))
        return json.loads(stored.raw) if stored else None

    def models(self) -> list[str]:
        """Short names (``model:tag``) of every stored model."""
        return [name.display_shortest() for name in self.store.names()]

    def has_blob(self, digest: str) -> bool:
        return self.store.has_blob(digest)

    def blob_path(self, digest: str) -> Path:
        return self.store.blob_path(digest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dropzone.testing.ollama",
        description="Run the Ollama API emulator (model creation endpoints only).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument("--store", type=Path, required=True, help="model store directory")
    parser.add_argument("--version", default=DEFAULT_VERSION, help="version to emulate")
    parser.add_argument(
        "--no-validate-gguf",
        action="store_true",
        help="reference uploaded GGUFs as-is (pre-0.30 behaviour) instead of re-writing them",
    )
    parser.add_argument(
        "--registry",
        type=Path,
        help="a store of models to pull when a create names a model this store lacks",
    )
    args = parser.parse_args(argv)
    emulator = Emulator(
        args.store,
        host=args.host,
        port=args.port,
        version=args.version,
        validate_gguf=False if args.no_validate_gguf else None,
        registry=args.registry,
    )
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    emulator.start()
    print(f"Ollama emulator {args.version} listening on {emulator.url}", file=sys.stderr)
    print(f"store: {args.store.resolve()}", file=sys.stderr)
    done.wait()
    emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

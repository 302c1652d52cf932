"""Metrics on, as in a daemon with ``metrics_listen`` set, for the hash and upload benchmarks
(issue 16: "the hash and upload figures stay within noise with metrics on").

``metrics_on()`` sets up in this process what ``dropzone.fleet.wiring`` sets up in the daemon: a
``Metrics`` registry over a state store (``--metrics-rows`` (artifact, host) rows, as a daemon
that has imported for a while), its scrape endpoint on a loopback port, and the event tap
feeding it; and, as Prometheus would be, a scraper in another process that fetches
``/metrics`` every ``interval`` seconds for as long as the block runs. ``event(...)`` hands an
event to the tap, as structlog does for each event the daemon logs (a few per file).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dropzone.fleet import eventtap
from dropzone.fleet.export import ListenAddress, MetricsServer
from dropzone.fleet.metrics import Metrics
from dropzone.store.state import HostState, StateStore

HOST = "http://127.0.0.1:11434"
ROWS = 1_000
INTERVAL = 1.0  # Prometheus scrapes every 15 s by default: this is 15 times as often

# The scraper: GET /metrics every interval until its stdin closes; says "ready" after the
# first, and at the end how many it made.
SCRAPER = """
import sys, threading, time, urllib.request
url, interval = sys.argv[1], float(sys.argv[2])
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
count = 0
while True:
    with urllib.request.urlopen(url, timeout=10) as r:
        r.read()
    count += 1
    if count == 1:
        print("ready", flush=True)
    if done.wait(interval):
        break
print(count, flush=True)
"""

Emit = Callable[[Mapping[str, Any]], None]


def fill(store: StateStore, rows: int) -> None:
    with store.batch():
        for i in range(rows):
            state = (HostState.DONE, HostState.FAILED, HostState.PENDING)[i % 3]
            store.set_host_state(f"m{i}.gguf", HOST, state, error="x")


@contextmanager
def metrics_on(
    interval: float = INTERVAL, rows: int = ROWS, scrapes: list[int] | None = None
) -> Iterator[Emit]:
    """Metrics served and scraped while the block runs; yields ``event(fields)``. The number
    of scrapes made is appended to ``scrapes``."""
    with (
        tempfile.TemporaryDirectory(prefix="bench-metrics-") as tmp,
        StateStore.open(Path(tmp)) as store,
    ):
        fill(store, rows)
        metrics = Metrics(hosts=[HOST], drop_dir=Path(tmp), state=store)
        unsubscribe = eventtap.subscribe(metrics.observe)
        server = MetricsServer(ListenAddress(host="127.0.0.1"), metrics.registry)
        url = f"http://127.0.0.1:{server.address.port}/metrics"
        scraper = subprocess.Popen(
            [sys.executable, "-c", SCRAPER, url, str(interval)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            # The steady state, not the scraper's start-up: its first scrape has been answered.
            assert scraper.stdout is not None
            if scraper.stdout.readline().strip() != "ready":
                raise SystemExit("the metrics scraper did not start")
            yield lambda fields: eventtap.tap(None, "info", dict(fields))
        finally:
            out, _ = scraper.communicate("", timeout=30)
            if scrapes is not None:
                scrapes.append(int(out.split()[-1]) if out.split() else 0)
            server.close()
            unsubscribe()


def hash_events(emit: Emit, path: Path, digest: str, size: int, seconds: float) -> None:
    """The events the daemon logs around one hash (``Digester``), as the tap sees them (the
    name only: ``Metrics.owns`` would skip a path outside its drop folder)."""
    now = time.time()
    emit({"event": "hash.started", "path": path.name, "bytes": size, "timestamp": now})
    emit({"event": "hash.done", "path": path.name, "digest": digest, "bytes": size,
          "seconds": seconds, "timestamp": now})  # fmt: skip


def upload_events(emit: Emit, path: Path, digest: str, size: int, seconds: float) -> None:
    """The events of one upload (``Importer``): the HEAD's answer, then ``blob.uploaded``."""
    now = time.time()
    emit({"event": "blob.upload.started", "path": path.name, "host": HOST, "digest": digest,
          "bytes": size, "timestamp": now})  # fmt: skip
    emit({"event": "blob.uploaded", "path": path.name, "host": HOST, "digest": digest,
          "bytes": size, "seconds": seconds, "timestamp": now})  # fmt: skip

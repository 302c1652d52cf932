"""Prometheus metrics for one daemon, in a registry of its own (issue 16).

Two sources, each for what it knows best:

- **Events** (``eventtap``): what happened — bytes hashed and uploaded, how long hash, upload
  and create took, imports made and refused, retries, hosts answering or not, their version.
  ``Metrics.observe`` is the one table from event names to metric updates.
- **The state store**, read at each scrape: how things are — (artifact, host) pairs by state,
  the oldest one still waiting, the last successful import. These survive a restart, because
  the store does.

Labels are bounded: ``host`` (the configured URLs), ``state`` (the state machine's states),
``reason`` (``REASONS``). No path, model name or error text is ever a label: those grow without
bound and belong in the events. The registry is private to the daemon (never the client's
global one), so a process may hold several daemons (tests do) and a scrape shows only dropzone.
"""

from __future__ import annotations

import platform
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from dropzone import __version__
from dropzone.store.state import HostState, StateStore, settled_state

# Hashing and uploading a model takes seconds to an hour; a create, from a second (a GGUF
# copied as is) to an hour (quantizing a 70B safetensors model).
DURATION_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)

# Why an import did not complete on a host; a small fixed set, so a label.
REASONS = (
    "rejected",  # the server answered the request with an error (model.failed with a status)
    "unsupported",  # refused before sending: the host's version lacks a feature the recipe needs
    "server_side",  # 401/403/413/507: the server or its proxy must change (artifact.refused)
    "load_failed",  # made, but the server could not load it (verify = "load")
)
# The states of dropzone_artifacts: the state machine's (an old "failed" row is split as status
# shows it, ``settled_state``).
STATES = ("pending", "ready", "hashing", "uploading", "creating", "waiting", "refused", "done")
_NOT_WAITING = {"done", "refused"}


class Metrics:
    """The metrics of one daemon: ``registry`` is what the endpoint and the textfile export."""

    def __init__(
        self,
        *,
        hosts: Sequence[str],
        drop_dir: Path,
        state: StateStore | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._hosts = frozenset(hosts)
        self._drop_dir = str(drop_dir).rstrip("/") + "/"
        r = self.registry = CollectorRegistry()
        Info("dropzone_build", "dropzone's version and Python's", registry=r).info(
            {"version": __version__, "python": platform.python_version()}
        )
        self.hashed_bytes = Counter(
            "dropzone_hashed_bytes", "Bytes of model files hashed", registry=r
        )
        self.hash_seconds = Histogram(
            "dropzone_hash_duration_seconds",
            "Time to hash one file",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.uploaded_bytes = Counter(
            "dropzone_uploaded_bytes", "Bytes of blobs uploaded", ["host"], registry=r
        )
        self.upload_seconds = Histogram(
            "dropzone_upload_duration_seconds",
            "Time to upload one blob",
            ["host"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        # Same host (issue 17): blobs placed in the server's store by reflink, link or copy.
        # ``method`` is one of those three: a fixed label set like the rest.
        self.placed_bytes = Counter(
            "dropzone_placed_bytes",
            "Bytes of blobs placed in a same-host server's store",
            ["host", "method"],
            registry=r,
        )
        self.place_seconds = Histogram(
            "dropzone_place_duration_seconds",
            "Time to place one blob (its own work: a copy made while the file arrived included)",
            ["host"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.create_seconds = Histogram(
            "dropzone_create_duration_seconds",
            "Time from the create request to the model confirmed",
            ["host"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.completed = Counter(
            "dropzone_imports_completed", "Models made on a host", ["host"], registry=r
        )
        self.failed = Counter(
            "dropzone_imports_failed",
            "Imports refused or failed on a host, by reason",
            ["host", "reason"],
            registry=r,
        )
        self.retries = Counter(
            "dropzone_retries",
            "Retries scheduled after a transient failure (host is empty for local causes)",
            ["host"],
            registry=r,
        )
        self.host_up = Gauge(
            "dropzone_host_up", "1 if the host answered its last request, else 0", ["host"],
            registry=r,
        )  # fmt: skip
        self.host_info = Info(
            "dropzone_host", "The Ollama version each host reported", ["host"], registry=r
        )
        for host in hosts:  # series exist from the start, so rate() and alerts see the first
            self.uploaded_bytes.labels(host)
            self.upload_seconds.labels(host)
            self.create_seconds.labels(host)
            self.completed.labels(host)
            self.retries.labels(host)
            for reason in REASONS:
                self.failed.labels(host, reason)
        self.retries.labels("")
        if state is not None:
            r.register(StateCollector(state, hosts, clock))

    def owns(self, event: Mapping[str, Any]) -> bool:
        """Is ``event`` this daemon's? Only tests run several daemons in one process; each has
        its own hosts and drop folder. An event naming neither is everyone's."""
        host = event.get("host")
        if isinstance(host, str) and host:
            return host in self._hosts
        path = event.get("path")
        if isinstance(path, str) and path.startswith("/"):
            return path.startswith(self._drop_dir)
        return True

    def observe(self, event: Mapping[str, Any]) -> None:
        """The eventtap subscriber: one event → its metric updates (the one table)."""
        handler = _TABLE.get(str(event.get("event")))
        if handler is not None and self.owns(event):
            handler(self, event, str(event.get("host") or ""))

    # -- the table's entries ------------------------------------------------------------

    def _hash_done(self, e: Mapping[str, Any], _: str) -> None:
        self.hashed_bytes.inc(_number(e.get("bytes")))
        self.hash_seconds.observe(_number(e.get("seconds")))

    def _blob_uploaded(self, e: Mapping[str, Any], host: str) -> None:
        self.uploaded_bytes.labels(host).inc(_number(e.get("bytes")))
        self.upload_seconds.labels(host).observe(_number(e.get("seconds")))
        self.host_up.labels(host).set(1)

    def _blob_placed(self, e: Mapping[str, Any], host: str) -> None:
        self.placed_bytes.labels(host, str(e.get("method"))).inc(_number(e.get("bytes")))
        self.place_seconds.labels(host).observe(_number(e.get("seconds")))

    def _model_created(self, e: Mapping[str, Any], host: str) -> None:
        if "seconds" in e:  # not when confirmed after a restart: no duration was measured
            self.create_seconds.labels(host).observe(_number(e.get("seconds")))
        self.host_up.labels(host).set(1)

    def _artifact_done(self, e: Mapping[str, Any], host: str) -> None:
        if e.get("result") == "done":
            self.completed.labels(host).inc()

    def _model_failed(self, e: Mapping[str, Any], host: str) -> None:
        self.failed.labels(host, "unsupported" if "version" in e else "rejected").inc()

    def _refused(self, _: Mapping[str, Any], host: str) -> None:
        self.failed.labels(host, "server_side").inc()

    def _load_failed(self, _: Mapping[str, Any], host: str) -> None:
        self.failed.labels(host, "load_failed").inc()

    def _retry(self, _: Mapping[str, Any], host: str) -> None:
        self.retries.labels(host).inc()

    def _unreachable(self, _: Mapping[str, Any], host: str) -> None:
        if host:
            self.host_up.labels(host).set(0)

    def _answered(self, e: Mapping[str, Any], host: str) -> None:
        if host:
            self.host_up.labels(host).set(1)
            if isinstance(e.get("version"), str):
                self.host_info.labels(host).info({"version": e["version"]})


_TABLE: dict[str, Callable[[Metrics, Mapping[str, Any], str], None]] = {
    "hash.done": Metrics._hash_done,
    "blob.uploaded": Metrics._blob_uploaded,
    "blob.placed": Metrics._blob_placed,
    "model.created": Metrics._model_created,
    "artifact.done": Metrics._artifact_done,
    "model.failed": Metrics._model_failed,
    "artifact.refused": Metrics._refused,
    "model.load_failed": Metrics._load_failed,
    "retry.scheduled": Metrics._retry,
    "ollama.unreachable": Metrics._unreachable,
    "ollama.version": Metrics._answered,
    "host.up": Metrics._answered,
}


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) and value >= 0 else 0.0


def shown_state(state: HostState, next_retry_at: float | None) -> str:
    """A state-store row's state as the metrics (and ``status``) name it."""
    return str(settled_state(state, next_retry_at))


class StateCollector(Collector):
    """Gauges read from the state store at each scrape (they survive restarts)."""

    def __init__(self, state: StateStore, hosts: Sequence[str], clock: Callable[[], float]) -> None:
        self._state = state
        self._hosts = list(hosts)
        self._clock = clock
        self._lock = threading.Lock()
        # (path, host) → since when it has been waiting, as first seen by a scrape: a row's
        # updated_at moves at every retry, so alone it would never show a backlog growing.
        self._since: dict[tuple[str, str], float] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = self._clock()
        groups, backlog = self._state.summary()
        counts = {(h, s): 0 for h in self._hosts for s in STATES}
        last: dict[str, float] = {}
        for host, raw, has_retry, count, latest in groups:
            state = shown_state(HostState(raw), 0.0 if has_retry else None)
            counts[host, state] = counts.get((host, state), 0) + count
            if state == "done":
                last[host] = max(last.get(host, 0.0), latest)
        waiting = {(path, host): at for path, host, at in backlog}
        with self._lock:
            self._since = {k: self._since.get(k, at) for k, at in waiting.items()}
            oldest = min(self._since.values(), default=None)
        artifacts = GaugeMetricFamily(
            "dropzone_artifacts",
            "(artifact, host) pairs in the state store, by state",
            labels=["host", "state"],
        )
        for (host, state), count in sorted(counts.items()):
            artifacts.add_metric([host, state], count)
        yield artifacts
        yield GaugeMetricFamily(
            "dropzone_oldest_waiting_seconds",
            "Age of the oldest (artifact, host) not yet done nor refused; 0 when none",
            value=max(0.0, now - oldest) if oldest is not None else 0.0,
        )
        stamp = GaugeMetricFamily(
            "dropzone_last_import_timestamp_seconds",
            "When a model was last made on the host (Unix time)",
            labels=["host"],
        )
        for host, at in sorted(last.items()):
            stamp.add_metric([host], at)
        yield stamp

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())  # collected only at scrape time, never at registration

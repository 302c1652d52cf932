"""The dispatcher: runs the reconciler's work on the worker pools, owns what is in flight, and
turns each job's outcome into state transitions and timer wake-ups.

A job never re-queues its artifact as a file event: when it ends, the dispatcher sets a timer
(at once, or when a backoff or retry time ends), and the service's next look judges the
artifact from the store again. Waiting is a timer here or a probe of a host, never a job.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import CancelledError, Future
from dataclasses import replace
from pathlib import Path
from typing import Protocol

import structlog

from dropzone.config.settings import Settings
from dropzone.errors import DropzoneError, FileChangedError, StoppedError
from dropzone.fs.identity import FileKey
from dropzone.imports.digests import Digester
from dropzone.imports.follow import Followers
from dropzone.imports.hashing import HashResult
from dropzone.imports.importer import Host, Importer
from dropzone.imports.policies import apply_on_removed
from dropzone.imports.progress import Progress
from dropzone.ollama.probes import Probes
from dropzone.recipes.types import Recipe
from dropzone.scan.scanner import ScannedArtifact
from dropzone.service._timers import Timers
from dropzone.service._workers import Workers
from dropzone.service.dependencies import Dependencies
from dropzone.service.outcomes import after_job
from dropzone.service.reporter import PassSummary
from dropzone.store.health import PROBE_KEY, StoreHealth
from dropzone.store.state import ArtifactRow, HostState, StateStore, artifact_fingerprint

log = structlog.get_logger("dropzone.daemon")

Sharers = Mapping[Path, list[ScannedArtifact]]


class Service(Protocol):
    """What the dispatcher asks of the service that owns the folder's view."""

    def unit_of(self, rel: str) -> str: ...
    def trusted(self) -> bool: ...
    def after_job(self, rel: str) -> None: ...
    def rescan(self) -> None: ...


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        *,
        state: StateStore,
        hosts: list[Host],
        followers: Followers,
        progress: Progress | None,
        summary: PassSummary,
        health: StoreHealth,
        stop: threading.Event,
        deps: Dependencies,
        drop_dir: Path,
        once: bool,
    ) -> None:
        self.settings = settings
        self.state = state
        self.hosts = hosts
        self.importer = Importer(
            state,
            drop_dir=drop_dir,
            upload_slots=threading.Semaphore(settings.max_parallel_uploads),
            stop=stop,
            progress=progress,
            verify=settings.verify,
        )
        self.digester = Digester(state, followers, stop, progress)
        self.summary = summary
        self.health = health
        self.stop_event = stop
        self.deps = deps
        self.drop_dir = drop_dir
        self.once = once
        self.service: Service | None = None  # set by the service before any job runs
        self.jobs = Workers(4, "artifact")
        self.host_jobs = Workers(max(2, 2 * len(hosts)), "host")
        self.probes = Probes()  # hosts that did not answer, looked at again every few seconds
        self._lock = threading.Lock()
        self._in_flight: dict[str, Future[None]] = {}
        self.timers = Timers()
        self._early: dict[str, tuple[object, ...]] = {}  # rel → weights' stats uploaded early
        # rel → the identities of its files when a server refused it: a touch changes them.
        self.refused: dict[str, frozenset[FileKey]] = {}

    @property
    def service_(self) -> Service:
        """The service, once set (a job runs only after that)."""
        assert self.service is not None
        return self.service

    # -- what is in flight --------------------------------------------------------------

    def in_flight(self, rel: str) -> bool:
        with self._lock:
            return rel in self._in_flight

    def busy(self) -> set[str]:
        with self._lock:
            return set(self._in_flight)

    def backing_off(self, rel: str) -> bool:
        return time.monotonic() < self.timers.not_before(rel)

    def refused_identities(self, rel: str) -> frozenset[FileKey] | None:
        return self.refused.get(rel)

    def retried(self, rel: str) -> None:
        self.refused.pop(rel, None)

    def sent_early(self, rel: str, signature: tuple[object, ...]) -> bool:
        with self._lock:
            return self._early.get(rel) == signature

    def keep_early(self, present: set[str]) -> None:
        with self._lock:
            self._early = {rel: sig for rel, sig in self._early.items() if rel in present}

    def _submit(self, rel: str, fn: Callable[..., None], *args: object) -> bool:
        with self._lock:
            if rel in self._in_flight:
                return False
            self._in_flight[rel] = self.jobs.submit(fn, *args)
        return True

    def _done(self, rel: str) -> None:
        with self._lock:
            self._in_flight.pop(rel, None)

    def wait_for_jobs(self) -> bool:
        """Wait for the work started so far; True if any job ran."""
        ran = False
        while True:
            with self._lock:
                futures = list(self._in_flight.values())
            if not futures:
                return ran
            ran = True
            for f in futures:
                f.exception()

    # -- hosts --------------------------------------------------------------------------

    def probe_due(self, now: float) -> None:
        for host in self.probes.due(now):
            self.host_jobs.submit(self._probe, host)

    def _probe(self, host: Host) -> None:
        """Is a host that did not answer back? One cheap ``GET /api/version``; when it answers,
        the work waiting for it goes now instead of at its scheduled retry."""
        try:
            host.version = host.client.version()
        except DropzoneError as exc:
            self.probes.failed(host)
            log.debug("host.probe", host=host.url, result="down", error=str(exc))
            return
        self.probes.up(host)
        host.down = False
        log.info("host.up", host=host.url, version=host.version)
        self.state.release_waiting(host.url)
        # Everything held for this host (waiting rows, and artifacts that arrived during the
        # outage and never tried) is judged again: a rescan forgets the settled signatures.
        self.service_.rescan()

    def base_done(self, base: str) -> bool:
        """The artifact making a recipe's base is done on every host (and not at work)."""
        if self.in_flight(base):
            return False
        rows = [self.state.host_state(base, host.url) for host in self.hosts]
        return all(row is not None and row.state is HostState.DONE for row in rows)

    def on_base(self, rel: str, recipe: Recipe, host: Host) -> Recipe:
        """``recipe`` for ``host`` with what its base is there, when dropzone makes the base."""
        base = self.deps.provider(rel)
        row = self.state.host_state(base, host.url) if base is not None else None
        token = row.request_fingerprint if row is not None and row.state is HostState.DONE else None
        return replace(recipe, base_token=token) if token else recipe

    # -- jobs ---------------------------------------------------------------------------

    def start(
        self,
        sa: ScannedArtifact,
        recipe: Recipe,
        expected: Mapping[Path, int | None],
        sharers: Sharers,
    ) -> None:
        self._submit(sa.rel_path, self._job, sa, recipe, expected, sharers)

    def start_early(
        self,
        sa: ScannedArtifact,
        expected: Mapping[Path, int | None],
        signature: tuple[object, ...],
    ) -> None:
        """Upload the weights of a complete artifact whose writer has closed them while the
        quiet period still runs, so the upload overlaps the settle wait instead of following it.

        Only the upload starts early, never the create: that still waits for readiness (the
        structural check passed already; the quiet period must pass too). The file is
        structurally complete and closed, and its digest is the follower's, verified (identity,
        growth, leading region). A blob is content-addressed, so one sent for a file that then
        changes is never referenced (the server prunes it at its next start). The import that
        follows is the one of record. ``signature``: the weights' (rel, size, mtime_ns).
        """
        rel = sa.rel_path
        with self._lock:
            if rel in self._in_flight or self._early.get(rel) == signature:
                return
            self._early[rel] = signature  # once per version of the files, whatever the outcome
            self._in_flight[rel] = self.jobs.submit(self._early_job, sa, expected)

    def start_removed(self, row: ArtifactRow) -> None:
        # Deleting models talks to every host: never on the main loop.
        self._submit(row.path, self._removed_job, row)

    def _job(
        self,
        sa: ScannedArtifact,
        recipe: Recipe,
        expected: Mapping[Path, int | None],
        sharers: Sharers,
    ) -> None:
        rel = sa.rel_path
        with self._lock:
            self._early.pop(rel, None)
        try:
            paths = recipe.blob_paths()
            results = self.digester.digest_all(paths, expected)
            digests = {p: results[p].digest for p in paths}
            identities = {p: results[p].key for p in paths}
            self._record(sa, recipe, results)
            futures = [
                self.host_jobs.submit(
                    self.importer.import_to_host,
                    rel,
                    self.on_base(rel, recipe, host),
                    digests,
                    host,
                    identities,
                )
                for host in self.hosts
            ]
            outcomes = [(host, f.result()) for host, f in zip(self.hosts, futures, strict=True)]
            after_job(self, sa, recipe, outcomes=outcomes, results=results, sharers=sharers)
        except (StoppedError, CancelledError):
            pass
        except FileChangedError as exc:
            log.info("artifact.pending", path=str(sa.artifact.path), reason=str(exc))
        except sqlite3.Error as exc:  # a full state disk: read-only until it can record again
            self.health.failed(exc)
        except Exception as exc:  # one artifact's failure never stops the daemon
            log.exception("artifact.error", path=str(sa.artifact.path), error=str(exc))
            self.summary.mark(rel, "failed")
            self.timers.back_off(rel)
        finally:
            self._done(rel)
            if not self.stop_event.is_set() and not self.once:
                # One more look once the job is over (what changed meanwhile was skipped while
                # it was in flight): a timer, not a file event, and not before a backoff ends.
                when = max(time.monotonic(), self.timers.not_before(rel))
                self.timers.wake_at(when, self.service_.unit_of(rel), rel)
                self.service_.after_job(rel)

    def _early_job(self, sa: ScannedArtifact, expected: Mapping[Path, int | None]) -> None:
        rel = sa.rel_path
        try:
            results = self.digester.digest_all(list(expected), expected)
            blobs = {r.digest: (p, r.key) for p, r in results.items()}
            futures = [
                self.host_jobs.submit(self.importer.upload_early, blobs, host, sa.artifact.path)
                for host in self.hosts
            ]
            for f in futures:
                f.result()
        except (StoppedError, CancelledError, FileChangedError):
            pass  # the import of record meets it again
        except Exception as exc:  # an early upload is an optimisation: never fatal
            log.exception("artifact.error", path=str(sa.artifact.path), error=str(exc))
        finally:
            self._done(rel)
            if not self.stop_event.is_set():
                self.timers.wake_at(time.monotonic(), self.service_.unit_of(rel), rel)

    def _removed_job(self, row: ArtifactRow) -> None:
        try:
            # Deleting a model the store cannot then forget is not done: it waits for a
            # writable store (a full disk, issue 13), and the next full look does it.
            if self.health.ok:
                self.state.set_meta({PROBE_KEY: str(time.time())})
                apply_on_removed(self.settings.on_removed, row, self.hosts, self.state)
        except sqlite3.Error as exc:
            self.health.failed(exc)
        finally:
            self._done(row.path)

    def _record(
        self, sa: ScannedArtifact, recipe: Recipe, results: Mapping[Path, HashResult]
    ) -> None:
        keys: dict[str, FileKey] = {self._rel(p): r.key for p, r in results.items()}
        self.state.upsert_artifact(
            sa.rel_path,
            kind=str(sa.artifact.kind),
            fingerprint=artifact_fingerprint(keys, recipe.sidecar_digest),
            model=recipe.model,
            digests={self._rel(p): r.digest for p, r in results.items()},
        )

    def _rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.drop_dir).as_posix()
        except ValueError:
            return str(path)

    def shutdown(self, deadline: float) -> bool:
        """Artifact jobs wait for their host jobs: those are told to end first."""
        ended = self.host_jobs.shutdown(deadline)
        return self.jobs.shutdown(deadline) and ended

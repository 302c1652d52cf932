"""The daemon: reconcile the drop folder with the state store on every hint; its lifecycle.

Every trigger (start, watcher hint, retry time, periodic rescan, SIGHUP) runs the same
``reconcile``: list the folder, classify it, decide per artifact what is still to do, and hand
ready work to worker threads. The state store, not the events, is the truth about what was done.
``dropzone scan`` runs the same code once (``once=True``) and waits for the work it started.
"""

from __future__ import annotations

import heapq
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import CancelledError, Future
from dataclasses import replace
from pathlib import Path

import structlog

from dropzone import __version__
from dropzone.claims import Claims
from dropzone.digests import Digester
from dropzone.dropguard import DropGuard, Verdict
from dropzone.errors import (
    ConfigError,
    DropzoneError,
    FileChangedError,
    Problem,
    StoppedError,
)
from dropzone.filters import IgnoreRules
from dropzone.fleet import Fleet
from dropzone.follow import Followers
from dropzone.greeting import greet_hosts
from dropzone.hashing import HashResult, cached_digest
from dropzone.identity import FileKey
from dropzone.importer import Host, Importer, Outcome, Result
from dropzone.model import Recipe
from dropzone.names import parse_name
from dropzone.notify import Notifier
from dropzone.ollama import OllamaClient, Timeouts, make_http_client
from dropzone.placement import placer_for
from dropzone.plan import Recorded, Step, next_step
from dropzone.policies import apply_on_removed, apply_on_success, owned_files
from dropzone.probes import Probes
from dropzone.progress import Progress
from dropzone.readiness import QuietTracker
from dropzone.recipe_deps import Dependencies
from dropzone.recipes import build_recipes
from dropzone.reporter import PassSummary, Reporter
from dropzone.scanner import (
    Entry,
    HeaderCache,
    ScannedArtifact,
    ScanResult,
    Status,
    list_tree,
    scan,
)
from dropzone.settings import Settings
from dropzone.sidecar import SidecarSpec, load_spec
from dropzone.state import (
    ArtifactRow,
    HostRow,
    HostState,
    StateStore,
    artifact_fingerprint,
    request_fingerprint,
)
from dropzone.store_health import PROBE_KEY, StoreHealth
from dropzone.units import list_units, split_units, units_of
from dropzone.watcher import Change, ChangeKind, ChangeQueue, Watcher
from dropzone.workers import Workers

log = structlog.get_logger("dropzone.daemon")

# Hints arrive with every write of a copy; one reconcile per this interval is plenty, and
# never more often than a few times its own cost (a rescan of a huge folder is not free).
MIN_RECONCILE_SECONDS = 0.2
RECONCILE_DUTY_FACTOR = 4.0
# ... but never longer than this: after a slow first scan (100,000 files opened, 30 s) a file
# dropped next waited 4 x 30 s for its look (issue 13); later looks hit the header cache.
RECONCILE_GAP_MAX_SECONDS = 2.0
# The longest the main loop blocks at once. The kernel may deliver SIGTERM to any thread, and
# then nothing interrupts the main thread's wait: Python runs the handler (which only flips
# a flag) when that wait ends. So the wait must end often for a stop to take effect quickly.
SIGNAL_CHECK_SECONDS = 0.25


# How long a stop waits for work in progress. A request to Ollama can block far longer (a create
# that quantizes for minutes, a stalled upload): such work is abandoned, which is safe because
# every step was committed before it started; the next start resumes it.
STOP_GRACE_SECONDS = 2.0
# How often a drop folder that is not the recorded one (an unmounted share) is looked at again.
GUARD_RECHECK_SECONDS = 5.0
# How often the watched folder's identity is checked (one stat): a folder deleted and
# re-created is watched again within this, not at the next rescan (issue 13).
FOLDER_CHECK_SECONDS = 1.0
# The longest a stop waits for the watcher's threads and for the followers' (each).
STOP_WATCHER_SECONDS = 1.0
# ``dropzone scan``: rounds of work at most, and the longest it waits for retry times in all.
SCAN_ROUNDS = 6
SCAN_RETRY_BUDGET_SECONDS = 30.0
# Backoff after failures that are not the server's answer (a persisting digest mismatch).
BACKOFF_FIRST_SECONDS = 2.0
BACKOFF_MAX_SECONDS = 600.0
HEADER_CACHE_ENTRIES = 200_000
# The header cache's bound in estimated bytes (``scan_tree.estimated_cost``), whatever the
# files: a GGUF with 131,072 long tensor names once held 155 MiB, each hard link as much again.
HEADER_CACHE_BYTES = 64 << 20
# Weights this large are uploaded as soon as their writer closed them (see ``_upload_early``);
# a smaller artifact uploads in less time than the settle wait it could hide.
EARLY_UPLOAD_MIN_BYTES = 64 << 20
WEIGHT_SUFFIXES = (".gguf", ".safetensors")


class Daemon:
    def __init__(
        self,
        settings: Settings,
        *,
        env: Mapping[str, str],
        once: bool = False,
        progress: Progress | None = None,
    ) -> None:
        self.settings = settings
        self.drop_dir = Path(settings.drop_dir).absolute()
        self.once = once
        self.state = StateStore.open(Path(settings.state_dir))
        self.guard = DropGuard(self.drop_dir, self.state)
        self.health = StoreHealth(str(settings.state_dir))
        self._check_drop_dir()
        self._verdict: Verdict | None = None  # the last one logged
        self.stop_event = threading.Event()
        self._stop_requested = False
        self.queue = ChangeQueue()
        self.rules = IgnoreRules(tuple(settings.ignore_patterns))
        # Big enough for every file of a large drop folder: a rescan visits files in the same
        # order each time, so a smaller LRU evicts each header just before it is needed again.
        self.headers = HeaderCache(capacity=HEADER_CACHE_ENTRIES, max_bytes=HEADER_CACHE_BYTES)
        self._http = [make_http_client(verify=h.verify) for h in settings.ollama_hosts]
        timeouts = Timeouts(create_total=settings.create_timeout_seconds)
        self.hosts = [
            Host(
                h.url,
                OllamaClient(h.url, http, headers=h.header_values(), timeouts=timeouts),
                placer=placer_for(h.url, h.models_dir, h.local_import_mode, settings.on_success),
                verify=h.verify_model,
            )
            for h, http in zip(settings.ollama_hosts, self._http, strict=True)
        ]
        self.hash_slots = threading.Semaphore(settings.max_parallel_hashes)
        self.importer = Importer(
            self.state,
            drop_dir=self.drop_dir,
            upload_slots=threading.Semaphore(settings.max_parallel_uploads),
            stop=self.stop_event,
            progress=progress,
            verify=settings.verify,
        )
        self.followers = Followers(
            self.hash_slots,
            self.stop_event,
            self.drop_dir,
            write_back=any(h.placer is not None and h.placer.flushes_source for h in self.hosts),
        )
        self.digester = Digester(self.state, self.followers, self.stop_event, progress)
        self.jobs = Workers(4, "artifact")
        self.host_jobs = Workers(max(2, 2 * len(self.hosts)), "host")
        self.quiet = QuietTracker(settings.settle_seconds)
        self.notifier = Notifier(env)
        self.report = Reporter(self.drop_dir, self.state, progress=progress)
        self.summary: PassSummary = self.report.summary
        self._lock = threading.Lock()
        self._in_flight: dict[str, Future[None]] = {}
        self._early: dict[str, tuple[object, ...]] = {}  # rel → weights' stats uploaded early
        self._wakeups: list[tuple[float, str, str]] = []  # (monotonic time, unit, rel)
        self._units: dict[str, ScanResult] = {}  # unit → what its last scan found
        self._stats: dict[str, dict[str, Entry]] = {}  # unit → its listing by rel path
        # rel → the file stats it had when every host was found done with its request: an
        # artifact whose stats did not move since needs no sidecar read, recipe or query.
        self._settled_at: dict[str, tuple[object, ...]] = {}
        self._claims = Claims()  # which artifact makes which model name
        self._probes = Probes()  # hosts that did not answer, looked at again every few seconds
        self._failures: dict[str, int] = {}  # rel → failures in a row not due to a server
        self._not_before: dict[str, float] = {}  # rel → monotonic time its backoff ends
        # rel → the identities of its files when a server refused it: a touch changes them.
        self._refused: dict[str, frozenset[FileKey]] = {}
        self.deps = Dependencies()  # which artifact's model is made from which (issue 12)
        self._last_cost = 0.0
        self.watcher: Watcher | None = None
        self.fleet = Fleet(settings, self.state, env=env)  # metrics, hooks (issue 16)

    # -- lifecycle ----------------------------------------------------------------------

    def request_stop(self) -> None:
        """Safe in a signal handler: only a flag and the queue's reentrant lock. Setting
        ``stop_event`` here could deadlock: the handler may interrupt the main thread while it
        holds that Event's (non-reentrant) lock inside ``wait``. The loop sets it instead."""
        self._stop_requested = True
        self.queue.wake()

    def request_rescan(self) -> None:
        self.queue.put(Change(ChangeKind.RESCAN))

    def _check_drop_dir(self) -> None:
        """The daemon creates a missing drop folder on its first start only (the unit's
        tmpfiles snippet may not have run yet): once the store knows a folder, a missing one
        is an unmounted share, waited for (see ``dropguard``). A one-off scan of a folder that
        is not there is a configuration mistake."""
        try:
            if not self.once:
                self.guard.check(create=True)
            elif not self.drop_dir.is_dir():
                raise FileNotFoundError(2, "no such directory")
        except OSError as exc:
            raise ConfigError(
                [
                    f"drop_dir: cannot use {self.drop_dir} ({exc.strerror or exc}); fix: create"
                    " the directory, readable and writable by the dropzone user, or set drop_dir"
                ]
            ) from exc

    def run(self) -> int:
        """Watch and import until ``request_stop``; 0 on a clean stop."""
        mode = self._start_watcher() if self._trusted() else "waiting for the drop folder"
        log.info(
            "daemon.started",
            path=str(self.drop_dir),
            hosts=[h.url for h in self.hosts],
            watch=mode,
            version=__version__,
        )
        self.fleet.start()
        self._greet_hosts()
        self._reconcile(full=True)
        self.notifier.send(READY="1", STATUS=self._status_line())
        try:
            self._loop()
        finally:
            self._shutdown()
        return 0

    def _start_watcher(self) -> str:
        self.watcher = Watcher(
            self.drop_dir,
            self.queue,
            poll_interval=self.settings.poll_interval,
            ignore=self._ignored,
        )
        mode = self.watcher.start()
        if self.watcher.fallback:
            log.warning(
                "watcher.fallback",
                path=str(self.drop_dir),
                poll_interval=2.0,
                error="native file-system events do not arrive here; polling instead",
            )
        return mode

    def _trusted(self) -> bool:
        """Ask the guard whether the drop folder is the recorded one; say so when that
        changes (once, not at every look)."""
        verdict = self.guard.check()
        if verdict != self._verdict:
            if not verdict.ok:
                log.error(
                    "drop_dir.suspicious",
                    path=str(self.drop_dir),
                    error=verdict.reason,
                    fix=verdict.fix,
                )
            elif self._verdict is not None:
                log.info("drop_dir.ok", path=str(self.drop_dir))
        self._verdict = verdict
        return verdict.ok

    def scan_once(self) -> PassSummary:
        """One pass: import what is ready now, wait for that work, report what is pending."""
        self.fleet.start()
        self._greet_hosts()
        # A file rewritten under a recorded digest needs a second look, and a host that failed
        # for now is tried again at its retry time: a few rounds, within a bounded wait.
        deadline = time.monotonic() + SCAN_RETRY_BUDGET_SECONDS
        for _ in range(SCAN_ROUNDS):
            self.reconcile(full=True)
            ran = self._wait_for_jobs()
            retry_at = min(
                (r.next_retry_at for r in self._waiting_rows() if r.next_retry_at is not None),
                default=None,
            )
            if retry_at is None:
                if not ran:
                    break
                continue
            pause = retry_at - time.time()
            if time.monotonic() + pause > deadline or self.stop_event.wait(max(pause, 0)):
                break
        for row in self._waiting_rows():
            log.error(
                "scan.gave_up",
                path=str(self.drop_dir / row.path),
                host=row.host,
                error=row.last_error,
                attempts=row.attempts,
                fix="the daemon (dropzone run) keeps retrying; or run dropzone scan again later",
            )
        self._shutdown()
        return self.summary

    def _waiting_rows(self) -> list[HostRow]:
        """(artifact, host) rows of this pass's artifacts that wait for a retry."""
        seen = self.summary.failed
        return [r for r in self.state.rows() if r.next_retry_at is not None and r.path in seen]

    def _loop(self) -> None:
        now = time.monotonic()
        every = self.settings.rescan_interval or float("inf")  # 0 means never
        next_rescan = now + every
        ping = self.notifier.watchdog_interval
        next_ping = now + ping if ping else float("inf")
        # The time of the last reconcile: the initial one, just done. (Zero here once made
        # ``last + 3600`` lie in the past on any machine up for an hour: the loop spun.)
        last = now
        next_folder_check = now + FOLDER_CHECK_SECONDS
        units: set[str] = set()
        while not self._stopping():
            now = time.monotonic()
            if now >= next_folder_check:
                next_folder_check = now + FOLDER_CHECK_SECONDS
                if self._folder_moved():
                    next_rescan = now  # the guard judges the folder; the watch restarts
            if self._verdict is not None and not self._verdict.ok:
                next_rescan = min(next_rescan, now + GUARD_RECHECK_SECONDS)
            for host in self._probes.due(now):
                self.host_jobs.submit(self._probe, host)
            wake = min(
                next_rescan,
                next_ping,
                next_folder_check,
                self._next_wakeup(),
                self._probes.next_due(),
                self.health.next_try(),
                last + 3600,
            )
            changes = self.queue.drain(timeout=min(max(0.0, wake - now), SIGNAL_CHECK_SECONDS))
            if self._stopping():
                break
            now = time.monotonic()
            rescan_due = now >= next_rescan or any(c.kind is ChangeKind.RESCAN for c in changes)
            if self.health.recovered(self.state):
                rescan_due = True  # writable again: judge everything from the store
            if any(c.kind is ChangeKind.RESCAN for c in changes):  # SIGHUP (dropzone retry)
                self._settled_at.clear()  # or lost events: judge everything from the store
            for change in changes:
                if change.path is None:
                    continue
                if change.kind is ChangeKind.CLOSED:
                    self.quiet.closed(self._rel(change.path))
                units |= units_of(self.drop_dir, change.path)
            units |= self._due_units(now)
            gap = max(MIN_RECONCILE_SECONDS, RECONCILE_DUTY_FACTOR * self._last_cost)
            gap = min(gap, RECONCILE_GAP_MAX_SECONDS)
            if rescan_due or (units and now - last >= gap):
                self._reconcile(full=rescan_due, units=units)
                units = set()
                last = time.monotonic()
                if rescan_due:
                    next_rescan = last + every
            elif units:
                self._wake_at(last + gap, next(iter(units)))
            if now >= next_ping:
                self.notifier.send(WATCHDOG="1", STATUS=self._status_line())
                next_ping = now + (ping or 0)

    def _reconcile(self, *, full: bool = False, units: Iterable[str] = ()) -> None:
        """``reconcile``, unless the state store cannot be written: then nothing (no work, no
        removal) until a probe write succeeds (``store_health``)."""
        if not self.health.ok:
            return
        try:
            self.reconcile(full=full, units=units)
        except sqlite3.Error as exc:
            self.health.failed(exc)

    def _folder_moved(self) -> bool:
        """Stop watching a drop folder that was deleted or replaced; the next full reconcile
        asks the guard and, once the folder is trusted again, watches the new one."""
        if self.watcher is None or not self.watcher.moved():
            return False
        log.warning(
            "watcher.lost",
            path=str(self.drop_dir),
            error="the drop folder was deleted or replaced while watched",
        )
        self.watcher.stop(STOP_WATCHER_SECONDS)
        self.watcher = None
        return True

    def _stopping(self) -> bool:
        if self._stop_requested:
            self.stop_event.set()
        return self.stop_event.is_set()

    def _shutdown(self) -> None:
        if not self.once:
            log.info("daemon.stopping", path=str(self.drop_dir))
            self.notifier.send(STOPPING="1", STATUS="stopping")
        self.stop_event.set()
        # Each bounded: watcher and followers a second each, then the workers' grace, so a stop
        # takes STOP_GRACE_SECONDS + 2 s at most whatever the file system does (issue 13).
        if self.watcher is not None:
            self.watcher.stop(STOP_WATCHER_SECONDS)
        self.followers.cancel_all()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        # Artifact jobs wait for their host jobs: those must be told to end first.
        ended = self.host_jobs.shutdown(deadline)
        ended = self.jobs.shutdown(deadline) and ended
        self.fleet.close()
        if not ended:
            # Abandoned threads may still touch the clients and the store: leave both open
            # for the few moments until the process exits.
            log.warning(
                "daemon.abandoned",
                path=str(self.drop_dir),
                seconds=STOP_GRACE_SECONDS,
                error="a request to Ollama did not end in time; it is redone at the next start",
            )
            return
        for http in self._http:
            http.close()
        self.state.close()

    def _greet_hosts(self) -> None:
        greet_hosts(self.hosts, self._stopping)  # in parallel, a few seconds at most (issue 13)

    # -- reconciliation -----------------------------------------------------------------

    def reconcile(self, *, full: bool = False, units: Iterable[str] = ()) -> None:
        """Compare what the drop folder holds with what was done, and start what is missing.

        ``full`` looks at everything; otherwise only at ``units`` (see ``dropzone.units``).
        """
        started = time.monotonic()
        if full or self._verdict is None or not self._verdict.ok:
            if not self._trusted():
                return  # not the recorded folder: look at nothing, act on nothing
            if self.watcher is None and not self.once:
                self._start_watcher()
            full = True
        unreadable: list[str] = []
        if full:
            listing = split_units(
                list_tree(self.drop_dir, prune=self.rules.prune_dir, unreadable=unreadable)
            )
            affected = set(listing) | set(self._units)
        else:
            affected = set(units)
            listing = list_units(self.drop_dir, affected, self.rules.prune_dir, unreadable)
        vanished = False
        for unit in list(affected):
            if unreadable and _under_any(unit, unreadable):
                # Could not be listed (EIO on a share): what was there is unknown, not gone;
                # the last look at it stands, and nothing of it is judged now.
                affected.discard(unit)
                continue
            old = self._units.pop(unit, None)
            self._stats.pop(unit, None)
            entries = listing.get(unit, [])
            if entries:
                self._units[unit] = scan(
                    self.drop_dir, entries, rules=self.rules, cache=self.headers
                )
                self._stats[unit] = {e.path: e for e in entries}
            if old is not None:
                kept = {sa.rel_path for sa in self._units[unit].artifacts} if entries else set()
                vanished |= any(sa.rel_path not in kept for sa in old.artifacts)
        now = time.time()
        candidates: list[ScannedArtifact] = []
        ready: dict[Path, ScannedArtifact] = {}
        count = 0
        self.report.begin_scan()
        # One commit for the notes of a whole look (a folder of 100,000 files: not 100,000).
        with self.state.batch():
            for unit in sorted(affected & set(self._units)):
                result, stats = self._units[unit], self._stats[unit]
                for problem in result.problems:
                    self.report.refuse(self._rel(Path(problem.path)), "artifact.invalid", [problem])
                for sa in result.artifacts:
                    count += 1
                    self._classify(
                        sa, stats=stats, now=now, unit=unit, candidates=candidates, ready=ready
                    )
            self._start_ready(candidates, ready)
        self.report.end_scan()
        live = {rel for stats in self._stats.values() for rel in stats}
        self.quiet.forget_except(live)
        if full or vanished:
            present = self._present()
            with self._lock:
                self._early = {rel: sig for rel, sig in self._early.items() if rel in present}
            self._handle_removed(present)
        self.followers.drop_except(lambda p: p.exists())
        self._last_cost = time.monotonic() - started
        if full:
            log.info(
                "scan.done",
                path=str(self.drop_dir),
                artifacts=count,
                ready=len(ready),
                seconds=round(self._last_cost, 3),
            )

    def _classify(
        self,
        sa: ScannedArtifact,
        *,
        stats: Mapping[str, Entry],
        now: float,
        unit: str,
        candidates: list[ScannedArtifact],
        ready: dict[Path, ScannedArtifact],
    ) -> None:
        """Sort one scanned artifact: refused, pending, unchanged since done, or ready."""
        self.report.detected(sa)
        if sa.status is Status.INVALID:
            self._settled_at.pop(sa.rel_path, None)
            self._claims.release(sa.rel_path)
            self.report.refuse(
                sa.rel_path, "artifact.invalid", list(sa.problems), str(sa.artifact.kind)
            )
            return
        files = [(p.path, stats[p.path].size, stats[p.path].mtime_ns) for p in sa.progress]
        files += self._sidecar_stat(sa, stats)
        signature = _signature(files, stats)
        if self._settled_at.get(sa.rel_path) == signature:
            return  # done (or refused by the server) with exactly these files: nothing to do
        candidates.append(sa)
        if sa.status is Status.INCOMPLETE:
            self.report.pending(sa, "incomplete")
            self._follow(sa)
            return
        wait = self.quiet.wait_seconds(files, now)
        if wait > 0:
            self.report.pending(sa, "settling", wait=wait)
            self._follow(sa)
            self._wake_at(time.monotonic() + wait, unit)
            self._upload_early(sa, files)
            return
        if self.settings.require_sidecar and sa.artifact.sidecar is None:
            self.report.pending(sa, "no sidecar (require_sidecar is true)")
            return
        ready[sa.artifact.path] = sa

    def _start_ready(
        self, candidates: list[ScannedArtifact], ready: Mapping[Path, ScannedArtifact]
    ) -> None:
        specs: dict[Path, SidecarSpec | list[Problem]] = {
            sa.artifact.path: load_spec(sa.artifact, drop_dir=self.drop_dir)
            for sa in candidates
            if sa.artifact.path in ready
        }
        recipes = build_recipes(
            [sa.artifact for sa in candidates if sa.artifact.path in ready],
            specs,
            drop_dir=self.drop_dir,
            default_tag=self.settings.default_tag,
        )
        # Hashing must find each file at the size readiness judged complete (the scan saw it),
        # not at a header length: a GGUF may be longer than its tensor data (issue 11). Not the
        # minimum with ">=" either: a file whose size moved since readiness is not quiet, and
        # its FileChangedError sends it back to settle.
        expected = {f.path: f.seen_size for sa in candidates for f in sa.artifact.files}
        waiting = {
            f.path for sa in candidates if sa.artifact.path not in ready for f in sa.artifact.files
        }
        for path, spec in specs.items():
            if not isinstance(spec, list):
                self.report.warn(ready[path].rel_path, spec.warnings)
        for path, built in recipes.items():  # every base known before any dependent goes
            if isinstance(built, Recipe):
                self.deps.note(ready[path].rel_path, built)
            else:
                self.deps.forget(ready[path].rel_path)
        for path, built in recipes.items():
            sa = ready[path]
            outcome = self._claim(sa.rel_path, built) if isinstance(built, Recipe) else built
            if isinstance(outcome, list):
                if sa.artifact.is_adapter and sa.artifact.sidecar is None:
                    self.report.pending(sa, "adapter: used through a sidecar that names it")
                    continue
                sidecar = str(sa.artifact.sidecar) if sa.artifact.sidecar else None
                event = (
                    "sidecar.invalid"
                    if sidecar and any(p.path == sidecar for p in outcome)
                    else "artifact.invalid"
                )
                self.report.refuse(sa.rel_path, event, outcome)
                continue
            blocked = [p for p in outcome.blob_paths() if p in waiting]
            if blocked:
                self.report.pending(sa, "waiting for " + ", ".join(self._rel(p) for p in blocked))
                continue
            base = self.deps.provider(sa.rel_path)
            if base is not None and not self._base_done(base):
                self.report.pending(sa, f"waiting for its base model, made from {base}")
                continue
            self._consider(sa, outcome, expected)

    def _consider(
        self, sa: ScannedArtifact, recipe: Recipe, expected: Mapping[Path, int | None]
    ) -> None:
        rel = sa.rel_path
        with self._lock:
            if rel in self._in_flight:
                return
        if time.monotonic() < self._not_before.get(rel, 0.0):
            return  # backing off after a failure; its wake-up is set
        stats = self._stats.get(self._unit_of(rel), {})
        refused = self._refused.get(rel)
        if refused is not None and refused != _identities(sa, stats):
            # Touched (or rewritten) since the server refused it: the operator asks again.
            del self._refused[rel]
            if self.state.clear_failures([rel]):
                log.info("artifact.retry", path=str(sa.artifact.path), reason="touched")
        if self._settled(rel, recipe):
            files = [(p.path, stats[p.path].size, stats[p.path].mtime_ns) for p in sa.progress]
            self._settled_at[rel] = _signature(files + self._sidecar_stat(sa, stats), stats)
            return
        self.report.clear(rel)
        log.info("artifact.ready", path=str(sa.artifact.path), model=recipe.model)
        sharers = self._sharers(rel, recipe)
        with self._lock:
            self._in_flight[rel] = self.jobs.submit(self._job, sa, recipe, expected, sharers)

    def _upload_early(self, sa: ScannedArtifact, files: list[tuple[str, int, int]]) -> None:
        """Upload the weights of a complete artifact whose writer has closed them while the
        quiet period still runs, so the upload overlaps the settle wait instead of following it.

        Only the upload starts early, never the create: that still waits for readiness (the
        structural check passed already; the quiet period must pass too). The file is
        structurally complete and closed, and its digest is the follower's, verified (identity,
        growth, leading region). A blob is content-addressed, so one sent for a file that then
        changes is never referenced (the server prunes it at its next start). The import that
        follows is the one of record.
        """
        if self.once or sa.artifact.is_adapter or not self.hosts:
            return
        if self.settings.require_sidecar and sa.artifact.sidecar is None:
            return
        # ``files``: (rel, size, mtime_ns) of every present file and the sidecar, just observed.
        signature = tuple(f for f in files if f[0].endswith(WEIGHT_SUFFIXES))
        if not signature or sum(size for _, size, _ in signature) < EARLY_UPLOAD_MIN_BYTES:
            return
        if not all(self.quiet.closed_since_change(rel) for rel, _, _ in signature):
            return
        weights = [f for f in sa.artifact.files if f.path.suffix in WEIGHT_SUFFIXES]
        rel = sa.rel_path
        with self._lock:
            if rel in self._in_flight or self._early.get(rel) == signature:
                return
            self._early[rel] = signature  # once per version of the files, whatever the outcome
            expected = {f.path: f.seen_size for f in weights}
            self._in_flight[rel] = self.jobs.submit(self._early_job, sa, expected)

    def _claim(self, rel: str, recipe: Recipe) -> Recipe | list[Problem]:
        """Two artifacts in different units may claim one model name too: neither is made."""
        others = self._claims.claim(rel, recipe.model)
        if not others:
            return recipe
        name = parse_name(recipe.model).display_shortest()
        fix = "give each its own name with the model key of its sidecar"
        for other in others:
            self._settled_at.pop(other, None)
            message = f"model name {name} is also claimed by {rel}: neither is created"
            problem = Problem(str(self.drop_dir / other), message, fix, key="model")
            self.report.refuse(other, "artifact.invalid", [problem])
        message = f"model name {name} is also claimed by {', '.join(others)}: neither is created"
        return [Problem(str(recipe.sidecar or recipe.artifact.path), message, fix, key="model")]

    def _settled(self, rel: str, recipe: Recipe) -> bool:
        """True when every host is done with this exact request (or refused it), judged from
        cached digests without HTTP: a restart over 10,000 imported files sends no HEADs."""
        digests: dict[Path, str] = {}
        for path in recipe.blob_paths():
            try:
                hit = cached_digest(self.state, path)
            except OSError:
                return False
            if hit is None:
                return False
            digests[path] = hit.digest
        request = recipe.request(digests)
        now = float("inf") if self.once else time.time()
        steps = set()
        for host in self.hosts:
            fingerprint = request_fingerprint(
                self._on_base(rel, recipe, host).fingerprinted(request)
            )
            row = self.state.host_state(rel, host.url)
            recorded = (
                None
                if row is None
                else Recorded(str(row.state), row.request_fingerprint, row.next_retry_at)
            )
            step = next_step(recorded, fingerprint, now)
            if step is Step.WAIT and row is not None and row.next_retry_at is not None:
                when = time.monotonic() + row.next_retry_at - time.time()
                self._wake_at(when, self._unit_of(rel), rel)
            elif host.down and step is Step.GO and not self.once:
                # No timer: its probe's host.up wakes it (``_probe``). A timer at a retry time
                # already past would look again at once, and again, for as long as it is down.
                step = Step.WAIT
            steps.add(step)
        if Step.GO in steps:
            return False
        self.summary.mark(rel, "failed" if steps & {Step.REFUSED, Step.WAIT} else "done")
        # Waiting is a timer (set above), never a job: the wake-up judges it afresh.
        return True

    # -- the work for one artifact, on a worker thread --------------------------------

    def _job(
        self,
        sa: ScannedArtifact,
        recipe: Recipe,
        expected: Mapping[Path, int | None],
        sharers: Mapping[Path, list[ScannedArtifact]],
    ) -> None:
        rel = sa.rel_path
        self._settled_at.pop(rel, None)
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
                    self._on_base(rel, recipe, host),
                    digests,
                    host,
                    identities,
                )
                for host in self.hosts
            ]
            outcomes = [(host, f.result()) for host, f in zip(self.hosts, futures, strict=True)]
            self._after(sa, recipe, outcomes, results, sharers)
        except (StoppedError, CancelledError):
            pass
        except FileChangedError as exc:
            log.info("artifact.pending", path=str(sa.artifact.path), reason=str(exc))
        except sqlite3.Error as exc:  # a full state disk: read-only until it can record again
            self.health.failed(exc)
        except Exception as exc:  # one artifact's failure never stops the daemon
            log.exception("artifact.error", path=str(sa.artifact.path), error=str(exc))
            self.summary.mark(rel, "failed")
            self._back_off(rel)
        finally:
            with self._lock:
                self._in_flight.pop(rel, None)
            if not self.stop_event.is_set() and not self.once:
                # One more look once the job is over (what changed meanwhile was skipped while
                # it was in flight): a timer, not a file event, and not before a backoff ends.
                when = max(time.monotonic(), self._not_before.get(rel, 0.0))
                self._wake_at(when, self._unit_of(rel), rel)
                self._look_at_dependents(rel)

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
            with self._lock:
                self._in_flight.pop(rel, None)
            if not self.stop_event.is_set():
                self._wake_at(time.monotonic(), self._unit_of(rel), rel)

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

    def _after(
        self,
        sa: ScannedArtifact,
        recipe: Recipe,
        outcomes: list[tuple[Host, Outcome]],
        results: Mapping[Path, HashResult],
        sharers: Mapping[Path, list[ScannedArtifact]],
    ) -> None:
        rel = sa.rel_path
        for host, outcome in outcomes:
            if outcome.result in (Result.DONE, Result.FAILED):
                level = "info" if outcome.result is Result.DONE else "error"
                log.log(
                    20 if level == "info" else 40,
                    "artifact.done",
                    path=str(sa.artifact.path),
                    model=recipe.model,
                    host=host.url,
                    result=str(outcome.result),
                    error=outcome.error,
                    digests=sorted({r.digest for r in results.values()}),  # for hooks (issue 16)
                )
            if outcome.unreachable and not self.once and not host.down:
                # A scan has no probes: it retries. The daemon holds the host's work until a
                # probe sees it back: an outage costs one probe every few seconds, not N jobs.
                host.down = True
                self._probes.down(host)
                log.warning(
                    "host.down",
                    host=host.url,
                    error=outcome.error,
                    fix="its work waits; dropzone probes it every few seconds (host.up)",
                )
            if outcome.result is Result.RETRY and outcome.retry_at is not None:
                when = time.monotonic() + outcome.retry_at - time.time()
                self._wake_at(when, self._unit_of(rel))
            if outcome.result is Result.REHASH:
                # The server saw other bytes than the digest says: forget it, hash again, but
                # not at once: a mismatch that persists (a file rewritten in place all the
                # time, a proxy that alters bodies) must not loop hash + upload.
                for result in results.values():
                    self.state.forget_digest(result.key)
                self._back_off(rel)
        if any(o.result in (Result.FAILED, Result.RETRY) for _, o in outcomes):
            self.summary.mark(rel, "failed")
        if any(o.result is Result.FAILED for _, o in outcomes):
            keys = {r.key for r in results.values()}
            if recipe.sidecar_key is not None:
                keys.add(recipe.sidecar_key)
            self._refused[rel] = frozenset(keys)
        if all(o.result in (Result.DONE, Result.SKIPPED) for _, o in outcomes):
            self._failures.pop(rel, None)
            self._not_before.pop(rel, None)
            self.summary.mark(rel, "done")
            if any(o.result is Result.DONE for _, o in outcomes) and self._trusted():
                apply_on_success(
                    self.settings.on_success,
                    recipe,
                    {p: self.importer.current_key(r.key) for p, r in results.items()},
                    rel=rel,
                    drop_dir=self.drop_dir,
                    state=self.state,
                    needed_elsewhere=lambda path: self._needed(path, sharers),
                )

    # -- models made from models (issue 12) ---------------------------------------------

    def _base_done(self, base: str) -> bool:
        """The artifact making a recipe's base is done on every host (and not at work)."""
        with self._lock:
            if base in self._in_flight:
                return False
        rows = [self.state.host_state(base, host.url) for host in self.hosts]
        return all(row is not None and str(row.state) == "done" for row in rows)

    def _on_base(self, rel: str, recipe: Recipe, host: Host) -> Recipe:
        """``recipe`` for ``host`` with what its base is there, when dropzone makes the base."""
        base = self.deps.provider(rel)
        row = self.state.host_state(base, host.url) if base is not None else None
        token = row.request_fingerprint if row is not None and str(row.state) == "done" else None
        return replace(recipe, base_token=token) if token else recipe

    def _look_at_dependents(self, rel: str) -> None:
        """After ``rel``'s work: the models made from its model may go now, or again."""
        for dependent in self.deps.dependents(rel):
            self._settled_at.pop(dependent, None)
            self.queue.put(Change(ChangeKind.CHANGED, self.drop_dir / dependent))

    # -- helpers ------------------------------------------------------------------------

    def _present(self) -> set[str]:
        """The artifacts the last looks found, and the refused paths that are no artifact (a
        FIFO named x.gguf): those have a status note too, and are not removed while there."""
        present = {sa.rel_path for r in self._units.values() for sa in r.artifacts}
        return present | {self._rel(Path(p.path)) for r in self._units.values() for p in r.problems}

    def _sharers(self, rel: str, recipe: Recipe) -> dict[Path, list[ScannedArtifact]]:
        """The other artifacts of the current scan that use a file of ``recipe`` (a projector
        beside two models, shards named by two sidecars); read on the main loop, where the
        scan results live."""
        mine = set(owned_files(recipe, dict.fromkeys(recipe.blob_paths(), _NO_KEY)))
        found: dict[Path, list[ScannedArtifact]] = {}
        for result in self._units.values():
            for other in result.artifacts:
                if other.rel_path == rel:
                    continue
                for f in other.artifact.files:
                    if f.path in mine:
                        found.setdefault(f.path, []).append(other)
        return found

    def _needed(self, path: Path, sharers: Mapping[Path, list[ScannedArtifact]]) -> bool:
        """True while another artifact that uses ``path`` is still there and not done on
        every host: its cleanup removes the file once it is done."""
        for other in sharers.get(path, []):
            if not os.path.lexists(other.artifact.path):
                continue  # cleaned (or removed) already
            rows = self.state.rows(path=other.rel_path)
            done = {r.host for r in rows if r.state is HostState.DONE}
            if not all(host.url in done for host in self.hosts):
                return True
        return False

    def _handle_removed(self, present: set[str]) -> None:
        if not self._trusted():
            return  # an unmounted share looks like "everything was removed"
        with self._lock:
            busy = set(self._in_flight)
        for row in self.state.artifacts():
            if row.path in present or row.path in busy:
                continue
            self.report.forget(row.path)
            self._claims.release(row.path)
            self.deps.forget(row.path)
            self._settled_at.pop(row.path, None)
            if self.once or self.settings.on_removed == "keep":
                apply_on_removed(self.settings.on_removed, row, self.hosts, self.state)
                continue
            # Deleting models talks to every host: never on the main loop.
            with self._lock:
                self._in_flight[row.path] = self.jobs.submit(self._removed_job, row)

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
            with self._lock:
                self._in_flight.pop(row.path, None)

    def _follow(self, sa: ScannedArtifact) -> None:
        for f in sa.artifact.files:
            if f.path.suffix in WEIGHT_SUFFIXES and not self._cached(f.path):
                self.followers.follow(f.path)

    def _cached(self, path: Path) -> bool:
        """True when the file, as it is now, has a digest: an artifact settling because only
        its sidecar changed must not read its weights again."""
        try:
            return cached_digest(self.state, path) is not None
        except OSError:
            return False

    def _sidecar_stat(
        self, sa: ScannedArtifact, stats: Mapping[str, object]
    ) -> list[tuple[str, int, int]]:
        if sa.sidecar_rel is None or sa.sidecar_rel not in stats:
            return []
        entry = stats[sa.sidecar_rel]
        return [(sa.sidecar_rel, entry.size, entry.mtime_ns)]  # type: ignore[attr-defined]

    def _ignored(self, path: Path) -> bool:
        try:
            rel = path.relative_to(self.drop_dir).as_posix()
        except ValueError:
            return True
        return rel != "." and self.rules.is_ignored(rel)

    def _rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.drop_dir).as_posix()
        except ValueError:
            return str(path)

    def _unit_of(self, rel: str) -> str:
        head, slash, _ = rel.partition("/")
        return head if slash or head in self._stats else ""

    def _probe(self, host: Host) -> None:
        """Is a host that did not answer back? One cheap ``GET /api/version``; when it answers,
        the work waiting for it goes now instead of at its scheduled retry."""
        try:
            host.version = host.client.version()
        except DropzoneError as exc:
            self._probes.failed(host)
            log.debug("host.probe", host=host.url, result="down", error=str(exc))
            return
        self._probes.up(host)
        host.down = False
        log.info("host.up", host=host.url, version=host.version)
        self.state.release_waiting(host.url)
        # Everything held for this host (waiting rows, and artifacts that arrived during the
        # outage and never tried) is judged again: a rescan forgets the settled signatures.
        self.queue.put(Change(ChangeKind.RESCAN))
        self.queue.wake()

    def _back_off(self, rel: str) -> None:
        """Hold ``rel`` back for a doubling delay after a failure that is not the server's
        (a digest mismatch, an unexpected error); a success resets it (``_after``)."""
        attempts = self._failures.get(rel, 0) + 1
        self._failures[rel] = attempts
        delay = min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** (attempts - 1))
        self._not_before[rel] = time.monotonic() + delay
        log.warning("retry.scheduled", path=rel, attempts=attempts, retry_in=round(delay, 1))

    def _wake_at(self, when: float, unit: str, rel: str = "") -> None:
        """Look at ``unit`` again at ``when``; with ``rel``, judge that artifact afresh then
        (a retry time has come: its "nothing to do since" signature no longer holds)."""
        with self._lock:
            heapq.heappush(self._wakeups, (when, unit, rel))

    def _next_wakeup(self) -> float:
        with self._lock:
            return self._wakeups[0][0] if self._wakeups else float("inf")

    def _due_units(self, now: float) -> set[str]:
        due: set[str] = set()
        with self._lock:
            while self._wakeups and self._wakeups[0][0] <= now:
                _, unit, rel = heapq.heappop(self._wakeups)
                due.add(unit)
                if rel:
                    self._settled_at.pop(rel, None)
        return due

    def _wait_for_jobs(self) -> bool:
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

    def _status_line(self) -> str:
        with self._lock:
            busy = len(self._in_flight)
        return (
            f"{len(self.summary.done)} imported, {len(self.summary.pending)} pending, "
            f"{len(self.summary.refused) + len(self.summary.failed)} refused or failed, "
            f"{busy} in progress"
        )


_NO_KEY = FileKey(0, 0, 0, 0, 0)


def _signature(files: list[tuple[str, int, int]], stats: Mapping[str, Entry]) -> tuple[object, ...]:
    """What the files looked like when last handled: with their ctime, which ``cp -p`` of a
    same-size version with its mtime set back cannot hide."""
    return tuple((*f, stats[f[0]].ctime_ns if f[0] in stats else 0) for f in files)


def _identities(sa: ScannedArtifact, stats: Mapping[str, Entry]) -> frozenset[FileKey]:
    """The identities of the artifact's files and sidecar as the last listing saw them."""
    rels = [p.path for p in sa.progress] + ([sa.sidecar_rel] if sa.sidecar_rel else [])
    return frozenset(
        FileKey(e.dev, e.inode, e.size, e.mtime_ns, e.ctime_ns)
        for e in (stats.get(r) for r in rels)
        if e is not None
    )


def _under_any(rel: str, folders: list[str]) -> bool:
    """True when ``rel`` is one of ``folders``, lies under one, or holds one ("" is the root)."""
    return any(
        f in ("", rel) or rel.startswith(f + "/") or f.startswith(rel + "/") for f in folders
    )

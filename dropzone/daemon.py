"""The daemon: reconcile the drop folder with the state store on every hint; its lifecycle.

Every trigger (start, watcher hint, retry time, periodic rescan, SIGHUP) runs the same
``reconcile``: list the folder, classify it, decide per artifact what is still to do, and hand
ready work to worker threads. The state store, not the events, is the truth about what was done.
``dropzone scan`` runs the same code once (``once=True``) and waits for the work it started.
"""

from __future__ import annotations

import hashlib
import heapq
import queue
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import structlog

from dropzone import __version__
from dropzone.errors import (
    ConfigError,
    DropzoneError,
    FileChangedError,
    Problem,
    StoppedError,
)
from dropzone.filters import IgnoreRules
from dropzone.follow import Follower, Followers
from dropzone.hashing import FileKey, HashResult, cached_digest, hash_file
from dropzone.importer import Host, Importer, Outcome, Result
from dropzone.model import Recipe
from dropzone.notify import Notifier
from dropzone.ollama import OllamaClient, make_http_client
from dropzone.plan import Recorded, Step, next_step
from dropzone.policies import apply_on_removed, apply_on_success
from dropzone.readiness import Complete, Ready, Refused, Seen, assess, combine, observe
from dropzone.recipes import build_recipes
from dropzone.scanner import HeaderCache, ScannedArtifact, Status, list_tree, scan
from dropzone.settings import Settings
from dropzone.sidecar import SidecarSpec, load_spec
from dropzone.state import StateStore, artifact_fingerprint, request_fingerprint
from dropzone.watcher import Change, ChangeKind, ChangeQueue, Watcher

log = structlog.get_logger("dropzone.daemon")

# Hints arrive with every write of a copy; one reconcile per this interval is plenty.
MIN_RECONCILE_SECONDS = 0.2
# The longest the main loop blocks at once. The kernel may deliver SIGTERM to any thread, and
# then nothing interrupts the main thread's wait: Python runs the handler (which only flips
# a flag) when that wait ends. So the wait must end often for a stop to take effect quickly.
SIGNAL_CHECK_SECONDS = 0.25


# How long a stop waits for work in progress. A request to Ollama can block far longer (a create
# that quantizes for minutes, a stalled upload): such work is abandoned, which is safe because
# every step was committed before it started; the next start resumes it.
STOP_GRACE_SECONDS = 2.0

T = TypeVar("T")


class _Workers:
    """A fixed pool of *daemon* threads. ``ThreadPoolExecutor`` joins its threads at
    interpreter exit, so one job stuck in a network read would keep a stopping daemon alive
    until systemd kills it; here ``shutdown`` waits until a deadline, then lets them go."""

    def __init__(self, count: int, name: str) -> None:
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                future.cancel()  # stopping: whoever waits on it gets CancelledError
            else:
                self._queue.put((future, lambda: fn(*args)))
        return future

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            future, call = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except BaseException as exc:  # delivered to whoever waits on the future
                future.set_exception(exc)

    def shutdown(self, deadline: float) -> bool:
        """Cancel queued work, let running work end until ``deadline``; True if all ended."""
        with self._lock:
            self._closed = True
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[0].cancel()
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)


@dataclass
class PassSummary:
    """What one ``dropzone scan`` pass found, for its exit status."""

    refused: set[str] = field(default_factory=set)  # invalid artifacts or sidecars
    failed: set[str] = field(default_factory=set)  # a host failed (permanently or for now)
    pending: set[str] = field(default_factory=set)
    done: set[str] = field(default_factory=set)


class Daemon:
    def __init__(self, settings: Settings, *, env: Mapping[str, str], once: bool = False) -> None:
        self.settings = settings
        self.drop_dir = Path(settings.drop_dir).absolute()
        self.once = once
        self._check_drop_dir()
        self.state = StateStore.open(Path(settings.state_dir))
        self.stop_event = threading.Event()
        self._stop_requested = False
        self.queue = ChangeQueue()
        self.rules = IgnoreRules(tuple(settings.ignore_patterns))
        self.headers = HeaderCache()
        self._http = [make_http_client(verify=h.verify) for h in settings.ollama_hosts]
        self.hosts = [
            Host(h.url, OllamaClient(h.url, http, headers=h.header_values()))
            for h, http in zip(settings.ollama_hosts, self._http, strict=True)
        ]
        self.hash_slots = threading.Semaphore(settings.max_parallel_hashes)
        self.importer = Importer(
            self.state,
            upload_slots=threading.Semaphore(settings.max_parallel_uploads),
            stop=self.stop_event,
        )
        self.followers = Followers(self.hash_slots, self.stop_event)
        self.jobs = _Workers(4, "artifact")
        self.host_jobs = _Workers(max(2, 2 * len(self.hosts)), "host")
        self._seen: dict[str, Seen] = {}  # file rel → what its stats showed so far
        self._closed: set[str] = set()  # files a writer closed since the last reconcile
        self.notifier = Notifier(env)
        self.summary = PassSummary()
        self._lock = threading.Lock()
        self._in_flight: dict[str, Future[None]] = {}
        self._reported: dict[str, str] = {}  # rel → signature of the last pending/invalid event
        self._known: set[str] = set()
        self._wakeups: list[float] = []
        self.watcher: Watcher | None = None

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
        """The daemon creates a missing drop folder (the unit's tmpfiles snippet may not have
        run yet); a one-off scan of a folder that is not there is a configuration mistake."""
        try:
            if not self.once:
                self.drop_dir.mkdir(parents=True, exist_ok=True)
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
        self.watcher = Watcher(
            self.drop_dir,
            self.queue,
            poll_interval=self.settings.poll_interval,
            ignore=self._ignored,
        )
        mode = self.watcher.start()
        log.info(
            "daemon.started",
            path=str(self.drop_dir),
            hosts=[h.url for h in self.hosts],
            watch=mode,
            version=__version__,
        )
        if self.watcher.fallback:
            log.warning(
                "watcher.fallback",
                path=str(self.drop_dir),
                poll_interval=2.0,
                error="native file-system events do not arrive here; polling instead",
            )
        self._greet_hosts()
        self.reconcile(full=True)
        self.notifier.send(READY="1", STATUS=self._status_line())
        try:
            self._loop()
        finally:
            self._shutdown()
        return 0

    def scan_once(self) -> PassSummary:
        """One pass: import what is ready now, wait for that work, report what is pending."""
        self._greet_hosts()
        # A file rewritten under a recorded digest needs a second look: a few rounds at most.
        for _ in range(3):
            self.reconcile(full=True)
            if not self._wait_for_jobs():
                break
        self._shutdown()
        return self.summary

    def _loop(self) -> None:
        now = time.monotonic()
        every = self.settings.rescan_interval or float("inf")  # 0 means never
        next_rescan = now + every
        ping = self.notifier.watchdog_interval
        next_ping = now + ping if ping else float("inf")
        last = 0.0
        while not self._stopping():
            now = time.monotonic()
            wake = min(next_rescan, next_ping, self._next_wakeup(), last + 3600)
            changes = self.queue.drain(timeout=min(max(0.0, wake - now), SIGNAL_CHECK_SECONDS))
            if self._stopping():
                break
            now = time.monotonic()
            rescan_due = now >= next_rescan or any(c.kind is ChangeKind.RESCAN for c in changes)
            for change in changes:
                if change.kind is ChangeKind.CLOSED and change.path is not None:
                    self._closed.add(self._rel(change.path))
            if changes or rescan_due or self._due_wakeups(now):
                if now - last < MIN_RECONCILE_SECONDS and not rescan_due:
                    self.stop_event.wait(MIN_RECONCILE_SECONDS - (now - last))
                self.reconcile(full=rescan_due)
                last = time.monotonic()
                if rescan_due:
                    next_rescan = last + every
            if now >= next_ping:
                self.notifier.send(WATCHDOG="1", STATUS=self._status_line())
                next_ping = now + (ping or 0)

    def _stopping(self) -> bool:
        if self._stop_requested:
            self.stop_event.set()
        return self.stop_event.is_set()

    def _shutdown(self) -> None:
        if not self.once:
            log.info("daemon.stopping", path=str(self.drop_dir))
            self.notifier.send(STOPPING="1", STATUS="stopping")
        self.stop_event.set()
        if self.watcher is not None:
            self.watcher.stop()
        self.followers.cancel_all()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        # Artifact jobs wait for their host jobs: those must be told to end first.
        ended = self.host_jobs.shutdown(deadline)
        ended = self.jobs.shutdown(deadline) and ended
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
        for host in self.hosts:
            try:
                host.version = host.client.version()
                log.info("ollama.version", host=host.url, version=host.version)
            except DropzoneError as exc:
                log.warning("ollama.unreachable", host=host.url, error=str(exc))

    # -- reconciliation -----------------------------------------------------------------

    def reconcile(self, *, full: bool = False) -> None:
        """Compare what the drop folder holds with what was done, and start what is missing."""
        started = time.monotonic()
        entries = list_tree(self.drop_dir, prune=self.rules.prune_dir)
        result = scan(self.drop_dir, entries, rules=self.rules, cache=self.headers)
        stats = {e.path: e for e in entries}
        now = time.time()
        candidates: list[ScannedArtifact] = []
        ready: dict[Path, ScannedArtifact] = {}
        for sa in result.artifacts:
            self._detected(sa)
            if sa.status is Status.INVALID:
                self._refuse(sa.rel_path, "artifact.invalid", list(sa.problems))
                continue
            candidates.append(sa)
            if sa.status is Status.INCOMPLETE:
                self._pending(sa, "incomplete")
                self._follow(sa)
                continue
            wait = self._settle_wait(
                [(p.path, stats[p.path].size, stats[p.path].mtime_ns) for p in sa.progress]
                + self._sidecar_stat(sa, stats),
                now,
            )
            if wait > 0:
                self._pending(sa, "settling", wait=wait)
                self._follow(sa)
                self._wake_at(time.monotonic() + wait)
                continue
            if self.settings.require_sidecar and sa.artifact.sidecar is None:
                self._pending(sa, "no sidecar (require_sidecar is true)")
                continue
            ready[sa.artifact.path] = sa
        self._start_ready(candidates, ready)
        for rel in set(self._seen) - set(stats):
            del self._seen[rel]
        self._handle_removed({sa.rel_path for sa in result.artifacts})
        self.followers.drop_except(lambda p: p.exists())
        if full:
            log.info(
                "scan.done",
                path=str(self.drop_dir),
                artifacts=len(result.artifacts),
                ready=len(ready),
                seconds=round(time.monotonic() - started, 3),
            )

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
        expected = {f.path: f.expected_size for sa in candidates for f in sa.artifact.files}
        waiting = {
            f.path for sa in candidates if sa.artifact.path not in ready for f in sa.artifact.files
        }
        for path, outcome in recipes.items():
            sa = ready[path]
            if isinstance(outcome, list):
                if sa.artifact.is_adapter and sa.artifact.sidecar is None:
                    self._pending(sa, "adapter: used through a sidecar that names it")
                    continue
                sidecar = str(sa.artifact.sidecar) if sa.artifact.sidecar else None
                event = (
                    "sidecar.invalid"
                    if sidecar and any(p.path == sidecar for p in outcome)
                    else "artifact.invalid"
                )
                self._refuse(sa.rel_path, event, outcome)
                continue
            blocked = [p for p in outcome.blob_paths() if p in waiting]
            if blocked:
                self._pending(sa, "waiting for " + ", ".join(self._rel(p) for p in blocked))
                continue
            self._consider(sa, outcome, expected)

    def _consider(
        self, sa: ScannedArtifact, recipe: Recipe, expected: Mapping[Path, int | None]
    ) -> None:
        rel = sa.rel_path
        with self._lock:
            if rel in self._in_flight:
                return
        if self._settled(rel, recipe):
            return
        self._reported.pop(rel, None)
        log.info("artifact.ready", path=str(sa.artifact.path), model=recipe.model)
        with self._lock:
            self._in_flight[rel] = self.jobs.submit(self._job, sa, recipe, expected)

    def _settled(self, rel: str, recipe: Recipe) -> bool:
        """True when every host needs nothing now, judged from cached digests without HTTP:
        a restart over 10,000 imported files must not send 10,000 HEADs."""
        digests: dict[Path, str] = {}
        for path in recipe.blob_paths():
            try:
                hit = cached_digest(self.state, path)
            except OSError:
                return False
            if hit is None:
                return False
            digests[path] = hit.digest
        fingerprint = request_fingerprint(recipe.request(digests))
        now = float("inf") if self.once else time.time()
        settled = True
        for host in self.hosts:
            row = self.state.host_state(rel, host.url)
            recorded = (
                None
                if row is None
                else Recorded(str(row.state), row.request_fingerprint, row.next_retry_at)
            )
            step = next_step(recorded, fingerprint, now)
            if step is Step.WAIT and row is not None and row.next_retry_at is not None:
                self._wake_at(time.monotonic() + row.next_retry_at - time.time())
            elif step is Step.REFUSED:
                self.summary.failed.add(rel)
            elif step is Step.GO:
                settled = False
            elif step is Step.SKIP:
                self.summary.done.add(rel)
        return settled

    # -- the work for one artifact, on a worker thread --------------------------------

    def _job(
        self, sa: ScannedArtifact, recipe: Recipe, expected: Mapping[Path, int | None]
    ) -> None:
        rel = sa.rel_path
        try:
            paths = recipe.blob_paths()
            # Followed files first: each follower holds a hash slot until it is finished, so
            # hashing another file of this artifact first would wait on ourselves.
            followers = {p: self.followers.take(p) for p in paths}
            try:
                results = {
                    p: self._digest(p, expected.get(p), followers[p])
                    for p in sorted(paths, key=lambda p: followers[p] is None)
                }
            finally:
                for follower in followers.values():  # after a failure, free their slots
                    if follower is not None:
                        follower.cancel()
            digests = {p: results[p].digest for p in paths}
            self._record(sa, recipe, results)
            futures = [
                self.host_jobs.submit(self.importer.import_to_host, rel, recipe, digests, host)
                for host in self.hosts
            ]
            outcomes = [(host, f.result()) for host, f in zip(self.hosts, futures, strict=True)]
            self._after(sa, recipe, outcomes, results)
        except (StoppedError, CancelledError):
            pass
        except FileChangedError as exc:
            log.info("artifact.pending", path=str(sa.artifact.path), reason=str(exc))
        except Exception as exc:  # one artifact's failure never stops the daemon
            log.exception("artifact.error", path=str(sa.artifact.path), error=str(exc))
            self.summary.failed.add(rel)
        finally:
            with self._lock:
                self._in_flight.pop(rel, None)
            if not self.stop_event.is_set() and not self.once:
                self.queue.put(Change(ChangeKind.CHANGED, sa.artifact.path))

    def _digest(self, path: Path, expected: int | None, follower: Follower | None) -> HashResult:
        started = time.monotonic()
        try:
            hit = cached_digest(self.state, path)
        except OSError as exc:  # removed or replaced since the scan: look again
            raise FileChangedError(str(path), exc.strerror or str(exc)) from exc
        if hit is not None and (expected is None or hit.size == expected):
            result = hit  # no slot needed to read the cache, and no second read of the file
            if follower is not None:
                follower.cancel()
        elif follower is not None:
            result = follower.finish(expected)
            self.state.put_digest(result.key, result.digest)
        else:
            with self.followers.slot():
                result = hash_file(
                    path, store=self.state, expected_size=expected, stop=self.stop_event.is_set
                )
        if not result.cached:
            seconds = max(time.monotonic() - started, 1e-9)
            log.info(
                "hash.done",
                path=str(path),
                digest=result.digest,
                bytes=result.size,
                seconds=round(seconds, 3),
                rate_mb_s=round(result.size / 1e6 / seconds, 1),
                followed=follower is not None,
                restarts=[str(r) for r in result.restarts],
            )
        return result

    def _record(
        self, sa: ScannedArtifact, recipe: Recipe, results: Mapping[Path, HashResult]
    ) -> None:
        sidecar = sa.artifact.sidecar
        sidecar_digest = (
            "sha256:" + hashlib.sha256(sidecar.read_bytes()).hexdigest() if sidecar else None
        )
        keys: dict[str, FileKey] = {self._rel(p): r.key for p, r in results.items()}
        self.state.upsert_artifact(
            sa.rel_path,
            kind=str(sa.artifact.kind),
            fingerprint=artifact_fingerprint(keys, sidecar_digest),
            model=recipe.model,
            digests={self._rel(p): r.digest for p, r in results.items()},
        )

    def _after(
        self,
        sa: ScannedArtifact,
        recipe: Recipe,
        outcomes: list[tuple[Host, Outcome]],
        results: Mapping[Path, HashResult],
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
                )
            if outcome.result is Result.RETRY and outcome.retry_at is not None:
                self._wake_at(time.monotonic() + outcome.retry_at - time.time())
            if outcome.result in (Result.FAILED, Result.RETRY):
                self.summary.failed.add(rel)
            if outcome.result is Result.REHASH:
                # The server saw other bytes than the digest says: forget it, hash again.
                for result in results.values():
                    self.state.forget_digest(result.key)
        if all(o.result in (Result.DONE, Result.SKIPPED) for _, o in outcomes):
            self.summary.done.add(rel)
            self.summary.failed.discard(rel)
            if any(o.result is Result.DONE for _, o in outcomes):
                apply_on_success(self.settings.on_success, sa, recipe, self.drop_dir, self.state)

    # -- helpers ------------------------------------------------------------------------

    def _handle_removed(self, present: set[str]) -> None:
        with self._lock:
            busy = set(self._in_flight)
        for row in self.state.artifacts():
            if row.path not in present and row.path not in busy:
                apply_on_removed(self.settings.on_removed, row, self.hosts, self.state)
                self._known.discard(row.path)

    def _detected(self, sa: ScannedArtifact) -> None:
        if sa.rel_path not in self._known:
            self._known.add(sa.rel_path)
            log.info(
                "artifact.detected",
                path=str(sa.artifact.path),
                kind=str(sa.artifact.kind),
                sidecar=str(sa.artifact.sidecar) if sa.artifact.sidecar else None,
            )

    def _pending(self, sa: ScannedArtifact, reason: str, *, wait: float | None = None) -> None:
        self.summary.pending.add(sa.rel_path)
        signature = "pending:" + reason.split(" ", 1)[0]
        if self._reported.get(sa.rel_path) == signature:
            return
        self._reported[sa.rel_path] = signature
        log.info(
            "artifact.pending",
            path=str(sa.artifact.path),
            reason=reason,
            bytes=sa.have_bytes,
            expected_bytes=sa.expected_bytes,
            missing=list(sa.missing) or None,
            wait_seconds=round(wait, 1) if wait is not None else None,
        )

    def _refuse(self, rel: str, event: str, problems: list[Problem]) -> None:
        self.summary.refused.add(rel)
        signature = event + ":" + "|".join(p.describe() for p in problems)
        if self._reported.get(rel) == signature:
            return
        self._reported[rel] = signature
        first = problems[0] if problems else Problem(rel, "invalid")
        log.error(
            event,
            path=str(self.drop_dir / rel),
            file=first.path,
            line=first.line,
            key=first.key,
            error=first.message,
            fix=first.fix,
            problems=[p.describe() for p in problems],
        )

    def _follow(self, sa: ScannedArtifact) -> None:
        for f in sa.artifact.files:
            if f.path.suffix in (".gguf", ".safetensors") and not self._cached(f.path):
                self.followers.follow(f.path)

    def _cached(self, path: Path) -> bool:
        """True when the file, as it is now, has a digest: an artifact settling because only
        its sidecar changed must not read its weights again."""
        try:
            return cached_digest(self.state, path) is not None
        except OSError:
            return False

    def _settle_wait(self, files: list[tuple[str, int, int]], now: float) -> float:
        """Seconds until every file has been quiet for ``settle_seconds`` (0: ready now)."""
        verdicts = []
        for rel, size, mtime_ns in files:
            closed = rel in self._closed
            self._closed.discard(rel)
            seen = observe(
                self._seen.get(rel), size=size, mtime_ns=mtime_ns, now=now, closed=closed
            )
            self._seen[rel] = seen
            verdicts.append(
                assess(seen, Complete(), now=now, settle_seconds=self.settings.settle_seconds)
            )
        verdict = combine(verdicts)
        if isinstance(verdict, Ready):
            return 0.0
        if isinstance(verdict, Refused):  # cannot happen for Complete(); wait for a change
            return 1.0
        return verdict.wait_seconds if verdict.wait_seconds is not None else 1.0

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

    def _wake_at(self, when: float) -> None:
        with self._lock:
            heapq.heappush(self._wakeups, when)

    def _next_wakeup(self) -> float:
        with self._lock:
            return self._wakeups[0] if self._wakeups else float("inf")

    def _due_wakeups(self, now: float) -> bool:
        due = False
        with self._lock:
            while self._wakeups and self._wakeups[0] <= now:
                heapq.heappop(self._wakeups)
                due = True
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

"""The service: the drop folder's watcher, the main loop, signals, sd_notify and shutdown.

Every trigger (start, watcher hint, timer, periodic rescan, SIGHUP) runs the same ``reconcile``:
list and scan what changed (``folder_view``), let the reconciler decide per artifact what is
still to do (``looks``, ``reconciler``), and hand the work to the dispatcher's worker threads
(``dispatcher``). The state store, not the events, is the truth about what was done.
``dropzone scan`` runs the same code once (``once=True``) and waits for the work it started.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import structlog

from dropzone import __version__
from dropzone.config.settings import Settings
from dropzone.errors import StoppedError
from dropzone.fleet.wiring import Fleet
from dropzone.imports.follow import Followers, HashSlots
from dropzone.imports.progress import Progress
from dropzone.imports.trailing import TrailingCopy
from dropzone.scan.ignore import IgnoreRules
from dropzone.scan.partition import units_of
from dropzone.service._greeting import greet_hosts
from dropzone.service._hosts import connect_hosts
from dropzone.service._notify import Notifier
from dropzone.service.dependencies import Dependencies
from dropzone.service.dispatcher import Dispatcher
from dropzone.service.dropguard import DropGuard
from dropzone.service.folder_view import FolderView
from dropzone.service.folder_watch import FolderWatch
from dropzone.service.looks import Looker
from dropzone.service.reporter import PassSummary, Reporter
from dropzone.service.watcher import Change, ChangeKind, ChangeQueue
from dropzone.store.health import StoreHealth
from dropzone.store.state import HostRow, StateStore

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
# Weights this large are uploaded as soon as their writer closed them (``looks._upload_early``);
# a smaller artifact uploads in less time than the settle wait it could hide.
EARLY_UPLOAD_MIN_BYTES = 64 << 20


class Daemon:
    def __init__(
        self,
        settings: Settings,
        *,
        env: Mapping[str, str],
        once: bool = False,
        progress: Progress | None = None,
        endpoints: Mapping[str, str] | None = None,
    ) -> None:
        """``endpoints`` maps a host's URL to where it really answers: the bundled emulator's
        port for an ``emulator:`` host (its URL stays its identity in the store and events)."""
        self.settings = settings
        self.drop_dir = Path(settings.drop_dir).absolute()
        self.once = once
        self.state = StateStore.open(Path(settings.state_dir))
        self.health = StoreHealth(str(settings.state_dir))
        self.stop_event = threading.Event()
        self._stop_requested = False
        self.queue = ChangeQueue()
        self.rules = IgnoreRules(tuple(settings.ignore_patterns))
        self.watch = FolderWatch(
            self.drop_dir,
            DropGuard(self.drop_dir, self.state),
            self.queue,
            self.rules,
            watch_mode=settings.watch_mode,
            poll_interval=settings.poll_interval,
            once=once,
        )
        self.watch.check_drop_dir()
        self.view = FolderView(self.drop_dir, self.rules, stopping=self._stopping)
        self.hosts, self._http = connect_hosts(settings, endpoints)
        self.hash_slots = HashSlots(settings.max_parallel_hashes)
        self.followers = Followers(
            self.hash_slots,
            self.stop_event,
            self.drop_dir,
            write_back=any(h.placer is not None and h.placer.flushes_source for h in self.hosts),
            trails=self._trails,
        )
        self.notifier = Notifier(env)
        self.report = Reporter(self.drop_dir, self.state, progress=progress)
        self.summary: PassSummary = self.report.summary
        self.deps = Dependencies()  # which artifact's model is made from which (issue 12)
        self.dispatcher = Dispatcher(
            settings,
            state=self.state,
            hosts=self.hosts,
            followers=self.followers,
            progress=progress,
            summary=self.summary,
            health=self.health,
            stop=self.stop_event,
            deps=self.deps,
            drop_dir=self.drop_dir,
            once=once,
        )
        self.dispatcher.service = self
        self.looker = Looker(
            settings,
            view=self.view,
            state=self.state,
            hosts=self.hosts,
            dispatcher=self.dispatcher,
            followers=self.followers,
            report=self.report,
            deps=self.deps,
            once=once,
        )
        self._last_cost = 0.0
        self.fleet = Fleet(settings, self.state, env=env)  # metrics, hooks (issue 16)

    # -- what the dispatcher asks of the service ----------------------------------------

    def _trails(self, path: Path) -> list[TrailingCopy]:
        """The copies of a followed file to keep in same-host stores while it arrives."""
        trails = (h.placer.trail(path) for h in self.hosts if h.placer is not None)
        return [t for t in trails if t is not None]

    def unit_of(self, rel: str) -> str:
        return self.view.unit_of(rel)

    def trusted(self) -> bool:
        return self.watch.trusted()

    def after_job(self, rel: str) -> None:
        """The models made from ``rel``'s model may go now, or again: look at them."""
        for path in self.looker.look_at_dependents(rel):
            self.queue.put(Change(ChangeKind.CHANGED, path))

    def rescan(self) -> None:
        self.queue.put(Change(ChangeKind.RESCAN))
        self.queue.wake()

    # -- lifecycle ----------------------------------------------------------------------

    def request_stop(self) -> None:
        """Safe in a signal handler: only a flag and the queue's reentrant lock. Setting
        ``stop_event`` here could deadlock: the handler may interrupt the main thread while it
        holds that Event's (non-reentrant) lock inside ``wait``. The loop sets it instead."""
        self._stop_requested = True
        self.queue.wake()

    def request_rescan(self) -> None:
        self.queue.put(Change(ChangeKind.RESCAN))

    def run(self) -> int:
        """Watch and import until ``request_stop``; 0 on a clean stop."""
        mode = self.watch.start() if self.watch.trusted() else "waiting for the drop folder"
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

    def scan_once(self) -> PassSummary:
        """One pass: import what is ready now, wait for that work, report what is pending."""
        self.fleet.start()
        self._greet_hosts()
        # A file rewritten under a recorded digest needs a second look, and a host that failed
        # for now is tried again at its retry time: a few rounds, within a bounded wait.
        deadline = time.monotonic() + SCAN_RETRY_BUDGET_SECONDS
        for _ in range(SCAN_ROUNDS):
            self.reconcile(full=True)
            ran = self.dispatcher.wait_for_jobs()
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
                if self.watch.moved(STOP_WATCHER_SECONDS):
                    next_rescan = now  # the guard judges the folder; the watch restarts
            if self.watch.suspicious:
                next_rescan = min(next_rescan, now + GUARD_RECHECK_SECONDS)
            self.dispatcher.probe_due(now)
            wake = min(
                next_rescan,
                next_ping,
                next_folder_check,
                self.dispatcher.timers.next_wakeup(),
                self.dispatcher.probes.next_due(),
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
                self.looker.settled_at.clear()  # or lost events: judge everything afresh
            for change in changes:
                if change.path is None:
                    continue
                if change.kind is ChangeKind.CLOSED:
                    self.looker.quiet.closed(self.view.rel(change.path))
                units |= units_of(self.drop_dir, change.path)
            due, rejudge = self.dispatcher.timers.due(now)
            units |= due
            for rel in rejudge:
                self.looker.settled_at.pop(rel, None)
            gap = max(MIN_RECONCILE_SECONDS, RECONCILE_DUTY_FACTOR * self._last_cost)
            gap = min(gap, RECONCILE_GAP_MAX_SECONDS)
            if rescan_due or (units and now - last >= gap):
                self._reconcile(full=rescan_due, units=units)
                units = set()
                last = time.monotonic()
                if rescan_due:
                    next_rescan = last + every
            elif units:
                self.dispatcher.timers.wake_at(last + gap, next(iter(units)))
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
        self.watch.stop(STOP_WATCHER_SECONDS)
        self.followers.cancel_all()
        ended = self.dispatcher.shutdown(time.monotonic() + STOP_GRACE_SECONDS)
        for host in self.hosts:
            if host.placer is not None:  # early copies never wait in the store for a restart
                host.placer.discard_all("stopping")
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

    # -- one look -----------------------------------------------------------------------

    def reconcile(self, *, full: bool = False, units: Iterable[str] = ()) -> None:
        """Compare what the drop folder holds with what was done, and start what is missing.

        ``full`` looks at everything; otherwise only at ``units`` (see ``dropzone.scan.partition``).
        """
        started = time.monotonic()
        if full or self.watch.verdict is None or not self.watch.verdict.ok:
            if not self.watch.trusted():
                return  # not the recorded folder: look at nothing, act on nothing
            self.watch.ensure_watching()
            full = True
        try:
            affected, vanished = self.view.refresh(full=full, units=units)
        except StoppedError:
            return  # stopping: the look is abandoned, the next start looks again
        self.looker.early_upload_min_bytes = EARLY_UPLOAD_MIN_BYTES
        count, ready = self.looker.look(affected)
        if full or vanished:
            # An unmounted share looks like "everything was removed": only a trusted folder.
            self.looker.handle_removed(trusted=self.watch.trusted())
        self.followers.release(lambda p: not p.exists())
        for host in self.hosts:
            if host.placer is not None:  # a file changed as it settles: its early copy goes
                host.placer.discard_changed()
        self._last_cost = time.monotonic() - started
        if full:
            log.info(
                "scan.done",
                path=str(self.drop_dir),
                artifacts=count,
                ready=ready,
                seconds=round(self._last_cost, 3),
            )

    def _status_line(self) -> str:
        busy = len(self.dispatcher.busy())
        return (
            f"{len(self.summary.done)} imported, {len(self.summary.pending)} pending, "
            f"{len(self.summary.refused) + len(self.summary.failed)} refused or failed, "
            f"{busy} in progress"
        )

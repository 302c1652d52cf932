"""One look at the drop folder: gather the facts for each artifact, ask the reconciler what is
to happen, and carry out its actions (reports, followers, timers, work for the dispatcher).

Runs on the main loop only. Nothing here waits for I/O beyond the listing, the scan and the
store's reads; hashing, uploads, creates and deletes are the dispatcher's jobs.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import structlog

from dropzone.config.settings import Settings
from dropzone.errors import Problem
from dropzone.imports.follow import Followers
from dropzone.imports.hashing import cached_digest
from dropzone.imports.importer import Host
from dropzone.imports.policies import apply_on_removed
from dropzone.imports.readiness import QuietTracker
from dropzone.imports.steps import Recorded
from dropzone.recipes.claims import Claims
from dropzone.recipes.names import parse_name
from dropzone.recipes.recipe import build_recipes
from dropzone.recipes.sidecar import SidecarSpec, load_spec
from dropzone.recipes.types import Recipe
from dropzone.scan.scanner import Entry, ScannedArtifact, Status
from dropzone.service import reconciler as rc
from dropzone.service.dependencies import Dependencies
from dropzone.service.dispatcher import Dispatcher
from dropzone.service.folder_view import Files, FolderView, identities, sidecar_stat, signature
from dropzone.service.reporter import Reporter
from dropzone.store.state import HostState, StateStore, request_fingerprint

log = structlog.get_logger("dropzone.daemon")

WEIGHT_SUFFIXES = (".gguf", ".safetensors")


class Looker:
    def __init__(
        self,
        settings: Settings,
        *,
        view: FolderView,
        state: StateStore,
        hosts: list[Host],
        dispatcher: Dispatcher,
        followers: Followers,
        report: Reporter,
        deps: Dependencies,
        once: bool,
    ) -> None:
        self.settings = settings
        self.view = view
        self.state = state
        self.hosts = hosts
        self.dispatcher = dispatcher
        self.followers = followers
        self.report = report
        self.deps = deps
        self.once = once
        self.quiet = QuietTracker(settings.settle_seconds)
        self.claims = Claims()  # which artifact makes which model name
        # rel → the file stats it had when every host was found done with its request: an
        # artifact whose stats did not move since needs no sidecar read, recipe or query.
        self.settled_at: dict[str, tuple[object, ...]] = {}
        self.early_upload_min_bytes = 64 << 20  # the service sets its own (tests lower it)

    def look(self, affected: Iterable[str]) -> tuple[int, int]:
        """Judge every artifact of the ``affected`` units; returns (artifacts, ready)."""
        now = time.time()
        candidates: list[ScannedArtifact] = []
        ready: dict[Path, ScannedArtifact] = {}
        count = 0
        self.report.begin_scan()
        # One commit for the notes of a whole look (a folder of 100,000 files: not 100,000).
        with self.state.batch():
            for unit in sorted(affected):
                result, stats = self.view.unit(unit)
                for problem in result.problems:
                    self.report.refuse(
                        self.view.rel(Path(problem.path)), "artifact.invalid", [problem]
                    )
                for sa in result.artifacts:
                    count += 1
                    self._classify(
                        sa, stats, now=now, unit=unit, candidates=candidates, ready=ready
                    )
            self._start_ready(candidates, ready)
        self.report.end_scan()
        self.quiet.forget_except(self.view.live())
        return count, len(ready)

    def _policy(self) -> rc.Policy:
        return rc.Policy(
            require_sidecar=self.settings.require_sidecar,
            once=self.once,
            early_upload_min_bytes=self.early_upload_min_bytes,
            has_hosts=bool(self.hosts),
        )

    def _classify(
        self,
        sa: ScannedArtifact,
        stats: Mapping[str, Entry],
        *,
        now: float,
        unit: str,
        candidates: list[ScannedArtifact],
        ready: dict[Path, ScannedArtifact],
    ) -> None:
        """Sort one scanned artifact: refused, pending, unchanged since done, or ready."""
        self.report.detected(sa)
        rel = sa.rel_path
        files: Files = []
        seen = rc.Seen(sa.status)
        if sa.status is not Status.INVALID:
            files = [(p.path, stats[p.path].size, stats[p.path].mtime_ns) for p in sa.progress]
            files += sidecar_stat(sa, stats)
            unchanged = self.settled_at.get(rel) == signature(files, stats)
            weights = tuple(f for f in files if f[0].endswith(WEIGHT_SUFFIXES))
            seen = rc.Seen(
                sa.status,
                unchanged=unchanged,
                quiet_wait=0.0 if unchanged else self.quiet.wait_seconds(files, now),
                has_sidecar=sa.artifact.sidecar is not None,
                is_adapter=sa.artifact.is_adapter,
                weight_bytes=sum(size for _, size, _ in weights),
                weights_closed=all(self.quiet.closed_since_change(r) for r, _, _ in weights),
                sent_early=self.dispatcher.sent_early(rel, weights),
            )
        for action in rc.look(seen, self._policy()):
            if isinstance(action, rc.Refuse):
                self.settled_at.pop(rel, None)
                self.claims.release(rel)
                self.report.refuse(rel, action.event, list(sa.problems), str(sa.artifact.kind))
            elif isinstance(action, rc.Pending):
                candidates.append(sa)
                self.report.pending(sa, action.reason, wait=action.wait)
            elif isinstance(action, rc.Follow):
                self._follow(sa)
            elif isinstance(action, rc.Unfollow):
                self._unfollow(rel)
            elif isinstance(action, rc.Wait):
                self.dispatcher.timers.wake_at(time.monotonic() + action.seconds, unit)
            elif isinstance(action, rc.UploadEarly):
                self._upload_early(sa, files)
            elif isinstance(action, rc.Candidate):
                candidates.append(sa)
                ready[sa.artifact.path] = sa

    def _start_ready(
        self, candidates: list[ScannedArtifact], ready: Mapping[Path, ScannedArtifact]
    ) -> None:
        specs: dict[Path, SidecarSpec | list[Problem]] = {
            sa.artifact.path: load_spec(sa.artifact, drop_dir=self.view.drop_dir)
            for sa in candidates
            if sa.artifact.path in ready
        }
        recipes = build_recipes(
            [sa.artifact for sa in candidates if sa.artifact.path in ready],
            specs,
            drop_dir=self.view.drop_dir,
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
            self._gate(sa, outcome, expected, waiting)

    def _gate(
        self,
        sa: ScannedArtifact,
        outcome: Recipe | list[Problem],
        expected: Mapping[Path, int | None],
        waiting: set[Path],
    ) -> None:
        rel = sa.rel_path
        if isinstance(outcome, list):
            sidecar = str(sa.artifact.sidecar) if sa.artifact.sidecar else None
            event = (
                "sidecar.invalid"
                if sidecar and any(p.path == sidecar for p in outcome)
                else "artifact.invalid"
            )
            g = rc.Gate(
                refused=event, lone_adapter=sa.artifact.is_adapter and sa.artifact.sidecar is None
            )
        else:
            base = self.deps.provider(rel)
            refused = self.dispatcher.refused_identities(rel)
            g = rc.Gate(
                blocked=tuple(self.view.rel(p) for p in outcome.blob_paths() if p in waiting),
                base=base,
                base_done=base is None or self.dispatcher.base_done(base),
                in_flight=self.dispatcher.in_flight(rel),
                backing_off=self.dispatcher.backing_off(rel),
                touched_since_refused=refused is not None
                and refused != identities(sa, self.view.stats_of(rel)),
            )
        for action in rc.gate(g):
            if isinstance(action, rc.Unfollow):
                self._unfollow(rel)
            elif isinstance(action, rc.Pending):
                self.report.pending(sa, action.reason)
            elif isinstance(action, rc.Refuse) and isinstance(outcome, list):
                self.report.refuse(rel, action.event, outcome)
            elif isinstance(action, rc.Retry):
                # Touched (or rewritten) since the server refused it: the operator asks again.
                self.dispatcher.retried(rel)
                if self.state.clear_failures([rel]):
                    log.info("artifact.retry", path=str(sa.artifact.path), reason=action.reason)
            elif isinstance(action, rc.Candidate) and isinstance(outcome, Recipe):
                self._consider(sa, outcome, expected)

    def _consider(
        self, sa: ScannedArtifact, recipe: Recipe, expected: Mapping[Path, int | None]
    ) -> None:
        rel = sa.rel_path
        views = self._host_views(rel, recipe)
        for action in rc.hosts(views, time.time(), once=self.once):
            if isinstance(action, rc.Wait):
                unit = self.view.unit_of(rel)
                self.dispatcher.timers.wake_at(time.monotonic() + action.seconds, unit, rel)
            elif isinstance(action, rc.Probe):
                # The dispatcher probes the host from its host.down on (``Probes``); the row
                # says the work is held, once, so status and the metrics show it.
                unrecorded = any(v.host == action.host and v.recorded is None for v in views or ())
                if unrecorded:
                    self._held(rel, recipe, action.host)
            elif isinstance(action, rc.Settled):
                # Waiting is a timer (set above), never a job: the wake-up judges it afresh.
                self.report.summary.mark(rel, action.outcome)
                stats = self.view.stats_of(rel)
                files = [(p.path, stats[p.path].size, stats[p.path].mtime_ns) for p in sa.progress]
                self.settled_at[rel] = signature(files + sidecar_stat(sa, stats), stats)
            elif isinstance(action, rc.StartJob):
                self.report.clear(rel)
                self.settled_at.pop(rel, None)
                log.info("artifact.ready", path=str(sa.artifact.path), model=recipe.model)
                sharers = self.view.sharers(rel, recipe)
                self.dispatcher.start(sa, recipe, expected, sharers)

    def _held(self, rel: str, recipe: Recipe, host: str) -> None:
        self.state.set_host_state(
            rel,
            host,
            HostState.READY,
            model=recipe.model,
            error="the host is down: imported when it answers again (host.up)",
        )

    def _host_views(self, rel: str, recipe: Recipe) -> list[rc.HostView] | None:
        """Each host's row and today's request, judged from cached digests without HTTP: a
        restart over 10,000 imported files sends no HEADs. None: a digest is not cached."""
        digests: dict[Path, str] = {}
        for path in recipe.blob_paths():
            try:
                hit = cached_digest(self.state, path)
            except OSError:
                return None
            if hit is None:
                return None
            digests[path] = hit.digest
        request = recipe.request(digests)
        views = []
        for host in self.hosts:
            on_base = self.dispatcher.on_base(rel, recipe, host)
            row = self.state.host_state(rel, host.url)
            recorded = (
                None
                if row is None
                else Recorded(str(row.state), row.request_fingerprint, row.next_retry_at)
            )
            fingerprint = request_fingerprint(on_base.fingerprinted(request))
            views.append(rc.HostView(host.url, recorded, fingerprint, down=host.down))
        return views

    def _upload_early(self, sa: ScannedArtifact, files: Files) -> None:
        """Upload its closed weights while the settle wait runs (``Dispatcher.start_early``)."""
        weights = [f for f in sa.artifact.files if f.path.suffix in WEIGHT_SUFFIXES]
        signature = tuple(f for f in files if f[0].endswith(WEIGHT_SUFFIXES))
        self.dispatcher.start_early(sa, {f.path: f.seen_size for f in weights}, signature)

    def _claim(self, rel: str, recipe: Recipe) -> Recipe | list[Problem]:
        """Two artifacts in different units may claim one model name too: neither is made."""
        others = self.claims.claim(rel, recipe.model)
        if not others:
            return recipe
        name = parse_name(recipe.model).display_shortest()
        fix = "give each its own name with the model key of its sidecar"
        for other in others:
            self.settled_at.pop(other, None)
            self._unfollow(other)
            message = f"model name {name} is also claimed by {rel}: neither is created"
            problem = Problem(str(self.view.drop_dir / other), message, fix, key="model")
            self.report.refuse(other, "artifact.invalid", [problem])
        message = f"model name {name} is also claimed by {', '.join(others)}: neither is created"
        return [Problem(str(recipe.sidecar or recipe.artifact.path), message, fix, key="model")]

    def handle_removed(self, *, trusted: bool) -> None:
        """Artifacts the store knows that the folder no longer holds: forgotten, and their
        models dealt with as ``on_removed`` says (by the dispatcher: it talks to hosts)."""
        present = self.view.present()
        self.dispatcher.keep_early(present)
        if not trusted:
            return
        busy = self.dispatcher.busy()
        for row in self.state.artifacts():
            if row.path in present or row.path in busy:
                continue
            self.report.forget(row.path)
            self.claims.release(row.path)
            self.deps.forget(row.path)
            self.settled_at.pop(row.path, None)
            if self.once or self.settings.on_removed == "keep":
                apply_on_removed(self.settings.on_removed, row, self.hosts, self.state)
                continue
            self.dispatcher.start_removed(row)

    def look_at_dependents(self, rel: str) -> list[Path]:
        """After ``rel``'s work: the models made from its model may go now, or again."""
        paths = []
        for dependent in self.deps.dependents(rel):
            self.settled_at.pop(dependent, None)
            paths.append(self.view.drop_dir / dependent)
        return paths

    def _follow(self, sa: ScannedArtifact) -> None:
        for f in sa.artifact.files:
            if f.path.suffix in WEIGHT_SUFFIXES and not self._cached(f.path):
                self.followers.follow(f.path)

    def _unfollow(self, rel: str) -> None:
        """Free the followers (and hash slots) of an artifact that cannot become an import as
        it is: the files of ``rel``, or under it for a folder artifact."""
        root = self.view.drop_dir / rel
        self.followers.release(lambda p: p == root or p.is_relative_to(root))

    def _cached(self, path: Path) -> bool:
        """True when the file, as it is now, has a digest: an artifact settling because only
        its sidecar changed must not read its weights again."""
        try:
            return cached_digest(self.state, path) is not None
        except OSError:
            return False

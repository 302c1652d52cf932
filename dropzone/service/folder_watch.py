"""The drop folder as the service watches it: is it the recorded folder (``dropguard``), its
watcher (native events or polling), and a folder deleted or replaced while watched."""

from __future__ import annotations

from pathlib import Path

import structlog

from dropzone.errors import ConfigError
from dropzone.scan.ignore import IgnoreRules
from dropzone.service.dropguard import DropGuard, Verdict
from dropzone.service.watch_mode import WatchSetting
from dropzone.service.watcher import ChangeQueue, Watcher

log = structlog.get_logger("dropzone.daemon")


class FolderWatch:
    def __init__(
        self,
        drop_dir: Path,
        guard: DropGuard,
        queue: ChangeQueue,
        rules: IgnoreRules,
        *,
        watch_mode: WatchSetting,
        poll_interval: float,
        once: bool,
    ) -> None:
        self.drop_dir = drop_dir
        self.guard = guard
        self.queue = queue
        self.rules = rules
        self.watch_mode = watch_mode
        self.poll_interval = poll_interval
        self.once = once
        self.verdict: Verdict | None = None  # the last one logged
        self.watcher: Watcher | None = None

    def check_drop_dir(self) -> None:
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

    @property
    def suspicious(self) -> bool:
        """The last look found a folder that is not the recorded one."""
        return self.verdict is not None and not self.verdict.ok

    def trusted(self) -> bool:
        """Ask the guard whether the drop folder is the recorded one; say so when that
        changes (once, not at every look)."""
        verdict = self.guard.check()
        if verdict != self.verdict:
            if not verdict.ok:
                log.error(
                    "drop_dir.suspicious",
                    path=str(self.drop_dir),
                    error=verdict.reason,
                    fix=verdict.fix,
                )
            elif self.verdict is not None:
                log.info("drop_dir.ok", path=str(self.drop_dir))
        self.verdict = verdict
        return verdict.ok

    def start(self) -> str:
        self.watcher = Watcher(
            self.drop_dir,
            self.queue,
            setting=self.watch_mode,
            poll_interval=self.poll_interval,
            ignore=self._ignored,
        )
        mode = self.watcher.start()
        plan = self.watcher.plan
        assert plan is not None
        # One event: which mode and why. A warning when native events were wanted and could not
        # be had (polling reacts up to an interval later and reads every folder each time).
        (log.warning if plan.fallback else log.info)(
            "watcher.mode",
            path=str(self.drop_dir),
            mode=plan.mode,
            reason=plan.reason,
            fs_type=self.watcher.fs_type,
            poll_interval=plan.poll_interval or None,
        )
        return mode

    def ensure_watching(self) -> None:
        """A trusted folder is watched (``dropzone scan`` watches nothing)."""
        if self.watcher is None and not self.once:
            self.start()

    def moved(self, stop_seconds: float) -> bool:
        """Stop watching a drop folder that was deleted or replaced; the next full reconcile
        asks the guard and, once the folder is trusted again, watches the new one."""
        if self.watcher is None or not self.watcher.moved():
            return False
        log.warning(
            "watcher.lost",
            path=str(self.drop_dir),
            error="the drop folder was deleted or replaced while watched",
        )
        self.watcher.stop(stop_seconds)
        self.watcher = None
        return True

    def stop(self, seconds: float) -> None:
        if self.watcher is not None:
            self.watcher.stop(seconds)

    def _ignored(self, path: Path) -> bool:
        try:
            rel = path.relative_to(self.drop_dir).as_posix()
        except ValueError:
            return True
        return rel != "." and self.rules.is_ignored(rel)

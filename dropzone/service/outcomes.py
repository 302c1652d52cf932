"""A job's outcomes, one per host, turned into events, probes of hosts that went down, timers,
a backoff, a remembered refusal, and the ``on_success`` cleanup (the dispatcher's last step)."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from dropzone.imports.hashing import HashResult
from dropzone.imports.importer import Host, Outcome, Result
from dropzone.imports.policies import apply_on_success
from dropzone.recipes.types import Recipe
from dropzone.scan.scanner import ScannedArtifact
from dropzone.store.state import HostState

if TYPE_CHECKING:
    from dropzone.service.dispatcher import Dispatcher, Sharers

log = structlog.get_logger("dropzone.daemon")


def after_job(
    d: Dispatcher,
    sa: ScannedArtifact,
    recipe: Recipe,
    *,
    outcomes: list[tuple[Host, Outcome]],
    results: Mapping[Path, HashResult],
    sharers: Sharers,
) -> None:
    """A job's outcomes become events, timers, a backoff or a cleanup."""
    rel = sa.rel_path
    for host, outcome in outcomes:
        if outcome.result in (Result.DONE, Result.FAILED):
            log.log(
                20 if outcome.result is Result.DONE else 40,
                "artifact.done",
                path=str(sa.artifact.path),
                model=recipe.model,
                host=host.url,
                result=str(outcome.result),
                error=outcome.error,
                digests=sorted({r.digest for r in results.values()}),  # for hooks (issue 16)
            )
        if outcome.unreachable and not d.once and not host.down:
            # A scan has no probes: it retries. The daemon holds the host's work until a
            # probe sees it back: an outage costs one probe every few seconds, not N jobs.
            host.down = True
            d.probes.down(host)
            log.warning(
                "host.down",
                host=host.url,
                error=outcome.error,
                fix="its work waits; dropzone probes it every few seconds (host.up)",
            )
        if outcome.result is Result.RETRY and outcome.retry_at is not None:
            when = time.monotonic() + outcome.retry_at - time.time()
            d.timers.wake_at(when, d.service_.unit_of(rel))
        if outcome.result is Result.REHASH:
            # The server saw other bytes than the digest says: forget it, hash again, but
            # not at once: a mismatch that persists (a file rewritten in place all the
            # time, a proxy that alters bodies) must not loop hash + upload.
            for result in results.values():
                d.state.forget_digest(result.key)
            d.timers.back_off(rel)
    if any(o.result in (Result.FAILED, Result.RETRY) for _, o in outcomes):
        d.summary.mark(rel, "failed")
    if any(o.result is Result.FAILED for _, o in outcomes):
        keys = {r.key for r in results.values()}
        if recipe.sidecar_key is not None:
            keys.add(recipe.sidecar_key)
        d.refused[rel] = frozenset(keys)
    if all(o.result in (Result.DONE, Result.SKIPPED) for _, o in outcomes):
        d.timers.succeeded(rel)
        d.summary.mark(rel, "done")
        if any(o.result is Result.DONE for _, o in outcomes) and d.service_.trusted():
            apply_on_success(
                d.settings.on_success,
                recipe,
                {p: d.importer.current_key(r.key) for p, r in results.items()},
                rel=rel,
                drop_dir=d.drop_dir,
                state=d.state,
                needed_elsewhere=lambda path: _needed(d, path, sharers),
            )


def _needed(d: Dispatcher, path: Path, sharers: Sharers) -> bool:
    """True while another artifact that uses ``path`` is still there and not done on
    every host: its cleanup removes the file once it is done."""
    for other in sharers.get(path, []):
        if not os.path.lexists(other.artifact.path):
            continue  # cleaned (or removed) already
        rows = d.state.rows(path=other.rel_path)
        done = {r.host for r in rows if r.state is HostState.DONE}
        if not all(host.url in done for host in d.hosts):
            return True
    return False

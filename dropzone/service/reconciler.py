"""The reconciler: what is to happen next to one artifact, decided from what a look saw of the
drop folder, what the state store recorded, the work in flight and the time.

Pure: no I/O, no threads, no clock reads. The service gathers the facts (a listing, a scan, the
readiness tracker's verdict, the store's rows, the dispatcher's in-flight set and backoff, the
time) and carries out the actions returned, in order. Three decisions, as a look makes them:

- ``look``: from the folder alone (refused, pending and why, settled since, or a candidate);
- ``gate``: for a candidate whose recipe was built (or refused): may its work start now;
- ``hosts``: from the (artifact, host) rows: start the work, or nothing until when.

Waiting is always a timer (``Wait``) or a probe of a host that is down (``Probe``), never a job:
nothing here re-queues itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dropzone.imports.steps import Recorded, Step, next_step
from dropzone.scan.scanner import Status

NO_SIDECAR = "no sidecar (require_sidecar is true)"
LONE_ADAPTER = "adapter: used through a sidecar that names it"


# -- actions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pending:
    """Report the artifact as pending, with the reason (and the settle wait, when known)."""

    reason: str
    wait: float | None = None


@dataclass(frozen=True)
class Refuse:
    """Report the artifact as refused (the service has the problems) under ``event``."""

    event: str


@dataclass(frozen=True)
class Follow:
    """Hash its weights while they arrive."""


@dataclass(frozen=True)
class Unfollow:
    """It cannot become an import as it is: stop hashing it, free its hash slots."""


@dataclass(frozen=True)
class Wait:
    """Look again in ``seconds``; ``rejudge``: forget that it was found settled (a retry time
    has come, so "nothing to do since" no longer holds)."""

    seconds: float
    rejudge: bool = False


@dataclass(frozen=True)
class UploadEarly:
    """Upload its closed weights while the settle wait runs (never the create)."""


@dataclass(frozen=True)
class Candidate:
    """Complete and quiet: read its sidecar and build its recipe (then ``gate``)."""


@dataclass(frozen=True)
class Retry:
    """Clear its refusals: the operator touched its files since a server refused them."""

    reason: str


@dataclass(frozen=True)
class Probe:
    """The host does not answer: its work waits for the probe's ``host.up``."""

    host: str


@dataclass(frozen=True)
class StartJob:
    """Hash, upload and create. ``confirm``: hosts whose create may have been sent before a
    restart; the importer asks the server before sending it again."""

    confirm: tuple[str, ...] = ()


@dataclass(frozen=True)
class Settled:
    """Nothing to do with these files: ``done`` on every host, or ``failed`` (refused, or
    waiting for a retry time or a host)."""

    outcome: str


Action = (
    Pending
    | Refuse
    | Follow
    | Unfollow
    | Wait
    | UploadEarly
    | Candidate
    | Retry
    | Probe
    | StartJob
    | Settled
)


# -- inputs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    require_sidecar: bool = False
    once: bool = False  # ``dropzone scan``: no follower-free early uploads, no probes
    early_upload_min_bytes: int = 64 << 20
    has_hosts: bool = True


@dataclass(frozen=True)
class Seen:
    """What one look saw of an artifact."""

    status: Status
    unchanged: bool = False  # the same files as when it was last found settled
    quiet_wait: float = 0.0  # seconds until every file has been quiet for settle_seconds
    has_sidecar: bool = True
    is_adapter: bool = False
    weight_bytes: int = 0
    weights_closed: bool = False  # every weights file closed by its writer since its change
    sent_early: bool = False  # these weights, as they are, were uploaded early already


@dataclass(frozen=True)
class Gate:
    """A candidate after its sidecar was read and its recipe built (or refused)."""

    refused: str | None = None  # the event of a refused recipe
    lone_adapter: bool = False
    blocked: tuple[str, ...] = ()  # files its recipe needs that are not complete yet
    base: str | None = None  # the artifact that makes its base model, when dropzone does
    base_done: bool = True
    in_flight: bool = False
    backing_off: bool = False  # after a failure that is not the server's answer
    touched_since_refused: bool = False


@dataclass(frozen=True)
class HostView:
    """One (artifact, host) row as the plan reads it, with the request of today's files."""

    host: str
    recorded: Recorded | None
    fingerprint: str
    down: bool = False


# -- decisions --------------------------------------------------------------------------


def look(seen: Seen, policy: Policy) -> list[Action]:
    """From the folder alone: refused, pending (and why), unchanged since settled, or a
    candidate. A follower lives only while the artifact can still become an import."""
    if seen.status is Status.INVALID:
        return [Refuse("artifact.invalid"), Unfollow()]
    if seen.unchanged:
        return []
    lacks_sidecar = policy.require_sidecar and not seen.has_sidecar
    if seen.status is Status.INCOMPLETE:
        if seen.quiet_wait <= 0:
            # Incomplete and unchanged for settle_seconds: a copy that died half-way.
            return [Pending("incomplete"), Unfollow()]
        follow: Action = Unfollow() if lacks_sidecar else Follow()
        return [Pending("incomplete"), follow, Wait(seen.quiet_wait)]
    if seen.quiet_wait > 0:
        actions: list[Action] = [
            Pending("settling", wait=seen.quiet_wait),
            Unfollow() if lacks_sidecar else Follow(),
            Wait(seen.quiet_wait),
        ]
        if _early(seen, policy, lacks_sidecar):
            actions.append(UploadEarly())
        return actions
    if lacks_sidecar:
        return [Pending(NO_SIDECAR), Unfollow()]
    return [Candidate()]


def _early(seen: Seen, policy: Policy, lacks_sidecar: bool) -> bool:
    """Upload while the settle wait runs: big weights, closed by their writer, not yet sent."""
    if policy.once or seen.is_adapter or not policy.has_hosts or lacks_sidecar:
        return False
    return (
        seen.weight_bytes > 0
        and seen.weight_bytes >= policy.early_upload_min_bytes
        and seen.weights_closed
        and not seen.sent_early
    )


def gate(g: Gate) -> list[Action]:
    """May a candidate's work start now? Empty: not now, and nothing to report (in flight,
    or backing off with its wake-up set)."""
    if g.refused is not None:
        if g.lone_adapter:
            return [Unfollow(), Pending(LONE_ADAPTER)]
        return [Unfollow(), Refuse(g.refused)]
    if g.blocked:
        return [Pending("waiting for " + ", ".join(g.blocked))]
    if g.base is not None and not g.base_done:
        return [Pending(f"waiting for its base model, made from {g.base}")]
    if g.in_flight or g.backing_off:
        return []
    if g.touched_since_refused:
        return [Retry("touched"), Candidate()]
    return [Candidate()]


def hosts(views: Sequence[HostView] | None, now: float, *, once: bool = False) -> list[Action]:
    """From the rows: start the work, or say it is settled and when to look again.

    ``views`` is None when a digest of today's files is not cached: only hashing can tell
    the request, so the work starts. ``now``: seconds since the epoch, as the rows store."""
    if views is None:
        return [StartJob()]
    actions: list[Action] = []
    steps: set[Step] = set()
    confirm: list[str] = []
    for view in views:
        step = next_step(view.recorded, view.fingerprint, float("inf") if once else now)
        retry_at = view.recorded.next_retry_at if view.recorded is not None else None
        if step is Step.WAIT and retry_at is not None:
            actions.append(Wait(max(0.0, retry_at - now), rejudge=True))
        elif view.down and step is Step.GO and not once:
            # No timer: the probe's host.up wakes it. A timer at a retry time already past
            # would look again at once, and again, for as long as the host is down.
            step = Step.WAIT
            actions.append(Probe(view.host))
        if step is Step.GO and view.recorded is not None and view.recorded.state == "creating":
            confirm.append(view.host)
        steps.add(step)
    if Step.GO in steps:
        return [*actions, StartJob(tuple(confirm))]
    return [*actions, Settled("failed" if steps & {Step.REFUSED, Step.WAIT} else "done")]

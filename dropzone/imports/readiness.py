"""Is a file finished? Pure: observations and a clock reading in, a verdict out.

Ready = structurally complete (the format says every byte is there) AND quiet (size and mtime
unchanged for ``settle_seconds``). A close-after-write event may shorten the quiet wait; it never
replaces the structural check. All times are seconds on one wall clock (``time.time``), because
on the first sighting the file's mtime is the only evidence of when it last changed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum

# After a close-after-write, a complete file need only stay unchanged this long: enough for a
# writer that closes and reopens to append again (chunked uploads) to show itself.
CLOSE_GRACE_SECONDS = 1.0


@dataclass(frozen=True)
class Complete:
    """Every byte the format promises is there."""


@dataclass(frozen=True)
class Incomplete:
    have: int
    expected: int | None  # None when the format cannot say yet (e.g. a shard is missing)


@dataclass(frozen=True)
class Invalid:
    reason: str


Structure = Complete | Incomplete | Invalid


@dataclass(frozen=True)
class Seen:
    """What is known of one file across observations."""

    size: int
    mtime_ns: int
    first_seen: float
    last_change: float  # when size or mtime last changed (estimated from mtime at first)
    closed_at: float | None = None  # a close-after-write event arrived at this time

    @property
    def closed_after_write(self) -> bool:
        """The writer closed the file after its last change."""
        return self.closed_at is not None and self.closed_at >= self.last_change


def observe(
    previous: Seen | None, *, size: int, mtime_ns: int, now: float, closed: bool = False
) -> Seen:
    """Fold one ``stat`` (and whether a close-after-write event came with it) into ``Seen``."""
    if previous is None:
        # Unseen so far: the mtime says when it last changed, but never later than now (a
        # clock-skewed NFS server may stamp the future).
        seen = Seen(size, mtime_ns, first_seen=now, last_change=min(now, mtime_ns / 1e9))
    elif (size, mtime_ns) != (previous.size, previous.mtime_ns):
        # A change is dated by our own clock: a skewed mtime must not make a live copy look old.
        seen = replace(previous, size=size, mtime_ns=mtime_ns, last_change=now, closed_at=None)
    else:
        seen = previous
    return replace(seen, closed_at=now) if closed else seen


class PendingReason(StrEnum):
    INCOMPLETE = "incomplete"  # the format says bytes (or shards) are missing
    SETTLING = "settling"  # complete, but changed less than settle_seconds ago


@dataclass(frozen=True)
class Ready:
    size: int


@dataclass(frozen=True)
class Pending:
    reason: PendingReason
    have: int
    expected: int | None
    wait_seconds: float | None  # look again after this long; None: when the file changes


@dataclass(frozen=True)
class Refused:
    reason: str


Verdict = Ready | Pending | Refused


def assess(
    seen: Seen,
    structure: Structure,
    *,
    now: float,
    settle_seconds: float,
    close_grace_seconds: float | None = None,  # CLOSE_GRACE_SECONDS, read at each call
) -> Verdict:
    """The verdict for one file."""
    if isinstance(structure, Invalid):
        return Refused(structure.reason)
    if isinstance(structure, Incomplete):
        # Not retried on a timer: only a change to the file (an event, a rescan) can help.
        return Pending(PendingReason.INCOMPLETE, structure.have, structure.expected, None)
    needed = settle_seconds
    if seen.closed_after_write:
        grace = CLOSE_GRACE_SECONDS if close_grace_seconds is None else close_grace_seconds
        needed = min(settle_seconds, grace)
    quiet = max(0.0, now - seen.last_change)
    if quiet >= needed:
        return Ready(seen.size)
    return Pending(PendingReason.SETTLING, seen.size, seen.size, needed - quiet)


def combine(verdicts: Iterable[Verdict]) -> Verdict:
    """One verdict for an artifact of several files (shards, a safetensors folder).

    Refused if any file is (reasons joined); else pending if any is (incomplete wins over
    settling, bytes summed, the longest wait); else ready with the total size.
    """
    items = list(verdicts)
    refused = [v.reason for v in items if isinstance(v, Refused)]
    if refused:
        return Refused("; ".join(refused))
    counts = [
        (v.size, v.size) if isinstance(v, Ready) else (v.have, v.expected)
        for v in items
        if not isinstance(v, Refused)
    ]
    pending = [v for v in items if isinstance(v, Pending)]
    if not pending:
        return Ready(sum(have for have, _ in counts))
    have = sum(h for h, _ in counts)
    expecteds = [e for _, e in counts]
    expected = sum(e for e in expecteds if e is not None) if None not in expecteds else None
    if any(v.reason is PendingReason.INCOMPLETE for v in pending):
        return Pending(PendingReason.INCOMPLETE, have, expected, None)
    waits = [v.wait_seconds for v in pending if v.wait_seconds is not None]
    return Pending(PendingReason.SETTLING, have, expected, max(waits, default=None))


class QuietTracker:
    """What each file's stats showed across reconciles, and which files a writer closed:
    the one piece of readiness that must remember. Times are ``time.time()`` seconds."""

    def __init__(self, settle_seconds: float) -> None:
        self._settle = settle_seconds
        self._seen: dict[str, Seen] = {}
        self._closed: set[str] = set()

    def closed(self, rel: str) -> None:
        """A close-after-write event arrived for ``rel``."""
        self._closed.add(rel)

    def wait_seconds(self, files: Iterable[tuple[str, int, int]], now: float) -> float:
        """Seconds until every ``(rel, size, mtime_ns)`` has been quiet long enough; 0: now."""
        verdicts: list[Verdict] = []
        for rel, size, mtime_ns in files:
            closed = rel in self._closed
            self._closed.discard(rel)
            seen = observe(
                self._seen.get(rel), size=size, mtime_ns=mtime_ns, now=now, closed=closed
            )
            self._seen[rel] = seen
            verdicts.append(assess(seen, Complete(), now=now, settle_seconds=self._settle))
        verdict = combine(verdicts)
        if isinstance(verdict, Ready):
            return 0.0
        if isinstance(verdict, Pending) and verdict.wait_seconds is not None:
            return verdict.wait_seconds
        return 1.0  # cannot happen for Complete(): look again soon

    def closed_since_change(self, rel: str) -> bool:
        """The writer of ``rel`` closed it after its last change seen by ``wait_seconds``."""
        seen = self._seen.get(rel)
        return seen is not None and seen.closed_after_write

    def forget_except(self, live: set[str]) -> None:
        for rel in set(self._seen) - live:
            del self._seen[rel]

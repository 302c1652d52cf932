"""Readiness: pure tables over observations and a clock that the tests move."""

from __future__ import annotations

import pytest

from dropzone.imports.readiness import (
    Complete,
    Incomplete,
    Invalid,
    Pending,
    PendingReason,
    QuietTracker,
    Ready,
    Refused,
    Seen,
    Structure,
    Verdict,
    assess,
    combine,
    observe,
)

T0 = 1_700_000_000.0  # "now" at the first sighting
NS = 1_000_000_000
SETTLE = 5.0


def seen_at(mtime: float, *, size: int = 100, now: float = T0) -> Seen:
    return observe(None, size=size, mtime_ns=int(mtime * NS), now=now)


@pytest.mark.parametrize(
    ("mtime", "expected_last_change"),
    [
        (T0 - 3600, T0 - 3600),  # an old file: quiet since its mtime
        (T0 - 2, T0 - 2),
        (T0 + 3600, T0),  # an mtime in the future (clock skew) counts as "just now"
    ],
)
def test_first_sighting_dates_the_last_change_from_mtime_but_never_later_than_now(
    mtime: float, expected_last_change: float
) -> None:
    seen = seen_at(mtime)
    assert (seen.first_seen, seen.last_change) == (T0, expected_last_change)
    assert not seen.closed_after_write


def test_a_change_in_size_or_mtime_is_dated_by_the_clock_not_the_mtime() -> None:
    seen = seen_at(T0 - 3600)
    grown = observe(seen, size=200, mtime_ns=int((T0 - 3600) * NS), now=T0 + 10)
    touched = observe(seen, size=100, mtime_ns=int((T0 - 100) * NS), now=T0 + 20)
    same = observe(seen, size=100, mtime_ns=seen.mtime_ns, now=T0 + 30)
    assert grown.last_change == T0 + 10 and grown.size == 200
    assert touched.last_change == T0 + 20
    assert same == seen  # nothing changed: the quiet period keeps running


def test_a_close_counts_only_until_the_next_change() -> None:
    seen = seen_at(T0)
    closed = observe(seen, size=100, mtime_ns=seen.mtime_ns, now=T0 + 1, closed=True)
    assert closed.closed_after_write
    reopened = observe(closed, size=150, mtime_ns=seen.mtime_ns + 1, now=T0 + 2)
    assert not reopened.closed_after_write
    # A change and its close seen in the same look: the close came after the write.
    both = observe(seen, size=200, mtime_ns=seen.mtime_ns + 5, now=T0 + 3, closed=True)
    assert both.closed_after_write and both.last_change == T0 + 3


COMPLETE = Complete()


@pytest.mark.parametrize(
    ("seen", "structure", "now", "verdict"),
    [
        # Complete and quiet long enough.
        (seen_at(T0 - 60), COMPLETE, T0, Ready(100)),
        (seen_at(T0 - SETTLE), COMPLETE, T0, Ready(100)),
        # Complete but changed recently: wait for the rest of the quiet period.
        (seen_at(T0 - 2), COMPLETE, T0, Pending(PendingReason.SETTLING, 100, 100, 3.0)),
        (seen_at(T0), COMPLETE, T0, Pending(PendingReason.SETTLING, 100, 100, SETTLE)),
        (seen_at(T0), COMPLETE, T0 + 4.5, Pending(PendingReason.SETTLING, 100, 100, 0.5)),
        (seen_at(T0), COMPLETE, T0 + 5, Ready(100)),
        # Incomplete: however long it has been quiet, it is never ready; no timed retry.
        (seen_at(T0 - 86400), Incomplete(100, 1000), T0, Pending(
            PendingReason.INCOMPLETE, 100, 1000, None)),
        (seen_at(T0), Incomplete(100, None), T0, Pending(
            PendingReason.INCOMPLETE, 100, None, None)),
        # Invalid: refused with the reason, whatever the timing.
        (seen_at(T0), Invalid("bad magic b'GGUX'"), T0, Refused("bad magic b'GGUX'")),
        # A clock that went backwards never makes a negative quiet period.
        (seen_at(T0), COMPLETE, T0 - 10, Pending(PendingReason.SETTLING, 100, 100, SETTLE)),
    ],
)  # fmt: skip
def test_assess_is_ready_only_when_complete_and_quiet(
    seen: Seen, structure: Structure, now: float, verdict: Verdict
) -> None:
    assert assess(seen, structure, now=now, settle_seconds=SETTLE) == verdict


@pytest.mark.parametrize(
    ("structure", "after_close", "verdict"),
    [
        # A close-after-write shortens the wait to the grace period...
        (COMPLETE, 1.0, Ready(100)),
        (COMPLETE, 0.25, Pending(PendingReason.SETTLING, 100, 100, 0.75)),
        # ...but never replaces the structural check.
        (Incomplete(100, 1000), 60.0, Pending(PendingReason.INCOMPLETE, 100, 1000, None)),
        (Invalid("truncated header"), 60.0, Refused("truncated header")),
    ],
)
def test_close_after_write_shortens_the_quiet_wait_only(
    structure: Structure, after_close: float, verdict: Verdict
) -> None:
    seen = observe(seen_at(T0), size=100, mtime_ns=int(T0 * NS), now=T0, closed=True)
    assert seen.closed_after_write
    now = T0 + after_close
    assert assess(seen, structure, now=now, settle_seconds=SETTLE) == verdict


def test_a_close_never_lengthens_a_shorter_settle_period() -> None:
    seen = observe(seen_at(T0), size=100, mtime_ns=int(T0 * NS), now=T0, closed=True)
    assert assess(seen, COMPLETE, now=T0 + 0.25, settle_seconds=0.25) == Ready(100)
    assert assess(seen_at(T0), COMPLETE, now=T0, settle_seconds=0) == Ready(100)


def test_a_copy_followed_look_by_look_becomes_ready_settle_seconds_after_it_stops() -> None:
    structure_at = {100: Incomplete(100, 300), 200: Incomplete(200, 300), 300: COMPLETE}
    seen: Seen | None = None
    verdicts = []
    for now, size in [(T0, 100), (T0 + 1, 200), (T0 + 2, 300), (T0 + 4, 300), (T0 + 7, 300)]:
        seen = observe(seen, size=size, mtime_ns=int(min(now, T0 + 2) * NS), now=now)
        verdicts.append(assess(seen, structure_at[size], now=now, settle_seconds=SETTLE))
    assert verdicts == [
        Pending(PendingReason.INCOMPLETE, 100, 300, None),
        Pending(PendingReason.INCOMPLETE, 200, 300, None),
        Pending(PendingReason.SETTLING, 300, 300, 5.0),
        Pending(PendingReason.SETTLING, 300, 300, 3.0),
        Ready(300),
    ]


@pytest.mark.parametrize(
    ("verdicts", "combined"),
    [
        ([Ready(10), Ready(20)], Ready(30)),
        ([], Ready(0)),
        ([Ready(10), Pending(PendingReason.SETTLING, 20, 20, 2.0),
          Pending(PendingReason.SETTLING, 5, 5, 4.0)],
         Pending(PendingReason.SETTLING, 35, 35, 4.0)),
        ([Ready(10), Pending(PendingReason.INCOMPLETE, 5, 20, None),
          Pending(PendingReason.SETTLING, 5, 5, 4.0)],
         Pending(PendingReason.INCOMPLETE, 20, 35, None)),
        ([Ready(10), Pending(PendingReason.INCOMPLETE, 0, None, None)],
         Pending(PendingReason.INCOMPLETE, 10, None, None)),
        ([Ready(10), Refused("a"), Pending(PendingReason.INCOMPLETE, 1, 2, None), Refused("b")],
         Refused("a; b")),
    ],
)  # fmt: skip
def test_an_artifact_is_as_ready_as_its_least_ready_file(
    verdicts: list[Verdict], combined: Verdict
) -> None:
    assert combine(verdicts) == combined


def test_quiet_tracker_waits_out_the_settle_period_and_a_close_shortens_it() -> None:
    tracker = QuietTracker(settle_seconds=5)
    # First sighting: the mtime says it changed 1 s ago.
    assert tracker.wait_seconds([("a", 10, int(99e9))], now=100.0) == 4.0
    # It grew: the clock restarts from now.
    assert tracker.wait_seconds([("a", 20, int(101e9))], now=101.0) == 5.0
    assert tracker.wait_seconds([("a", 20, int(101e9))], now=106.0) == 0.0
    # A writer closed it right after a change: one second is enough.
    assert tracker.wait_seconds([("a", 30, int(107e9))], now=107.0) == 5.0
    tracker.closed("a")
    assert tracker.wait_seconds([("a", 30, int(107e9))], now=107.5) == 0.5
    assert tracker.wait_seconds([("a", 30, int(107e9))], now=108.0) == 0.0


def test_quiet_tracker_forgets_files_that_are_gone() -> None:
    tracker = QuietTracker(settle_seconds=5)
    tracker.wait_seconds([("a", 1, 0), ("b", 1, 0)], now=100.0)
    tracker.forget_except({"a"})
    # b is new again: judged from its mtime only.
    assert tracker.wait_seconds([("b", 1, int(99e9))], now=100.0) == 4.0

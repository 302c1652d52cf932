"""The reconciler's decisions as tables: (situation → expected actions)."""

from __future__ import annotations

import pytest

from dropzone.imports.steps import Recorded
from dropzone.scan.scanner import Status
from dropzone.service.reconciler import (
    LONE_ADAPTER,
    NO_SIDECAR,
    Action,
    Candidate,
    Follow,
    Gate,
    HostView,
    Pending,
    Policy,
    Probe,
    Refuse,
    Retry,
    Seen,
    Settled,
    StartJob,
    Unfollow,
    UploadEarly,
    Wait,
    gate,
    hosts,
    look,
)

NOW = 1_700_000_000.0
FP = "sha256:request"
H1, H2 = "http://gpu1:11434", "http://gpu2:11434"
BIG = 1 << 30

COMPLETE, INCOMPLETE, INVALID = Status.COMPLETE, Status.INCOMPLETE, Status.INVALID
DEFAULT = Policy()
STRICT = Policy(require_sidecar=True)

LOOKS: list[tuple[str, Seen, Policy, list[Action]]] = [
    (
        "invalid: refused, not followed",
        Seen(INVALID),
        DEFAULT,
        [Refuse("artifact.invalid"), Unfollow()],
    ),
    ("unchanged since settled: nothing", Seen(COMPLETE, unchanged=True), DEFAULT, []),
    (
        "incomplete, still growing: followed, looked at again",
        Seen(INCOMPLETE, quiet_wait=3.0),
        DEFAULT,
        [Pending("incomplete"), Follow(), Wait(3.0)],
    ),
    (
        "incomplete and quiet: a truncated leftover, not followed",
        Seen(INCOMPLETE, quiet_wait=0.0),
        DEFAULT,
        [Pending("incomplete"), Unfollow()],
    ),
    (
        "incomplete without the sidecar require_sidecar wants: not followed",
        Seen(INCOMPLETE, quiet_wait=3.0, has_sidecar=False),
        STRICT,
        [Pending("incomplete"), Unfollow(), Wait(3.0)],
    ),
    (
        "settling: followed, woken when quiet",
        Seen(COMPLETE, quiet_wait=1.5),
        DEFAULT,
        [Pending("settling", wait=1.5), Follow(), Wait(1.5)],
    ),
    (
        "settling, big closed weights: uploaded early",
        Seen(COMPLETE, quiet_wait=1.5, weight_bytes=BIG, weights_closed=True),
        DEFAULT,
        [Pending("settling", wait=1.5), Follow(), Wait(1.5), UploadEarly()],
    ),
    (
        "settling, weights still open: no early upload",
        Seen(COMPLETE, quiet_wait=1.5, weight_bytes=BIG),
        DEFAULT,
        [Pending("settling", wait=1.5), Follow(), Wait(1.5)],
    ),
    (
        "settling, sent early already: not again",
        Seen(COMPLETE, quiet_wait=1.5, weight_bytes=BIG, weights_closed=True, sent_early=True),
        DEFAULT,
        [Pending("settling", wait=1.5), Follow(), Wait(1.5)],
    ),
    (
        "settling during dropzone scan: no early upload",
        Seen(COMPLETE, quiet_wait=1.5, weight_bytes=BIG, weights_closed=True),
        Policy(once=True),
        [Pending("settling", wait=1.5), Follow(), Wait(1.5)],
    ),
    (
        "settling adapter: no early upload",
        Seen(COMPLETE, quiet_wait=1.5, weight_bytes=BIG, weights_closed=True, is_adapter=True),
        DEFAULT,
        [Pending("settling", wait=1.5), Follow(), Wait(1.5)],
    ),
    (
        "quiet, no sidecar under require_sidecar: pending, not followed",
        Seen(COMPLETE, has_sidecar=False),
        STRICT,
        [Pending(NO_SIDECAR), Unfollow()],
    ),
    ("quiet and complete: a candidate", Seen(COMPLETE), DEFAULT, [Candidate()]),
    ("quiet, no sidecar, none required", Seen(COMPLETE, has_sidecar=False), DEFAULT, [Candidate()]),
]


@pytest.mark.parametrize(
    ("seen", "policy", "expected"), [r[1:] for r in LOOKS], ids=[r[0] for r in LOOKS]
)
def test_look(seen: Seen, policy: Policy, expected: list[Action]) -> None:
    assert look(seen, policy) == expected


GATES: list[tuple[str, Gate, list[Action]]] = [
    (
        "sidecar refused: refused, not followed",
        Gate(refused="sidecar.invalid"),
        [Unfollow(), Refuse("sidecar.invalid")],
    ),
    (
        "adapter alone: pending",
        Gate(refused="artifact.invalid", lone_adapter=True),
        [Unfollow(), Pending(LONE_ADAPTER)],
    ),
    (
        "a shard it names is still arriving",
        Gate(blocked=("m-00002-of-00002.gguf",)),
        [Pending("waiting for m-00002-of-00002.gguf")],
    ),
    (
        "dependent waits for its base",
        Gate(base="base.gguf", base_done=False),
        [Pending("waiting for its base model, made from base.gguf")],
    ),
    ("dependent whose base is done", Gate(base="base.gguf", base_done=True), [Candidate()]),
    ("already in flight: nothing", Gate(in_flight=True), []),
    ("backing off after a digest mismatch: nothing until its wake-up", Gate(backing_off=True), []),
    (
        "refused, then touched: retried",
        Gate(touched_since_refused=True),
        [Retry("touched"), Candidate()],
    ),
    ("nothing in the way", Gate(), [Candidate()]),
]


@pytest.mark.parametrize(("g", "expected"), [r[1:] for r in GATES], ids=[r[0] for r in GATES])
def test_gate(g: Gate, expected: list[Action]) -> None:
    assert gate(g) == expected


def row(state: str, fingerprint: str = FP, retry_at: float | None = None) -> Recorded:
    return Recorded(state, fingerprint, retry_at)


HOSTS: list[tuple[str, list[HostView] | None, bool, list[Action]]] = [
    ("digests not cached: hash to know the request", None, False, [StartJob()]),
    ("never tried", [HostView(H1, None, FP)], False, [StartJob()]),
    ("done with this request: nothing", [HostView(H1, row("done"), FP)], False, [Settled("done")]),
    (
        "done with another request: again",
        [HostView(H1, row("done", "sha256:old"), FP)],
        False,
        [StartJob()],
    ),
    (
        "host in backoff: nothing until next_retry_at",
        [HostView(H1, row("waiting", retry_at=NOW + 40), FP)],
        False,
        [Wait(40.0, rejudge=True), Settled("failed")],
    ),
    (
        "its retry time has come",
        [HostView(H1, row("waiting", retry_at=NOW - 1), FP)],
        False,
        [StartJob()],
    ),
    (
        "refused: nothing until retried or touched",
        [HostView(H1, row("refused"), FP)],
        False,
        [Settled("failed")],
    ),
    (
        "refused, then retried (row pending, no fingerprint)",
        [HostView(H1, row("pending", None), FP)],
        False,
        [StartJob()],
    ),
    (
        "old schema failed row with a retry time",
        [HostView(H1, row("failed", retry_at=NOW + 5), FP)],
        False,
        [Wait(5.0, rejudge=True), Settled("failed")],
    ),
    (
        "host down: no timer, its probe wakes it",
        [HostView(H1, None, FP, down=True)],
        False,
        [Probe(H1), Settled("failed")],
    ),
    (
        "host down during dropzone scan: tried",
        [HostView(H1, None, FP, down=True)],
        True,
        [StartJob()],
    ),
    (
        "waiting during dropzone scan: retried within its run",
        [HostView(H1, row("waiting", retry_at=NOW + 40), FP)],
        True,
        [StartJob()],
    ),
    (
        "creating after a restart: the server is asked first",
        [HostView(H1, row("creating"), FP), HostView(H2, row("done"), FP)],
        False,
        [StartJob(confirm=(H1,))],
    ),
    (
        "one host done, one waiting: nothing until its retry",
        [HostView(H1, row("done"), FP), HostView(H2, row("waiting", retry_at=NOW + 8), FP)],
        False,
        [Wait(8.0, rejudge=True), Settled("failed")],
    ),
    (
        "one host waiting, one new: the work goes (the waiting one keeps its timer)",
        [HostView(H1, row("waiting", retry_at=NOW + 8), FP), HostView(H2, None, FP)],
        False,
        [Wait(8.0, rejudge=True), StartJob()],
    ),
]


@pytest.mark.parametrize(
    ("views", "once", "expected"), [r[1:] for r in HOSTS], ids=[r[0] for r in HOSTS]
)
def test_hosts(views: list[HostView] | None, once: bool, expected: list[Action]) -> None:
    assert hosts(views, NOW, once=once) == expected

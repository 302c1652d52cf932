"""When hosts that did not answer are probed again: soon, then backing off to a cap."""

from __future__ import annotations

from dataclasses import dataclass

from dropzone.ollama.probes import PROBE_FIRST_SECONDS, PROBE_MAX_SECONDS, Probes


@dataclass
class FakeHost:
    url: str


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_down_host_is_probed_after_the_first_interval_then_backs_off_to_the_cap() -> None:
    clock = Clock()
    probes = Probes(clock)
    host = FakeHost("http://a")
    probes.down(host)
    assert probes.due(clock.now) == []
    assert probes.next_due() == clock.now + PROBE_FIRST_SECONDS
    gaps = []
    for _ in range(8):
        clock.now = probes.next_due()
        assert probes.due(clock.now) == [host]
        assert probes.due(clock.now) == [], "one probe at a time"
        assert probes.next_due() == float("inf")
        probes.failed(host)
        gaps.append(probes.next_due() - clock.now)
    assert gaps[:3] == [2 * PROBE_FIRST_SECONDS, 4 * PROBE_FIRST_SECONDS, 8 * PROBE_FIRST_SECONDS]
    assert max(gaps) == PROBE_MAX_SECONDS


def test_a_host_that_answers_is_no_longer_probed_and_a_second_down_changes_nothing() -> None:
    clock = Clock()
    probes = Probes(clock)
    host = FakeHost("http://b")
    probes.down(host)
    first = probes.next_due()
    clock.now += 1
    probes.down(host)  # another failed request meanwhile: the schedule stays
    assert probes.next_due() == first
    probes.up(host)
    assert probes.next_due() == float("inf")
    assert probes.due(clock.now + 1000) == []

"""Issue 15: a file still arriving says so every ``progress_seconds`` (JSON) or on a live line
(terminal); the Reporter drives it from the daemon's looks, with the clock injected."""

from __future__ import annotations

import io
from pathlib import Path

from structlog.testing import capture_logs

from dropzone.formats.completeness import Expected
from dropzone.imports.progress import Progress, render_arrival
from dropzone.recipes.types import Artifact, ArtifactFile, ArtifactKind
from dropzone.scan.values import FileProgress, ScannedArtifact, Status
from dropzone.service.reporter import Reporter

DROP = Path("/srv/drop")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def arriving(have: int, expected: int | None = 1000, name: str = "big.gguf") -> ScannedArtifact:
    path = DROP / name
    artifact = Artifact(ArtifactKind.GGUF, path, (ArtifactFile(name, path),))
    size = Expected(expected) if expected is not None else None
    return ScannedArtifact(artifact, Status.INCOMPLETE, name, (FileProgress(name, have, size),))


def test_an_arriving_artifact_is_an_event_every_interval_with_bytes_rate_and_expected() -> None:
    clock = Clock()
    report = Reporter(DROP, progress=Progress(None, interval=10, clock=clock))
    with capture_logs() as logs:
        for second in range(1, 32):  # the daemon looks once a second; 10 MB arrive each second
            clock.now = float(second)
            report.pending(arriving(second * 10_000_000, 10**9), "incomplete")
    events = [e for e in logs if e["event"] == "artifact.arriving"]
    assert [(e["bytes"], e["expected_bytes"], e["rate_mb_s"]) for e in events] == [
        (110_000_000, 10**9, 10.0),
        (210_000_000, 10**9, 10.0),
        (310_000_000, 10**9, 10.0),
    ]
    assert {e["path"] for e in events} == {str(DROP / "big.gguf")}
    assert [e["event"] for e in logs].count("artifact.pending") == 1  # told once, as before


def test_without_a_header_the_expected_size_is_left_out() -> None:
    clock = Clock()
    report = Reporter(DROP, progress=Progress(None, interval=10, clock=clock))
    with capture_logs() as logs:
        for second in (1, 11):
            clock.now = float(second)
            report.pending(arriving(second * 100, None), "incomplete")
    (event,) = [e for e in logs if e["event"] == "artifact.arriving"]
    assert event["bytes"] == 1100 and "expected_bytes" not in event


def test_an_empty_file_is_not_arriving_until_it_grows() -> None:
    # 100,000 empty *.gguf files: no progress item (about 1 KiB) for each.
    clock = Clock()
    progress = Progress(None, interval=10, clock=clock)
    report = Reporter(DROP, progress=progress)
    with capture_logs() as logs:
        for second in (0, 10, 20):
            clock.now = float(second)
            report.pending(arriving(0), "incomplete")
    assert not [e for e in logs if e["event"] == "artifact.arriving"]
    assert not report._arriving


def test_a_settling_file_that_stopped_growing_is_no_longer_arriving() -> None:
    clock = Clock()
    report = Reporter(DROP, progress=Progress(None, interval=10, clock=clock))
    with capture_logs() as logs:
        report.pending(arriving(10), "incomplete")
        clock.now = 5.0
        report.pending(arriving(1000), "settling", wait=5)  # grew: still arriving
        for second in (10, 20, 30):
            clock.now = float(second)
            report.pending(arriving(1000), "settling", wait=1)  # unchanged: done arriving
    assert [e["bytes"] for e in logs if e["event"] == "artifact.arriving"] == []


def test_on_a_terminal_an_arriving_file_is_a_live_line_cleared_when_it_is_taken() -> None:
    clock = Clock()
    terminal = io.StringIO()
    report = Reporter(DROP, progress=Progress(terminal, interval=10, clock=clock))
    with capture_logs() as logs:
        report.pending(arriving(1, 2_000_000_000), "incomplete")
        clock.now = 2.0
        report.pending(arriving(1_000_000_000, 2_000_000_000), "incomplete")
        report.clear("big.gguf")  # complete: work starts
    assert not [e for e in logs if e["event"] == "artifact.arriving"]
    frames = terminal.getvalue().split("\r\x1b[K")
    assert "arriving big.gguf" in frames[1] and "50%" in frames[1] and "500.0 MB/s" in frames[1]
    assert frames[-1] == ""


def test_an_arrival_line_shows_bytes_rate_and_the_expected_size_when_known() -> None:
    # The rate counts only what arrived while watched (``start`` bytes were there before).
    assert render_arrival("arriving x", 1_500_000_000, None, 3.0) == (
        "arriving x 1.50 GB 500.0 MB/s"
    )
    assert render_arrival("arriving x", 1_500_000_000, 3_000_000_000, 2.0, start=500_000_000) == (
        "arriving x [##########----------]  50% of 3.00 GB 500.0 MB/s"
    )

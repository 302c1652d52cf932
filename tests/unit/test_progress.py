import io

import structlog
from structlog.testing import capture_logs

from dropzone.imports.progress import Progress, render
from dropzone.logs import configure_logging, reset_logging


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_render_shows_bar_percent_and_rate() -> None:
    assert (
        render("hash m.gguf", 50, 100, 1e-7) == "hash m.gguf [##########----------]  50%  0.50 GB/s"
    )


def test_without_a_terminal_progress_becomes_an_event_every_interval() -> None:
    clock = Clock()
    progress = Progress(None, interval=10, clock=clock)
    update, done = progress.track("hash.progress", "hash m", 1000, path="/d/m.gguf")
    with capture_logs() as logs:
        for second in range(1, 31):
            clock.now = float(second)
            update(second * 10)
        done()
    assert [(e["event"], e["bytes"], e["path"]) for e in logs] == [
        ("hash.progress", 100, "/d/m.gguf"),
        ("hash.progress", 200, "/d/m.gguf"),
        ("hash.progress", 300, "/d/m.gguf"),
    ]


def test_on_a_terminal_one_line_is_redrawn_and_cleared_at_the_end() -> None:
    clock = Clock()
    terminal = io.StringIO()
    progress = Progress(terminal, clock=clock)
    update_a, done_a = progress.track("hash.progress", "hash a", 100)
    update_b, done_b = progress.track("blob.upload.progress", "upload b", 100)
    with capture_logs() as logs:
        clock.now = 1.0
        update_a(50)
        clock.now = 2.0
        update_b(25)
        done_a()
        done_b()
    assert logs == []  # no events: the person at the terminal sees the line
    frames = terminal.getvalue().split("\r\x1b[K")
    assert "hash a" in frames[1]
    assert "hash a" in frames[2] and "upload b" in frames[2] and "25%" in frames[2]
    assert frames[-1] == ""  # cleared when the last transfer ends


def test_an_event_logged_while_a_bar_is_drawn_starts_on_a_cleared_line() -> None:
    # Seen by hand: "... 100% of 1.61 GB 80.0 MB/s13:11:57 info artifact.pending ...": the
    # bar (stderr) and the events (stdout) share one terminal.
    clock = Clock()
    terminal = io.StringIO()
    progress = Progress(terminal, clock=clock)
    configure_logging(fmt="console", level="info", stream=terminal, before_line=progress.clear_line)
    try:
        update, _ = progress.arrival("arriving m.gguf", 0, 1000)
        clock.now = 1.0
        update(500, 1000)
        structlog.get_logger("dropzone.test").info("artifact.pending", reason="settling")
    finally:
        reset_logging()
    bar, _, rest = terminal.getvalue().rpartition("MB/s")
    assert "arriving m.gguf" in bar
    assert rest.startswith("\r\x1b[K") and "artifact.pending" in rest

"""How the real process watches, against the real kernel: an inotify queue overflow becomes one
full rescan, and a kernel that refuses inotify watches at start means polling, not an exit into
a restart loop.

The overflow is the kernel's own: the process is stopped (SIGSTOP) so nothing reads its inotify
queue, more events than ``fs.inotify.max_queued_events`` are made, then the process goes on.
A model written after the queue filled raises no event at all; only the rescan can find it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dropzone_process import DropzoneProcess, clean_environment
from e2e_env import Dropzone
from test_e2e_lifecycle import NotifySocket

from dropzone.testing.builders import build_gguf
from dropzone.testing.ollama import Emulator
from dropzone.testing.waiting import wait_until

QUEUED_EVENTS = Path("/proc/sys/fs/inotify/max_queued_events")


def queue_limit() -> int:
    try:
        return int(QUEUED_EVENTS.read_text())
    except (OSError, ValueError):
        return 16384  # the kernel's default


def overflow_while_stopped(daemon: DropzoneProcess, flood: Path, then: Path) -> None:
    """Stop ``daemon``, make at least twice the queue's capacity of events in ``flood`` (a
    watched hidden folder: the scan ignores it), build the GGUF ``then`` (its events are
    dropped: the queue is full), and let the daemon go on."""
    limit = queue_limit()
    if limit > 200_000:
        pytest.skip(f"fs.inotify.max_queued_events = {limit}: too many files to overflow it")
    daemon.send(signal.SIGSTOP)
    try:
        for n in range(limit):  # each file: IN_CREATE and IN_CLOSE_WRITE
            os.close(os.open(flood / f"f{n:06d}", os.O_CREAT | os.O_WRONLY, 0o644))
        build_gguf(then)
    finally:
        daemon.send(signal.SIGCONT)


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    listener = NotifySocket()
    yield listener
    listener.close()


def test_an_overflow_finds_a_model_whose_events_were_lost_even_at_log_level_error(
    dropzone: Dropzone, emulator: Emulator, notify: NotifySocket
) -> None:
    # At log_level = "error" no warning record is ever made: the signal must not be one. No
    # event tells when the daemon watches, so systemd's READY=1 does (sent after the first scan),
    # and the drop folder starts empty: no work of its own may happen to list the folder again.
    flood = dropzone.drop / ".flood"
    flood.mkdir()
    daemon = dropzone.run(
        wait=False,
        extra_env={"NOTIFY_SOCKET": notify.name},
        DROPZONE_LOG_LEVEL="error",
        DROPZONE_RESCAN_INTERVAL="0",
    )
    wait_until(lambda: notify.with_key("READY"), timeout=15, what="READY=1")
    overflow_while_stopped(daemon, flood, dropzone.drop / "Lost-Events.gguf")
    wait_until(
        lambda: "lost-events:latest" in emulator.models(),
        timeout=30,
        what="the model written after the queue overflowed",
    )
    assert not daemon.find("watcher.overflow")  # filtered out at error: no record needed


def test_an_overflow_is_one_event_followed_by_a_full_rescan(dropzone: Dropzone) -> None:
    flood = dropzone.drop / ".flood"
    flood.mkdir()
    daemon = dropzone.run(DROPZONE_RESCAN_INTERVAL="0")
    assert daemon.find("watcher.mode", mode="native")
    since = daemon.mark()
    overflow_while_stopped(daemon, flood, dropzone.drop / "Lost-Events.gguf")
    overflow = daemon.wait_for("watcher.overflow", since=since, timeout=30)
    assert overflow["level"] == "warning"
    assert overflow["path"] == str(dropzone.drop)
    daemon.wait_for("artifact.done", since=since, path=str(dropzone.drop / "Lost-Events.gguf"))
    said = [e for e in daemon.events[since:] if "overflow" in e["event"].lower()]
    assert said == [overflow], "one event per overflow, not watchdog's lines besides"


# -- inotify refused at start --------------------------------------------------------------

# A user namespace of its own with a watch limit of 0: the kernel answers ENOSPC to the first
# inotify watch of the process, as when another program took every watch of the user. The
# limit of this namespace binds only the processes inside it, so nothing else on the machine
# is touched (fs.inotify.max_user_watches itself stays as it is).
NO_WATCHES = 'echo 0 > /proc/sys/user/max_inotify_watches && exec "$@"'


def _user_namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "sh", "-c", NO_WATCHES, "sh", "true"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


def test_no_inotify_watches_at_start_means_polling_with_a_warning_not_an_exit(
    dropzone: Dropzone, emulator: Emulator
) -> None:
    if not _user_namespaces_work():
        pytest.skip("needs unshare and unprivileged user namespaces with /proc/sys/user")
    program = ["unshare", "--user", "--map-root-user", "sh", "-c", NO_WATCHES, "sh"]
    process = DropzoneProcess(
        ["run"],
        clean_environment(dropzone.env()),
        dropzone.tmp / "no-watches.stderr",
        program=[*program, sys.executable, "-m", "dropzone"],
    )
    dropzone.processes.append(process)  # stopped, and its exit status checked, at teardown
    mode = process.wait_for("watcher.mode")
    assert (mode["level"], mode["mode"]) == ("warning", "polling")
    assert "inotify refused" in mode["reason"]
    process.wait_for("scan.done")
    build_gguf(dropzone.drop / "Polled.gguf")
    process.wait_for("artifact.done", path=str(dropzone.drop / "Polled.gguf"), timeout=30)
    assert "polled:latest" in emulator.models()

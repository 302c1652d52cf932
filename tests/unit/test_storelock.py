"""One daemon per state store (design §10.4, issue 10 item 5): an flock on state_dir/dropzone.lock.

The contenders are real processes: flock belongs to an open file, and only a second process
shows what an operator sees when a second ``dropzone run`` starts beside the service.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dropzone.errors import ConfigError
from dropzone.store.lock import LOCK_NAME, lock_store

# A contender in another process: exit 0 if it got the lock, 2 with the message if not.
TRY_LOCK = """
import sys
from pathlib import Path
from dropzone.errors import ConfigError
from dropzone.store.lock import lock_store
try:
    lock_store(Path(sys.argv[1])).close()
except ConfigError as e:
    print(e)
    sys.exit(2)
"""

# A holder in another process: takes the lock, says so, and keeps it until stdin closes.
HOLD_LOCK = """
import sys
from pathlib import Path
from dropzone.store.lock import lock_store
with lock_store(Path(sys.argv[1])):
    print("locked", flush=True)
    sys.stdin.read()
"""


def try_lock(state_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", TRY_LOCK, str(state_dir)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the lock on ``tmp_path/state``; it lets go when stdin closes."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path / "state")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        # A condition, not a sleep: the line comes once the lock is held (or EOF if it died).
        assert proc.stdout.readline() == "locked\n"
        yield proc
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
        proc.stdout.close()


def test_the_lock_creates_the_state_dir_and_records_the_holder_pid(tmp_path: Path) -> None:
    state = tmp_path / "var" / "state"
    with lock_store(state) as lock:
        assert lock.path == state / LOCK_NAME
        assert (state / LOCK_NAME).read_text().strip() == str(os.getpid())


def test_a_second_process_is_refused_at_once_naming_the_lock_file_the_pid_and_the_fix(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    with lock_store(state):
        contender = try_lock(state)
    assert contender.returncode == 2, contender.stderr
    message = contender.stdout.strip()
    assert len(message.splitlines()) == 1
    assert str(state / LOCK_NAME) in message
    assert f"pid {os.getpid()}" in message
    assert "systemctl stop dropzone" in message
    assert "state_dir" in message


def test_this_process_is_refused_naming_the_pid_of_the_process_that_holds_the_lock(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    with pytest.raises(ConfigError, match=f"pid {holder.pid}\\b"):
        lock_store(tmp_path / "state")
    # The refused attempt left the holder's PID in place for the next operator to read.
    assert (tmp_path / "state" / LOCK_NAME).read_text().strip() == str(holder.pid)


def test_the_lock_is_released_when_the_holder_exits(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    assert holder.stdin is not None
    holder.stdin.close()
    assert holder.wait(timeout=30) == 0
    with lock_store(tmp_path / "state"):
        assert (tmp_path / "state" / LOCK_NAME).read_text().strip() == str(os.getpid())


def test_the_lock_is_released_when_closed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    lock = lock_store(state)
    lock.close()
    lock.close()  # closing twice is harmless
    assert try_lock(state).returncode == 0


def test_an_unreadable_pid_is_reported_as_unknown(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with lock_store(state):
        (state / LOCK_NAME).write_text("")  # as if the holder had not written it yet
        contender = try_lock(state)
    assert contender.returncode == 2
    assert "pid unknown" in contender.stdout


def test_a_state_dir_that_is_a_file_is_a_configuration_error(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.write_text("not a directory")
    with pytest.raises(ConfigError, match="state_dir"):
        lock_store(state)


def test_a_symlink_in_place_of_the_lock_file_is_refused_not_followed(tmp_path: Path) -> None:
    # The lock file is truncated once locked: through a link that would empty another file.
    state = tmp_path / "state"
    state.mkdir()
    victim = tmp_path / "precious"
    victim.write_text("keep me")
    (state / LOCK_NAME).symlink_to(victim)
    with pytest.raises(ConfigError, match=LOCK_NAME):
        lock_store(state)
    assert victim.read_text() == "keep me"

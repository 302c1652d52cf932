"""One daemon per state store (design §10.4): an exclusive ``flock`` on ``state_dir/dropzone.lock``.

Two processes on one store would hash, upload and create the same models, and one's cleanup
would remove files the other is reading. ``dropzone run`` and ``dropzone scan`` take the lock
before they open the store and hold it for their whole life; ``status``, ``doctor`` and
``check`` take none. Taking it never waits: a held lock is a ``ConfigError`` (exit 2) naming
the lock file and the PID of its holder, which the holder writes into it once locked.

The kernel releases an ``flock`` when its open file is closed, so a killed daemon leaves no
stale lock behind; the PID left in the file is only a note for people.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from types import TracebackType

from dropzone.errors import ConfigError

LOCK_NAME = "dropzone.lock"
_PID_BYTES = 32  # a PID and a newline; anything longer is not one


class StoreLock:
    """A held lock; ``close()`` (or leaving the ``with`` block, or exiting) releases it."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the only open file of the lock releases it

    def __enter__(self) -> StoreLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def lock_store(state_dir: Path) -> StoreLock:
    """Take the lock of the store in ``state_dir`` (created as ``StateStore.open`` would).

    Raises ``ConfigError`` at once when another process holds it, or it cannot be taken.
    """
    path = state_dir / LOCK_NAME
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        # No O_TRUNC: a contender must not wipe the holder's PID. No links: the file is
        # truncated once locked, and through a link that would empty some other file.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise ConfigError(
            [
                f"state_dir: cannot open the lock file {path} ({e.strerror or e}); fix: make"
                f" {state_dir} a directory writable by the dropzone user, with no link named"
                f" {LOCK_NAME} in it"
            ]
        ) from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = _read_pid(fd)
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise ConfigError(
                [
                    f"state_dir: the state store is in use by another dropzone (pid {holder}),"
                    f" which holds {path}; fix: stop the running service (systemctl stop"
                    " dropzone) or point state_dir at another directory"
                ]
            ) from e
        raise ConfigError(
            [
                f"state_dir: cannot lock {path} ({e.strerror or e}); fix: put state_dir on a"
                " local file system"
            ]
        ) from e
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError as e:
        os.close(fd)
        raise ConfigError(
            [f"state_dir: cannot write {path} ({e.strerror or e}); fix: free space in state_dir"]
        ) from e
    return StoreLock(path, fd)


def _read_pid(fd: int) -> str:
    """The PID the holder wrote, or ``unknown`` (not written yet, or not a PID)."""
    try:
        text = os.pread(fd, _PID_BYTES, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return "unknown"
    return text if text.isdigit() else "unknown"

"""The file work of placing a blob in a same-host server's store (issue 17): a clone or an
in-kernel copy written and checked under a temporary name, a commit that never replaces an
existing blob, and the probes of a blobs folder. The policy (which method, when) is
``placement``'s."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import secrets
import stat
import threading
from collections.abc import Callable
from pathlib import Path

from dropzone.errors import FileChangedError, StoppedError
from dropzone.fs.identity import FileKey
from dropzone.imports.hashing import CHUNK_SIZE, read_chunks
from dropzone.imports.writeback import start_writeback

FICLONE = 0x40049409  # _IOW(0x94, 9, int), linux/fs.h
# copy_file_range's answers that sendfile may still serve (old kernels, across file systems).
_NO_COPY_RANGE = frozenset({errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL})
CHUNK = 64 << 20  # a stop is seen between chunks of an in-kernel copy
BLOB_MODE = 0o644


def write_verified(
    clone: bool,
    src: int,
    identity: FileKey,
    *,
    digest: str,
    tmp: Path,
    cancel: threading.Event | None,
) -> None:
    dst = create_temporary(tmp)
    try:
        if clone:
            fcntl.ioctl(dst, FICLONE, src)
        else:
            copy_bytes(src, dst, identity.size, cancel)
        if FileKey.from_stat(os.fstat(src)) != identity:
            raise FileChangedError(str(tmp), "the drop file changed while it was placed")
        if os.fstat(dst).st_size != identity.size:
            raise FileChangedError(str(tmp), "placed size differs from the hashed size")
        if not clone and sha256_fd(dst, cancel) != digest.split(":", 1)[-1]:
            raise FileChangedError(str(tmp), "the copied bytes do not match the digest")
        os.fchmod(dst, BLOB_MODE)
        os.fsync(dst)
    finally:
        os.close(dst)


def create_temporary(tmp: Path) -> int:
    """A new temporary in a blobs folder, open for reading and writing, only this user's
    until it is committed; never an existing file or a link."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    return os.open(tmp, flags, 0o600)


def commit_no_replace(tmp: Path, final: Path) -> bool:
    """``tmp`` under its final name, never over an existing one; False when one was there."""
    try:
        os.link(tmp, final, follow_symlinks=False)
    except FileExistsError:
        return False
    return True


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_bytes(src: int, dst: int, size: int, cancel: threading.Event | None = None) -> None:
    """``size`` bytes from ``src`` (from offset 0) to ``dst``, in the kernel."""
    stop = None if cancel is None else cancel.is_set
    if copy_range(src, dst, 0, size, stop) < size:
        raise StoppedError("stopping")


def copy_range(
    src: int, dst: int, start: int, end: int, stop: Callable[[], bool] | None = None
) -> int:
    """Bytes ``start`` to ``end`` of ``src`` to the same offsets of ``dst``, in the kernel;
    returns where it stopped (``end``, or earlier once ``stop()``)."""
    offset = start
    use_range = True
    while offset < end:
        if stop is not None and stop():
            return offset
        count = min(CHUNK, end - offset)
        if use_range:
            try:
                done = os.copy_file_range(src, dst, count, offset, offset)
            except OSError as exc:
                if exc.errno not in _NO_COPY_RANGE:
                    raise
                use_range = False
                continue
        else:
            os.lseek(dst, offset, os.SEEK_SET)
            done = os.sendfile(dst, src, offset, count)
        if done == 0:
            raise FileChangedError(f"fd {src}", "ended before its hashed size")
        # To disk while the rest is copied and the copy hashed back: the fsync before the
        # commit then waits for the last chunk only, not the whole blob (``writeback``).
        start_writeback(dst, offset, done)
        offset += done
    return offset


def sha256_fd(fd: int, cancel: threading.Event | None = None) -> str:
    """The hex SHA-256 of the file open as ``fd``, read from its start."""
    h = hashlib.sha256()
    stop: Callable[[], bool] = (lambda: False) if cancel is None else cancel.is_set
    view = memoryview(bytearray(CHUNK_SIZE))
    with contextlib.closing(read_chunks(fd, 0, None, view, stop)) as chunks:
        for chunk in chunks:
            if stop():
                raise StoppedError("stopping")
            h.update(chunk)
    return h.hexdigest()


def blobs_problem(blobs: Path) -> str | None:
    """Why dropzone cannot place blobs in ``blobs``, or None: it exists and a file can really
    be made there (``os.access`` would not see a read-only mount, an immutable folder or ACLs)."""
    try:
        if not stat.S_ISDIR(os.stat(blobs).st_mode):
            return f"the blobs folder {blobs} is not a folder"
    except OSError as exc:
        return f"the blobs folder {blobs} cannot be seen: {exc.strerror or exc}"
    probe = blobs / f".dropzone-probe-{secrets.token_hex(6)}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    except OSError as exc:
        return f"the blobs folder {blobs} is not writable by this user: {exc.strerror or exc}"
    os.unlink(probe)
    return None


def reflink_supported(folder: Path) -> bool:
    """True when ``FICLONE`` works between two files made in ``folder`` (removed after)."""
    names = [folder / f".dropzone-clone-{secrets.token_hex(6)}" for _ in range(2)]
    fds: list[int] = []
    try:
        for name in names:
            fds.append(os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        os.write(fds[0], b"\0" * 4096)
        fcntl.ioctl(fds[1], FICLONE, fds[0])
    except OSError:
        return False
    finally:
        for fd in fds:
            os.close(fd)
        for name in names:
            unlink_quietly(name)
    return True


def unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


_LEFTOVER = re.compile(r"\.dropzone-(\d+)-[0-9a-f]{16}\.partial")


def temporary_name() -> str:
    """A temporary's name in a blobs folder: it names the process, so that a later start can
    tell one a killed daemon left from one a running daemon is writing."""
    return f".dropzone-{os.getpid()}-{secrets.token_hex(8)}.partial"


def leftovers(blobs: Path) -> list[Path]:
    """Temporaries whose process is gone (several daemons may feed one server's store)."""
    found = []
    with os.scandir(blobs) as it:
        for entry in it:
            m = _LEFTOVER.fullmatch(entry.name)
            if m is not None and not _alive(int(m.group(1))):
                found.append(Path(entry.path))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


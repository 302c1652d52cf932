"""The one way a file in the drop folder is opened: never outside it, never blocking, and only
the file that was verified.

``open_verified(root, path, expect=key)`` resolves ``path`` (links inside the drop folder are
allowed, as the scanner allows them), refuses a result outside ``root``, then walks the resolved
components from ``root`` with ``O_NOFOLLOW`` on each: a component swapped for a symlink between
the resolution and the walk fails with ``ELOOP`` instead of being followed. The last open adds
``O_NONBLOCK`` so that a FIFO or device swapped in cannot block the thread, and the result is
checked with ``fstat``: a regular file, and, when ``expect`` is given, the very identity (device,
inode, size, mtime, ctime) that was hashed. Hand-written because no maintained library offers an
``openat``-walk with identity checks; the standard library has the pieces.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from dropzone.errors import FileChangedError
from dropzone.fs.identity import FileKey

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class UnsafeFileError(OSError):
    """The path leads out of the drop folder, or to something that is not a regular file."""


def relative_parts(root: Path, path: Path | str) -> list[str]:
    """The components of ``path`` after resolving links, relative to the resolved ``root``;
    ``UnsafeFileError`` when it resolves outside."""
    real_root = os.path.realpath(root)
    full = path if os.path.isabs(path) else os.path.join(root, path)
    real = os.path.realpath(full)
    if real == real_root or not real.startswith(real_root + os.sep):
        raise UnsafeFileError(errno.EXDEV, "leads out of the drop folder", str(full))
    return real[len(real_root) + 1 :].split(os.sep)


def open_verified(root: Path, path: Path | str, *, expect: FileKey | None = None) -> int:
    """A read-only descriptor of the regular file ``path`` under ``root`` (see the module
    docstring). The caller closes it. ``FileChangedError`` when it is not ``expect``."""
    parts = relative_parts(root, path)
    fd = os.open(os.path.realpath(root), _DIR_FLAGS & ~os.O_NOFOLLOW)
    try:
        for part in parts[:-1]:
            nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nxt
        dir_fd, fd = fd, -1
        try:
            fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFileError(errno.EINVAL, "is not a regular file", str(path))
        if expect is not None and FileKey.from_stat(st) != expect:
            raise FileChangedError(str(path), "changed since it was hashed")
    except BaseException:
        if fd >= 0:
            os.close(fd)
        raise
    return fd


def open_regular(path: Path | str) -> int:
    """A read-only descriptor of the regular file ``path``, wherever it is (``dropzone check``
    reads the paths it is given), opened without blocking on a FIFO or device."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafeFileError(errno.EINVAL, "is not a regular file", str(path))
    except BaseException:
        os.close(fd)
        raise
    return fd


def matches(path: Path, expect: FileKey) -> bool:
    """True when ``path`` itself (not a link's target) still has the identity ``expect``."""
    try:
        return FileKey.from_stat(os.lstat(path)) == expect
    except OSError:
        return False


def matches_followed(path: Path, expect: FileKey) -> bool:
    """True when the file ``path`` leads to still has the identity ``expect``."""
    try:
        return FileKey.from_stat(os.stat(path)) == expect
    except OSError:
        return False

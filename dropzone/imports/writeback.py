"""Start writing a file's dirty pages to disk without waiting for it (``sync_file_range``).

A blob placed in the server's store by reflink or hard link, or copied there, is ``fsync``ed
before it gets its final name (issue 17). Left to the kernel, the pages of a file copied in
at 200 MB/s stay dirty until long after its close (a 2 GiB file is under the usual
background-writeback threshold of a machine with 24 GiB), so that ``fsync`` — and ``FICLONE``,
which flushes the source first — would write all of it after the close, on the path from close
to model. Starting the writeback as the bytes arrive moves that disk time into the copy-in,
where it overlaps the writer; the later ``fsync`` then finds little left to do.

Only a hint: on a system without ``sync_file_range`` (not Linux) or for a file it does not
apply to, nothing happens and ``fsync`` does all the work, as before.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable
from typing import cast

SYNC_FILE_RANGE_WRITE = 2  # linux/fs.h: start writeback of dirty pages, do not wait


def _load() -> Callable[[int, int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        func = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    func.restype = ctypes.c_int
    return cast("Callable[[int, int, int, int], int]", func)


_sync_file_range = _load()


def start_writeback(fd: int, offset: int = 0, length: int = 0) -> bool:
    """Ask the kernel to start writing ``length`` bytes of ``fd`` from ``offset`` (0: to the
    end) to disk, without waiting; False when it could not (nothing else happens then)."""
    if _sync_file_range is None or length < 0 or offset < 0:
        return False
    return _sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE) == 0

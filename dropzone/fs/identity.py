"""A file's identity: what a digest is valid for, and what every later step checks."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class FileKey:
    """The stat identity a digest is valid for; the digest cache's key, and what every later
    step (upload, create, cleanup) checks the file against. ``ctime_ns`` is in it because
    ``utime`` cannot set it back: ``cp -p`` of a same-size version over a file keeps its
    inode, size and mtime, but not its ctime."""

    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def from_stat(cls, st: os.stat_result) -> FileKey:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

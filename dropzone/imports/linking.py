"""Hard links into a same-host server's store (issue 17): when a drop file may be linked,
the link of the very inode that was hashed, and after the create, what the link means for the
drop file (its cleanup, a write into it that would now reach the server's blob)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from dropzone.errors import FileChangedError
from dropzone.fs.identity import FileKey
from dropzone.imports.blobfiles import unlink_quietly


def link_refusal(fd: int, path: Path, blobs: Path) -> str | None:
    """Why the file open as ``fd`` must not be hard-linked into the store, or None."""
    st = os.fstat(fd)
    if st.st_nlink == 0:
        raise FileChangedError(str(path), "removed or replaced since it was hashed")
    if st.st_nlink != 1:
        return "the drop file has another name: a write through it would reach the blob"
    readable = st.st_mode & stat.S_IROTH or (
        st.st_mode & stat.S_IRGRP and st.st_gid == os.stat(blobs).st_gid
    )
    if not readable:
        return "the server could not read the drop file (mode or group)"
    return None



def link_verified(fd: int, path: Path, identity: FileKey, tmp: Path) -> None:
    """A hard link of the open file to ``tmp``, only while ``path`` still has ``identity``."""
    try:
        current = FileKey.from_stat(os.lstat(path))
    except OSError as exc:
        raise FileChangedError(str(path), exc.strerror or str(exc)) from exc
    if current != identity:
        raise FileChangedError(str(path), "changed since it was hashed")
    proc = f"/proc/self/fd/{fd}"
    if os.path.exists(proc):
        # The open inode itself, whatever the path is now. A dir_fd makes CPython call
        # linkat(AT_SYMLINK_FOLLOW); plain link(2) would try to link the /proc link itself.
        dir_fd = os.open(tmp.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.link(proc, tmp.name, dst_dir_fd=dir_fd, follow_symlinks=True)
        finally:
            os.close(dir_fd)
    else:
        os.link(path, tmp, follow_symlinks=False)
    st, linked = os.fstat(fd), os.lstat(tmp)
    if (linked.st_dev, linked.st_ino) != (st.st_dev, st.st_ino):
        raise FileChangedError(str(path), "replaced while it was linked")
    os.fsync(fd)  # the writer may not have: the server's blob must survive a crash


def withdraw_if_changed(blobs: Path, digest: str, identity: FileKey) -> bool:
    """Remove the blob ``digest`` when it is a hard link of the drop file hashed as
    ``identity`` and that file was written since: its bytes no longer match its name. True
    when it was removed. A blob that is another inode (a reflink, a copy, the server's own)
    is never touched."""
    blob = blobs / ("sha256-" + digest.split(":", 1)[-1])
    try:
        st = os.lstat(blob)
    except OSError:
        return False
    same_inode = (st.st_dev, st.st_ino) == (identity.dev, identity.ino)
    if not same_inode or (st.st_size, st.st_mtime_ns) == (identity.size, identity.mtime_ns):
        return False
    unlink_quietly(blob)
    return True


def still_linked(blobs: Path, digest: str, path: Path, hashed: FileKey) -> FileKey | None:
    """After the create: the identity of the drop file ``path`` when it is still the inode
    hard-linked as the blob ``digest`` (the server's create touches the blob's mtime, and so
    the drop file's); None otherwise. Removing that name loses nothing the server needs."""
    blob = blobs / ("sha256-" + digest.split(":", 1)[-1])
    try:
        st, blob_st = os.lstat(path), os.lstat(blob)
    except OSError:
        return None
    inode = (hashed.dev, hashed.ino)
    if (st.st_dev, st.st_ino) != inode or (blob_st.st_dev, blob_st.st_ino) != inode:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_size != hashed.size:
        return None
    return FileKey.from_stat(st)

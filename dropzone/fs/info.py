"""Facts about the file system under a path: its type, inotify limits, free space, what it holds.

Read by ``dropzone doctor``. The mount table comes from ``/proc/self/mountinfo``: the systemd
unit sets ``ProcSubset=pid``, which hides every ``/proc`` entry not about a process, the
``/proc/mounts`` link included, while ``/proc/self/*`` stays visible. The inotify limits live in
``/proc/sys`` and so are hidden under the unit: they are then reported as unknown, never
guessed.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

MOUNTINFO = Path("/proc/self/mountinfo")
INOTIFY_DIR = Path("/proc/sys/fs/inotify")

_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")

# Where inotify cannot be trusted: the kernel sees only changes made through this machine's
# own mount, never those made by another machine, the VM host, or below a container's overlay.
_NETWORK = "network file system: changes made on other machines raise no inotify events here"
_SHARED = "folder shared from a VM host: changes made on the host raise no inotify events here"
_POLLING_REASONS: dict[str, str] = {
    "nfs": _NETWORK,
    "nfs4": _NETWORK,
    "cifs": _NETWORK,
    "smb3": _NETWORK,
    "smbfs": _NETWORK,
    "ceph": _NETWORK,
    "glusterfs": _NETWORK,
    "lustre": _NETWORK,
    "afs": _NETWORK,
    "9p": _SHARED,
    "virtiofs": _SHARED,
    "vboxsf": _SHARED,
    "overlay": "overlay mount (containers): changes to its lower layers made outside this"
    " mount raise no inotify events",
}
_FUSE_REASON = (
    "FUSE file system: whether inotify events arrive depends on the driver;"
    " remote changes usually raise none"
)


@dataclass(frozen=True)
class Mount:
    mount_point: str
    fs_type: str
    source: str


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as ``\\040``, ``\\011``, ``\\012``,
    ``\\134``."""
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """The mounts of a ``/proc/<pid>/mountinfo`` text, in file order; bad lines are skipped.

    A line is ``ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL…] - FSTYPE SOURCE SUPER``;
    the optional fields vary in number, so the type is found after the lone ``-``.
    """
    mounts: list[Mount] = []
    for line in text.splitlines():
        fields = line.split(" ")
        try:
            dash = fields.index("-", 6)
        except ValueError:
            continue
        if len(fields) < dash + 3:
            continue
        mounts.append(
            Mount(
                mount_point=_unescape(fields[4]),
                fs_type=_unescape(fields[dash + 1]),
                source=_unescape(fields[dash + 2]),
            )
        )
    return mounts


def mount_of(path: str, mounts: Sequence[Mount]) -> Mount | None:
    """The mount holding absolute ``path``: the longest mount point that is a prefix of it.

    Of several mounts on the same point, the last listed is the one on top (the visible one).
    ``path`` should be resolved (no symlinks, no ``..``) by the caller.
    """
    best: Mount | None = None
    for m in mounts:
        point = m.mount_point
        inside = point in ("/", path) or path.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best.mount_point)):
            best = m
    return best


def file_system_of(path: Path, mountinfo: Path | None = None) -> Mount | None:
    """The mount holding ``path`` (or its nearest existing parent); None if mountinfo is
    unreadable. ``MOUNTINFO`` is read at call time: tests point it at a mount table of their
    own to stand a folder on NFS without an NFS server."""
    try:
        text = (mountinfo or MOUNTINFO).read_text(encoding="utf-8", errors="surrogateescape")
    except OSError:
        return None
    return mount_of(str(existing_ancestor(path).resolve()), parse_mountinfo(text))


def existing_ancestor(path: Path) -> Path:
    """``path`` itself if it exists, else its nearest existing parent (``/`` at worst)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(path.anchor or "/")


def polling_reason(fs_type: str) -> str | None:
    """Why native events are doubtful on ``fs_type`` (poll instead), or None if they work."""
    if fs_type.startswith("fuse"):  # fuse, fuseblk, fuse.sshfs, fuse.rclone, …
        return _FUSE_REASON
    return _POLLING_REASONS.get(fs_type)


def remote_writes_unseen(fs_type: str) -> str | None:
    """Why native events would miss writes made elsewhere on ``fs_type``, or None.

    Narrower than ``polling_reason``: an overlay mount (a container's root) does raise events
    for every write made through it, which is how files reach a container's drop folder, so
    only the types whose writers are other machines (or the VM host) count here.
    """
    if fs_type == "overlay":
        return None
    return polling_reason(fs_type)


@dataclass(frozen=True)
class InotifyLimits:
    """Per-user kernel limits; None where unreadable (``error`` says why)."""

    max_user_watches: int | None
    max_user_instances: int | None
    error: str | None = None


def read_inotify_limits(folder: Path = INOTIFY_DIR) -> InotifyLimits:
    values: dict[str, int | None] = {}
    errors: list[str] = []
    for name in ("max_user_watches", "max_user_instances"):
        try:
            values[name] = int((folder / name).read_text().strip())
        except (OSError, ValueError) as e:
            values[name] = None
            errors.append(f"{folder / name}: {getattr(e, 'strerror', None) or e}")
    return InotifyLimits(
        values["max_user_watches"], values["max_user_instances"], "; ".join(errors) or None
    )


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged user may still write on ``path``'s file system."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


@dataclass(frozen=True)
class FileInfo:
    rel_path: str  # relative to the surveyed root, ``/``-separated
    size: int
    dev: int


@dataclass(frozen=True)
class FolderSurvey:
    """What a folder tree holds, as far as watching and moving it are concerned."""

    dev: int  # the root's device
    # Every directory below the root, hidden ones too, symlinks not: watchdog watches each one
    # and silently drops those the kernel refuses (ENOSPC past max_user_watches).
    folders: int
    files: tuple[FileInfo, ...]  # regular files outside hidden folders, not hidden themselves
    unreadable: int  # folders that could not be listed


def survey(root: Path) -> FolderSurvey:
    """Walk ``root`` once (symlinks not followed, as watchdog does not follow them)."""
    unreadable = 0

    def failed(_: OSError) -> None:
        nonlocal unreadable
        unreadable += 1

    folders = 0
    files: list[FileInfo] = []
    for here, dirs, names in os.walk(root, onerror=failed):
        folders += sum(not os.path.islink(os.path.join(here, d)) for d in dirs)
        rel_dir = os.path.relpath(here, root)
        if any(part.startswith(".") for part in Path(rel_dir).parts if part != "."):
            continue
        for name in names:
            if name.startswith("."):
                continue
            try:
                st = os.stat(os.path.join(here, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                rel = name if rel_dir == "." else f"{Path(rel_dir).as_posix()}/{name}"
                files.append(FileInfo(rel, st.st_size, st.st_dev))
    return FolderSurvey(os.stat(root).st_dev, folders, tuple(files), unreadable)

"""Same host, no upload: place a blob straight into the server's store (issue 17).

Ollama's ``HEAD /api/blobs`` only checks that ``blobs/sha256-<hex>`` exists in its models
folder, and its create reads the blob from there (``ollama-api.md`` §9). On the machine that
runs the server, a blob it lacks can therefore be placed there by the cheapest safe means:

* **reflink** (``FICLONE``: btrfs, XFS with reflink, bcachefs, ZFS 2.2+): a copy-on-write
  clone, instant, no second copy, and safe whatever later happens to the drop file;
* **link** (a hard link), only under ``on_success = "delete"`` or ``"move"``, when the drop
  file has no other name, and never early: the file leaves the drop folder right after the
  create, so no later write into it can reach the server's blob;
* **copy** (``copy_file_range``, else ``sendfile``): in the kernel, no HTTP, no Python buffers.

Every method reads from the descriptor ``open_verified`` gave for the identity the file was
hashed with, writes a temporary name in ``blobs/``, checks that the source still has that
identity afterwards (a reflink or a link shares the verified inode; a copy is also hashed
back and compared with the digest), ``fsync``s it, and commits it with ``link(2)`` to the
final name, which fails with ``EEXIST`` rather than replace an existing blob (``rename(2)``
would replace it silently; ``renameat2(RENAME_NOREPLACE)`` is not in the standard library).
Files it writes are mode 0644, as the server's own blobs.

Early (while the drop file settles) a copy or a clone is only staged under its temporary name
(``staging``): the import of record commits it once the file has settled, or discards it.

``auto`` decides per host and per file system of the drop file, once, and logs the method and
why (``local_import.method``); a refusal (no blobs folder, not writable, a method that cannot
apply) is logged as ``local_import.refused`` with the fix, and the blob goes by HTTP.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal

import structlog

from dropzone.errors import FileChangedError, StoppedError
from dropzone.fs.identity import FileKey
from dropzone.fs.safeopen import open_verified
from dropzone.imports.blobfiles import (
    blobs_problem,
    commit_no_replace,
    fsync_dir,
    leftovers,
    reflink_supported,
    temporary_name,
    unlink_quietly,
    write_verified,
)
from dropzone.imports.staging import Staged, Staging, commit_check
from dropzone.imports.trailing import TrailingCopy

log = structlog.get_logger("dropzone.placement")

Mode = Literal["auto", "reflink", "link", "copy", "off"]
# FICLONE's answers for "not here": no clones on this file system, or not between these two.
_NO_CLONE = frozenset({errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL, errno.EXDEV, errno.ENOSYS})
LINK_POLICIES = ("delete", "move")
ACCESS_FIX = (
    "add the dropzone user to the server's group (usermod -aG ollama dropzone), make the blobs"
    " folder group-writable (chmod g+w), and list it in the unit's ReadWritePaths="
)


class Method(StrEnum):
    REFLINK = "reflink"
    LINK = "link"
    COPY = "copy"


class Skip(StrEnum):
    HTTP = "http"  # no local placement applies: upload it
    LATER = "later"  # an early upload would link: leave it to the import itself
    EXISTS = "exists"  # the blob is there already (never overwritten)


@dataclass(frozen=True)
class Placed:
    method: str
    bytes: int
    seconds: float
    identity: FileKey  # the drop file's identity now: a link changes its ctime
    staged: bool = False  # committed from an early copy made while the file settled
    trailed: bool = False  # that copy was made while the file arrived (``trailing``)


@dataclass
class _Decision:
    methods: list[Method]
    reason: str


class Placer:
    """Places blobs for one host whose models folder this machine sees at ``models_dir``."""

    def __init__(self, models_dir: Path, mode: str, *, on_success: str, host: str) -> None:
        self.models_dir = models_dir
        self.blobs = models_dir / "blobs"
        self.mode = mode
        self.on_success = on_success
        self.host = host
        self._lock = threading.Lock()
        self._decisions: dict[int, _Decision] = {}  # st_dev of drop files → what applies
        self._refusal: str | None = None  # for the whole host (no blobs folder, not writable)
        self._staging = Staging(host)

    @property
    def flushes_source(self) -> bool:
        """Will a placement here write the drop file itself to disk (a link's ``fsync``,
        ``FICLONE``'s flush)? A copy only needs its own bytes on disk."""
        return self.mode in ("auto", "reflink", "link")

    def place(
        self,
        drop_dir: Path,
        path: Path,
        identity: FileKey,
        digest: str,
        *,
        early: bool = False,
        cancel: threading.Event | None = None,
    ) -> Placed | Staged | Skip:
        """Place the blob ``digest`` from the drop file ``path`` as it was hashed
        (``identity``). ``FileChangedError`` when the file is not that one any more.
        ``early``: the file is still settling; a copy or clone is only staged (``Staged``),
        for the import of record to commit."""
        if self.mode == "off":
            return Skip.HTTP
        decision = self._decide(identity.dev)
        if not decision.methods:
            return Skip.HTTP
        final = self.blobs / ("sha256-" + digest.split(":", 1)[-1])
        if early:
            held = self._staged_already(digest, path, identity)
            if held is not None:
                return held
        staged = None if early else self._take_staged(digest, path)
        if os.path.lexists(final):
            if staged is not None:
                self._staging.discard(staged, "the blob is in the store already")
            return Skip.EXISTS
        try:
            fd = open_drop_file(drop_dir, path, identity)
        except FileChangedError:
            if staged is not None:
                self._staging.discard(staged, "the drop file changed since its early copy")
            raise
        try:
            if staged is not None:
                committed = self._commit_staged(staged, fd, path, identity, final)
                if committed is not None:
                    return committed
            for method in list(decision.methods):
                if method is Method.LINK:
                    why = self._link_refusal(fd, path)
                    if why is None and early:
                        return Skip.LATER
                    if why is not None:
                        self._per_file_refusal(method, path, why)
                        continue
                started = time.monotonic()
                try:
                    if early and method is not Method.LINK:
                        return self._stage(method, fd, path, identity, digest=digest, cancel=cancel)
                    placed = self._place_with(
                        method, fd, path, identity, digest=digest, final=final, cancel=cancel
                    )
                except (FileChangedError, StoppedError):
                    raise
                except OSError as exc:
                    if method is Method.REFLINK and exc.errno in _NO_CLONE:
                        self._drop_reflink(identity.dev, exc)
                    else:
                        self._per_file_refusal(method, path, exc.strerror or str(exc))
                    continue
                if placed is None:
                    return Skip.EXISTS
                return Placed(str(method), identity.size, time.monotonic() - started, placed)
        finally:
            os.close(fd)
        return Skip.HTTP

    def trail(self, path: Path) -> TrailingCopy | None:
        """A copy of ``path`` to keep behind its follower while it arrives, when this host
        may copy it; whether it does is decided at its first bytes (``trails``)."""
        return TrailingCopy(self, path) if self.mode in ("auto", "copy") else None

    def trails(self, dev: int) -> bool:
        """Should a file on device ``dev`` be copied while it arrives? Only when a copy is
        what will place it: a reflink or a hard link costs nothing after the close."""
        decision = self._decide(dev)
        return bool(decision.methods) and decision.methods[0] is Method.COPY

    def adopt(self, staged: Staged) -> None:
        """Hold a copy made while its file arrived, as an early copy (``staging``)."""
        self._staging.keep(staged)

    def discard_changed(self) -> int:
        """Discard the early copies whose drop file changed since; how many."""
        changed = self._staging.take_changed()
        for staged in changed:
            self._staging.discard(staged, "the drop file changed since its early copy")
        return len(changed)

    def discard(self, digest: str, reason: str) -> None:
        """Discard the early copy of ``digest``, if one is staged."""
        staged = self._staging.take_digest(digest)
        if staged is not None:
            self._staging.discard(staged, reason)

    def discard_all(self, reason: str) -> None:
        for staged in self._staging.take_all():
            self._staging.discard(staged, reason)

    def preview(self, dev: int) -> tuple[list[str], str]:
        """What ``auto`` (or the configured mode) would do for drop files on device ``dev``,
        and why; nothing logged or remembered (``dropzone doctor``)."""
        if self.mode == "off":
            return [], "local_import is off"
        problem = blobs_problem(self.blobs)
        if problem is not None:
            return [], problem
        decision = self._choose(dev)
        return [str(m) for m in decision.methods], decision.reason

    # -- deciding, once per file system ------------------------------------------------------

    def _decide(self, dev: int) -> _Decision:
        with self._lock:
            if self._refusal is not None:
                return _Decision([], self._refusal)
            known = self._decisions.get(dev)
            if known is not None:
                return known
            problem = blobs_problem(self.blobs)
            if problem is not None:
                self._refusal = problem
                log.warning(
                    "local_import.refused",
                    host=self.host,
                    method=self.mode,
                    reason=problem,
                    fix=ACCESS_FIX,
                    models_dir=str(self.models_dir),
                )
                return _Decision([], problem)
            decision = self._choose(dev)
            self._decisions[dev] = decision
            self._log_decision(decision)
            return decision

    def _choose(self, dev: int) -> _Decision:
        same_fs = os.stat(self.blobs).st_dev == dev
        clones = same_fs and reflink_supported(self.blobs)
        linkable = self.on_success in LINK_POLICIES
        where = "the same file system" if same_fs else "another file system"
        no_link = f'on_success is "{self.on_success}": a hard link would let a later write into'
        no_link += " the drop file reach the server's blob"
        if self.mode == "copy":
            return _Decision([Method.COPY], "configured: in-kernel copy")
        if self.mode == "reflink":
            if not same_fs:
                return _Decision(
                    [], "reflink needs the drop folder on the models folder's file system"
                )
            if not clones:
                return _Decision([], "this file system has no reflinks (FICLONE refused)")
            return _Decision([Method.REFLINK], "configured: reflink")
        if self.mode == "link":
            if not same_fs:
                return _Decision([], "a hard link needs the drop folder on the same file system")
            if not linkable:
                return _Decision([], no_link)
            return _Decision([Method.LINK], "configured: hard link")
        methods = [Method.REFLINK] if clones else []
        methods += [Method.LINK] if same_fs and linkable else []
        methods.append(Method.COPY)
        notes = [f"drop folder and models folder on {where}"]
        if same_fs:
            notes.append("reflink supported" if clones else "no reflink on this file system")
            if not linkable:
                notes.append(f'no hard links under on_success "{self.on_success}"')
        return _Decision(methods, "; ".join(notes))

    def _log_decision(self, decision: _Decision) -> None:
        if decision.methods:
            log.info(
                "local_import.method",
                host=self.host,
                method=str(decision.methods[0]),
                then=[str(m) for m in decision.methods[1:]],
                reason=decision.reason,
            )
        else:
            log.warning(
                "local_import.refused",
                host=self.host,
                method=self.mode,
                reason=decision.reason,
                fix="set local_import to auto (or copy), or move the drop folder",
            )

    def _drop_reflink(self, dev: int, exc: OSError) -> None:
        with self._lock:
            decision = self._decisions.get(dev)
            if decision is None or Method.REFLINK not in decision.methods:
                return
            decision.methods.remove(Method.REFLINK)
            decision.reason = f"reflink refused ({errno.errorcode.get(exc.errno or 0, exc)})"
            self._log_decision(decision)

    def _per_file_refusal(self, method: Method, path: Path, why: str) -> None:
        log.info(
            "local_import.skipped", host=self.host, method=str(method), path=str(path), reason=why
        )

    def _link_refusal(self, fd: int, path: Path) -> str | None:
        """Why the file open as ``fd`` must not be hard-linked into the store, or None."""
        st = os.fstat(fd)
        if st.st_nlink == 0:
            raise FileChangedError(str(path), "removed or replaced since it was hashed")
        if st.st_nlink != 1:
            return "the drop file has another name: a write through it would reach the blob"
        readable = st.st_mode & stat.S_IROTH or (
            st.st_mode & stat.S_IRGRP and st.st_gid == os.stat(self.blobs).st_gid
        )
        if not readable:
            return "the server could not read the drop file (mode or group)"
        return None

    # -- staging early, committing at the import of record ------------------------------------

    def _stage(
        self,
        method: Method,
        fd: int,
        path: Path,
        identity: FileKey,
        *,
        digest: str,
        cancel: threading.Event | None,
    ) -> Staged:
        """The copy or clone written, checked and fsynced as ``_place_with`` does, left under
        its temporary name."""
        started = time.monotonic()
        tmp = self._temporary()
        try:
            write_verified(
                method is Method.REFLINK, fd, identity, digest=digest, tmp=tmp, cancel=cancel
            )
            tmp_key = FileKey.from_stat(os.lstat(tmp))
        except BaseException:
            unlink_quietly(tmp)
            raise
        seconds = time.monotonic() - started
        staged = Staged(path, identity, digest, tmp, tmp_key, str(method), identity.size, seconds)
        self._staging.keep(staged)
        return staged

    def _staged_already(self, digest: str, path: Path, identity: FileKey) -> Staged | None:
        """The copy staged for this very file and digest (made while it arrived), if any."""
        held = self._staging.peek(digest)
        if held is None or held.path != path or commit_check(held, identity) is not None:
            return None
        return held

    def _take_staged(self, digest: str, path: Path) -> Staged | None:
        staged, others = self._staging.take(digest, path)
        for other in others:
            self._staging.discard(other, "the import is for another version of the drop file")
        return staged

    def _commit_staged(
        self, staged: Staged, fd: int, path: Path, identity: FileKey, final: Path
    ) -> Placed | Skip | None:
        """The early copy under its final name; None when it was discarded (place afresh).
        Its bytes were hashed back and fsynced when it was staged; what is left is the check
        that neither file changed since, the link, and the folder's fsync."""
        started = time.monotonic()
        why = commit_check(staged, identity)
        if why is not None:
            self._staging.discard(staged, why)
            return None
        try:
            committed = commit_no_replace(staged.tmp, final)
        finally:
            unlink_quietly(staged.tmp)
        fsync_dir(self.blobs)
        if FileKey.from_stat(os.fstat(fd)) != identity:
            raise FileChangedError(str(path), "changed while it was placed")
        if not committed:
            return Skip.EXISTS
        seconds = staged.seconds + time.monotonic() - started
        return Placed(
            staged.method, staged.bytes, seconds, identity, staged=True, trailed=staged.trailed
        )

    def _temporary(self) -> Path:
        return self.blobs / temporary_name()

    def sweep_leftovers(self) -> None:
        """Remove the temporaries a killed daemon left in the blobs folder (at start)."""
        try:
            found = leftovers(self.blobs)
        except OSError:
            return  # no blobs folder (yet): the first placement says why, with the fix
        for path in found:
            unlink_quietly(path)
            log.info(
                "blob.discarded",
                host=self.host,
                file=str(path),
                reason="left by a dropzone process that is gone",
            )

    # -- placing -------------------------------------------------------------------------------

    def _place_with(
        self,
        method: Method,
        fd: int,
        path: Path,
        identity: FileKey,
        *,
        digest: str,
        final: Path,
        cancel: threading.Event | None,
    ) -> FileKey | None:
        """The drop file's identity after placing; None when ``final`` appeared meanwhile."""
        tmp = self._temporary()
        try:
            if method is Method.LINK:
                _link_verified(fd, path, identity, tmp)
            else:
                write_verified(
                    method is Method.REFLINK, fd, identity, digest=digest, tmp=tmp, cancel=cancel
                )
            committed = commit_no_replace(tmp, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        fsync_dir(self.blobs)
        now = FileKey.from_stat(os.fstat(fd))
        if (now.dev, now.ino, now.size, now.mtime_ns) != (
            identity.dev,
            identity.ino,
            identity.size,
            identity.mtime_ns,
        ):
            raise FileChangedError(str(path), "changed while it was placed")
        if method is not Method.LINK and now != identity:
            raise FileChangedError(str(path), "changed while it was placed")
        if not committed and method is not Method.LINK:
            return None
        return now


def open_drop_file(drop_dir: Path, path: Path, identity: FileKey) -> int:
    """``path`` opened as the very file that was hashed; ``FileChangedError`` otherwise."""
    try:
        return open_verified(drop_dir, path, expect=identity)
    except OSError as exc:
        raise FileChangedError(str(path), exc.strerror or str(exc)) from exc


def _link_verified(fd: int, path: Path, identity: FileKey, tmp: Path) -> None:
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


def placer_for(url: str, models_dir: Path | None, mode: str, on_success: str) -> Placer | None:
    """The placer of a configured host, or None when its blobs go by HTTP only."""
    if models_dir is None or mode == "off":
        return None
    return Placer(models_dir, mode, on_success=on_success, host=url)


def withdraw_if_changed(placer: Placer, digest: str, identity: FileKey) -> bool:
    """Remove the blob ``digest`` when it is a hard link of the drop file hashed as
    ``identity`` and that file was written since: its bytes no longer match its name. True
    when it was removed. A blob that is another inode (a reflink, a copy, the server's own)
    is never touched."""
    blob = placer.blobs / ("sha256-" + digest.split(":", 1)[-1])
    try:
        st = os.lstat(blob)
    except OSError:
        return False
    same_inode = (st.st_dev, st.st_ino) == (identity.dev, identity.ino)
    if not same_inode or (st.st_size, st.st_mtime_ns) == (identity.size, identity.mtime_ns):
        return False
    unlink_quietly(blob)
    return True


def still_linked(placer: Placer, digest: str, path: Path, hashed: FileKey) -> FileKey | None:
    """After the create: the identity of the drop file ``path`` when it is still the inode
    hard-linked as the blob ``digest`` (the server's create touches the blob's mtime, and so
    the drop file's); None otherwise. Removing that name loses nothing the server needs."""
    blob = placer.blobs / ("sha256-" + digest.split(":", 1)[-1])
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

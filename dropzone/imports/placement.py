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

Which method applies is ``placement_choice``'s; the hard link's own rules are ``linking``'s.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import structlog

from dropzone.errors import FileChangedError, StoppedError
from dropzone.fs.identity import FileKey
from dropzone.fs.safeopen import open_verified
from dropzone.imports.blobfiles import (
    blobs_problem,
    commit_no_replace,
    fsync_dir,
    leftovers,
    temporary_name,
    unlink_quietly,
    write_verified,
)
from dropzone.imports.linking import link_refusal, link_verified
from dropzone.imports.placement_choice import Method, MethodChoice
from dropzone.imports.staging import Staged, Staging, commit_check
from dropzone.imports.trailing import TrailingCopy

log = structlog.get_logger("dropzone.placement")

# FICLONE's answers for "not here": no clones on this file system, or not between these two.
_NO_CLONE = frozenset({errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL, errno.EXDEV, errno.ENOSYS})


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


class Placer:
    """Places blobs for one host whose models folder this machine sees at ``models_dir``."""

    def __init__(self, models_dir: Path, mode: str, *, on_success: str, host: str) -> None:
        self.blobs = models_dir / "blobs"
        self.mode = mode
        self.host = host
        self._choice = MethodChoice(models_dir, mode, on_success=on_success, host=host)
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
        decision = self._choice.decide(identity.dev)
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
                    why = link_refusal(fd, path, self.blobs)
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
                        self._choice.drop_reflink(identity.dev, exc)
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
        decision = self._choice.decide(dev)
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
        decision = self._choice.choose(dev)
        return [str(m) for m in decision.methods], decision.reason

    def _per_file_refusal(self, method: Method, path: Path, why: str) -> None:
        log.info(
            "local_import.skipped", host=self.host, method=str(method), path=str(path), reason=why
        )

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
                link_verified(fd, path, identity, tmp)
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


def placer_for(url: str, models_dir: Path | None, mode: str, on_success: str) -> Placer | None:
    """The placer of a configured host, or None when its blobs go by HTTP only."""
    if models_dir is None or mode == "off":
        return None
    return Placer(models_dir, mode, on_success=on_success, host=url)

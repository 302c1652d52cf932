"""Blobs placed early (issue 17): a copy or clone made while its drop file settles, held under a
temporary name in the server's ``blobs/`` folder until the import of record commits it.

A complete file closed by its writer is copied (or cloned) as soon as its digest is known, so
the copy, its hash back and its ``fsync`` overlap the settle wait instead of following it. The
server cannot see a temporary name, so nothing it lists or prunes depends on a file that may
still change: the commit (``link(2)`` to the final name, never over an existing blob) waits for
the import of record, which checks first that the drop file still has the identity it was
hashed and copied with, and that the temporary is still the file that was hashed back.
Otherwise the temporary is discarded (``blob.discarded``), as it is when a newer version of the
same file is staged, when the file changes while nothing is being imported (a look at the
folder), and when the daemon stops: a 40 GB stale copy must not wait for a restart.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import structlog

from dropzone.fs.identity import FileKey

log = structlog.get_logger("dropzone.placement")


@dataclass(frozen=True)
class Staged:
    """A verified, fsynced copy of ``path`` as hashed (``identity``), at ``tmp``."""

    path: Path
    identity: FileKey
    digest: str
    tmp: Path
    tmp_key: FileKey  # the temporary as it was hashed back and fsynced
    method: str
    bytes: int
    seconds: float
    trailed: bool = False  # copied while the file arrived, behind its follower (``trailing``)


class Staging:
    """The staged temporaries of one host, by digest; each is committed or discarded once."""

    def __init__(self, host: str) -> None:
        self.host = host
        self._lock = threading.Lock()
        self._staged: dict[str, Staged] = {}

    def keep(self, staged: Staged) -> None:
        """Hold ``staged``; one held before for the same file or digest is discarded."""
        with self._lock:
            old = [
                s
                for s in self._staged.values()
                if s.path == staged.path or s.digest == staged.digest
            ]
            for s in old:
                del self._staged[s.digest]
            self._staged[staged.digest] = staged
        for s in old:
            self.discard(s, "a newer copy of the drop file was staged")

    def take(self, digest: str, path: Path) -> tuple[Staged | None, list[Staged]]:
        """The staged copy of ``digest`` (now the caller's), and those of other versions of
        ``path`` (the caller discards them: the import of record is for ``digest``)."""
        with self._lock:
            mine = self._staged.pop(digest, None)
            others = [s for s in self._staged.values() if s.path == path]
            for s in others:
                del self._staged[s.digest]
        return mine, others

    def peek(self, digest: str) -> Staged | None:
        with self._lock:
            return self._staged.get(digest)

    def take_digest(self, digest: str) -> Staged | None:
        with self._lock:
            return self._staged.pop(digest, None)

    def take_changed(self) -> list[Staged]:
        """The staged copies whose drop file no longer has the identity they were made from."""
        with self._lock:
            held = list(self._staged.values())
        changed = [s for s in held if _identity(s.path) != s.identity]
        with self._lock:
            return [s for s in changed if self._staged.pop(s.digest, None) is s]

    def take_all(self) -> list[Staged]:
        with self._lock:
            held, self._staged = list(self._staged.values()), {}
        return held

    def discard(self, staged: Staged, reason: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staged.tmp)
        log.info(
            "blob.discarded",
            host=self.host,
            digest=staged.digest,
            file=str(staged.path),
            method=staged.method,
            bytes=staged.bytes,
            reason=reason,
        )


def commit_check(staged: Staged, identity: FileKey) -> str | None:
    """Why ``staged`` must not become the blob of the drop file hashed as ``identity``, or
    None. The temporary's own identity stands for its hash back: it is mode 0644, so only
    this user could have written it since, and any write (or chmod) changes its ctime."""
    if staged.identity != identity:
        return "the drop file changed since its early copy"
    try:
        tmp_key = FileKey.from_stat(os.lstat(staged.tmp))
    except OSError as exc:
        return f"the early copy is gone: {exc.strerror or exc}"
    if tmp_key != staged.tmp_key:
        return "the early copy changed since it was verified"
    return None


def _identity(path: Path) -> FileKey | None:
    try:
        return FileKey.from_stat(os.lstat(path))
    except OSError:
        return None

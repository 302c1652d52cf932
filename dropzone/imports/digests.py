"""The digests of a recipe's files: from the cache, from a follower that hashed the file while
it arrived, or hashed now (bounded by the hash slots)."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import structlog

from dropzone.errors import FileChangedError
from dropzone.imports.follow import Follower, Followers
from dropzone.imports.hashing import HashResult, cached_digest, hash_file
from dropzone.imports.progress import Progress
from dropzone.store.state import StateStore

log = structlog.get_logger("dropzone.daemon")


class Digester:
    def __init__(
        self,
        state: StateStore,
        followers: Followers,
        stop: threading.Event,
        progress: Progress | None = None,
    ) -> None:
        self._progress = progress or Progress()
        self._state = state
        self._followers = followers
        self._stop = stop

    def digest_all(
        self, paths: Sequence[Path], expected: Mapping[Path, int | None]
    ) -> dict[Path, HashResult]:
        """The digest of each path. ``expected``: the size each file had when readiness judged
        it complete; a file found at another size has changed since (FileChangedError)."""
        # Followed files first: each follower holds a hash slot until it is finished, so
        # hashing another file of this artifact first would wait on ourselves.
        followers = {p: self._followers.take(p) for p in paths}
        try:
            return {
                p: self._digest(p, expected.get(p), followers[p])
                for p in sorted(paths, key=lambda p: followers[p] is None)
            }
        finally:
            for follower in followers.values():  # after a failure, free their slots
                if follower is not None:
                    follower.cancel()

    def _digest(self, path: Path, expected: int | None, follower: Follower | None) -> HashResult:
        started = time.monotonic()
        try:
            hit = cached_digest(self._state, path)
        except OSError as exc:  # removed or replaced since the scan: look again
            raise FileChangedError(str(path), exc.strerror or str(exc)) from exc
        if hit is not None and (expected is None or hit.size == expected):
            result = hit  # no slot needed to read the cache, and no second read of the file
            if follower is not None:
                follower.cancel()
        elif follower is not None:
            result = follower.finish(expected)
            self._state.put_digest(result.key, result.digest)
        else:
            total = expected if expected is not None else 0
            update, finished = self._progress.track(
                "hash.progress", f"hash {path.name}", total, path=str(path)
            )
            try:
                with self._followers.slot():
                    result = hash_file(
                        path,
                        store=self._state,
                        expected_size=expected,
                        stop=self._stop.is_set,
                        on_progress=update,
                        root=self._followers.root,
                    )
            finally:
                finished()
        if not result.cached:
            seconds = max(time.monotonic() - started, 1e-9)
            log.info(
                "hash.done",
                path=str(path),
                digest=result.digest,
                bytes=result.size,
                seconds=round(seconds, 3),
                # Followed, ``seconds`` is the wait for the digest once the file was complete
                # (the rest was read while it arrived): a rate from it would be nonsense.
                rate_mb_s=None if follower is not None else round(result.size / 1e6 / seconds, 1),
                followed=follower is not None,
                restarts=[str(r) for r in result.restarts],
            )
        return result

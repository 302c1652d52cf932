"""Runs the plan's steps for one recipe on one host, recording each transition first.

HEAD every blob, POST only the missing ones, HEAD again just before create (the server prunes
unreferenced blobs when it restarts), stream ``/api/create`` logging each status, confirm with
``/api/show``. Transient failures schedule a retry with backoff; permanent ones are recorded
until the files or the sidecar change; a digest mismatch asks the caller to re-hash.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import structlog

from dropzone.errors import (
    DigestMismatchError,
    DropzoneError,
    FileChangedError,
    OllamaError,
    StoppedError,
)
from dropzone.fs.identity import FileKey
from dropzone.fs.safeopen import matches_followed, open_verified
from dropzone.imports._keylocks import KeyLocks
from dropzone.imports.linking import still_linked, withdraw_if_changed
from dropzone.imports.placement import Placer, Skip
from dropzone.imports.precheck import base_refusal
from dropzone.imports.progress import Progress
from dropzone.imports.staging import Staged
from dropzone.imports.steps import Recorded, Step, backoff_seconds, next_step, unsupported_feature
from dropzone.ollama.client import OllamaClient
from dropzone.ollama.loadcheck import check_load
from dropzone.recipes.names import is_valid_name, parse_name
from dropzone.recipes.types import Recipe
from dropzone.store.state import HostState, StateStore, request_fingerprint

log = structlog.get_logger("dropzone.importer")


# Answers that say the server side must change (a proxy's token or body limit, a full disk):
# refused with the fix, and retried only after this long (or at ``dropzone retry``).
SERVER_SIDE_BACKOFF_SECONDS = 1800.0
REKEYED_MAX = 4096  # identities changed by our own hard links, remembered for cleanup
SERVER_SIDE_FIXES: dict[int, str] = {
    401: "the server or its proxy wants credentials: set the host's Authorization header",
    403: "the server or its proxy refuses this client: check the token and the proxy's rules",
    413: "a proxy's body size limit is below the blob size: raise it (nginx client_max_body_size)",
    507: "the server has no space left: free space in its models folder",
}


class Result(StrEnum):
    DONE = "done"  # created now
    SKIPPED = "skipped"  # already done with this exact request
    RETRY = "retry"  # transient failure; retry at ``retry_at``
    FAILED = "failed"  # permanent for this request
    REHASH = "rehash"  # the server saw other bytes than the digest says: hash again
    CHANGED = "changed"  # a file of the recipe is not the one hashed any more: a new version
    STOPPED = "stopped"  # the daemon is stopping; resumes on next start


@dataclass(frozen=True)
class Outcome:
    result: Result
    error: str | None = None
    retry_at: float | None = None
    unreachable: bool = False  # the host did not answer at all (probe it: ``host.up``)


@dataclass
class Host:
    """One configured Ollama host; ``version`` is learned on first contact."""

    url: str
    client: OllamaClient
    version: str | None = None
    placer: Placer | None = None  # the server's store is on this machine (issue 17)
    verify: str | None = None  # this host's load check, "show" | "load"; None: the importer's
    # It did not answer, and a probe watches for its return (``host.up``): until then its work
    # waits for that, not for one retry per artifact (an outage costs one probe, not N jobs).
    down: bool = False


class Importer:
    def __init__(
        self,
        state: StateStore,
        *,
        drop_dir: Path,
        upload_slots: threading.Semaphore,
        stop: threading.Event,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        progress: Progress | None = None,
        verify: str = "show",
    ) -> None:
        self.verify = verify  # "show", or "load": load the model once after create (issue 16)
        self._state = state
        self._drop_dir = drop_dir
        self._slots = upload_slots
        self._stop = stop
        self._clock = clock
        self._progress = progress or Progress()
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._blob_locks = KeyLocks()  # one upload per (host, digest) at a time
        # A hard link into a server's store changes the drop file's ctime: hashed identity →
        # the identity the file has now, so later checks (and cleanup) know it as the same.
        self._rekeyed: dict[FileKey, FileKey] = {}
        self._rekey_lock = threading.Lock()

    def import_to_host(
        self,
        key: str,
        recipe: Recipe,
        digests: Mapping[Path, str],
        host: Host,
        identities: Mapping[Path, FileKey],
    ) -> Outcome:
        """Bring ``recipe`` to ``host``; ``key`` names the artifact in the state store.

        ``identities`` are the files as they were hashed: each upload reads from a file whose
        ``fstat`` still matches, and the create goes out only while every file matches."""
        request = recipe.request(digests)
        fingerprint = request_fingerprint(recipe.fingerprinted(request))
        row = self._state.host_state(key, host.url)
        recorded = (
            None
            if row is None
            else Recorded(str(row.state), row.request_fingerprint, row.next_retry_at)
        )
        step = next_step(recorded, fingerprint, self._clock())
        if step is Step.SKIP:
            return Outcome(Result.SKIPPED)
        if step is Step.WAIT and row is not None:
            return Outcome(Result.RETRY, row.last_error, row.next_retry_at)
        if host.down and step is Step.GO:
            return Outcome(Result.RETRY, "the host does not answer: waiting for host.up")
        if step is Step.REFUSED and row is not None:
            return Outcome(Result.FAILED, row.last_error)
        attempts = 0 if row is None or row.request_fingerprint != fingerprint else row.attempts
        ctx = {"path": str(recipe.artifact.path), "model": recipe.model, "host": host.url}
        try:
            # A restart in "creating": was that create carried out? Then it is not sent again.
            if (
                row is not None
                and row.state is HostState.CREATING
                and row.request_fingerprint == fingerprint
                and self._made_meanwhile(key, recipe, host, row.model_before, ctx)
            ):
                return Outcome(Result.DONE)
            return self._run(
                key,
                recipe=recipe,
                digests=digests,
                host=host,
                request=request,
                fingerprint=fingerprint,
                ctx=ctx,
                identities=identities,
            )
        except StoppedError:
            return Outcome(Result.STOPPED)
        except DigestMismatchError as exc:
            self._state.set_host_state(key, host.url, HostState.PENDING, error=str(exc))
            log.warning("blob.digest_mismatch", **ctx, error=str(exc))
            return Outcome(Result.REHASH, str(exc))
        except FileChangedError as exc:
            self._withdraw_links(recipe, digests, identities, host, ctx)
            # Not an error: a new version (or a removal) the next look at the folder meets.
            self._state.set_host_state(key, host.url, HostState.PENDING, error=str(exc))
            log.info("artifact.changed", **ctx, error=str(exc))
            return Outcome(Result.CHANGED, str(exc))
        except OllamaError as exc:
            return self._failed(
                key,
                host,
                exc,
                attempts + 1,
                ctx,
                model=recipe.model,
                fingerprint=fingerprint,
                fix=_fix_for(exc, recipe),
            )

    def _run(
        self,
        key: str,
        *,
        recipe: Recipe,
        digests: Mapping[Path, str],
        host: Host,
        request: Mapping[str, object],
        fingerprint: str,
        ctx: dict[str, str],
        identities: Mapping[Path, FileKey],
    ) -> Outcome:
        if host.version is None:
            host.version = host.client.version()
        refusal = unsupported_feature(recipe.artifact.kind, host.version)
        refusal = refusal or base_refusal(request, host.client)  # e.g. quantize a Q4 base
        if refusal is not None:
            self._state.set_host_state(
                key,
                host.url,
                HostState.REFUSED,
                model=recipe.model,
                request_fingerprint=fingerprint,
                error=refusal,
            )
            log.error("model.failed", **ctx, error=refusal, version=host.version)
            return Outcome(Result.FAILED, refusal)
        self._state.set_host_state(
            key, host.url, HostState.UPLOADING, model=recipe.model, request_fingerprint=fingerprint
        )
        blobs = {digests[p]: (p, identities[p]) for p in recipe.blob_paths()}
        self._ensure_blobs(blobs, host, ctx)
        # The server prunes unreferenced blobs at start: one may be gone if it restarted since.
        self._ensure_blobs(blobs, host, ctx, again=True)
        verify_unchanged(
            self._drop_dir, recipe, {p: self.current_key(k) for p, k in identities.items()}
        )
        before = _stamp(host, recipe.model)
        self._state.set_host_state(key, host.url, HostState.CREATING, model_before=before)
        started = time.monotonic()
        for status in host.client.create(request):
            self._check_stop()
            log.info("model.create.status", **ctx, **_status_fields(status))
        host.client.show(recipe.model)
        self._follow_links(recipe, digests, identities, host)
        verify = host.verify or self.verify
        if (refused := check_load(host.client, recipe.model, verify, ctx)) is not None:
            self._state.set_host_state(key, host.url, HostState.REFUSED, error=refused)
            return Outcome(Result.FAILED, refused)
        self._state.set_host_state(key, host.url, HostState.DONE, attempts=0)
        seconds = round(time.monotonic() - started, 3)
        log.info("model.created", **ctx, seconds=seconds)
        return Outcome(Result.DONE)

    def _made_meanwhile(
        self,
        key: str,
        recipe: Recipe,
        host: Host,
        before: str | None,
        ctx: dict[str, str],
    ) -> bool:
        """After a restart in ``creating``: True (recorded done) when the server has the model
        and it changed since just before our create went out, so that create was carried out.
        A quantization or a conversion takes minutes of server work: it is not sent twice.
        A model that is missing, or unchanged since (another request made it), is created."""
        now = _stamp(host, recipe.model)
        if before is None or now in ("", before):
            return False
        host.client.show(recipe.model)
        self._state.set_host_state(key, host.url, HostState.DONE, attempts=0)
        log.info("model.created", **ctx, confirmed_after_restart=True)
        return True

    def upload_early(
        self, blobs: Mapping[str, tuple[Path, FileKey]], host: Host, artifact: Path
    ) -> None:
        """Upload the blobs of an artifact that is complete but still settling.

        Nothing is recorded and nothing is retried: the import that follows once the artifact
        is ready finds the blobs with its ``HEAD`` (waiting for an upload still running here),
        and any failure met here it meets again and handles. A blob sent for bytes that then
        change is never referenced by a model; the server prunes it when it restarts.
        """
        ctx = {"path": str(artifact), "host": host.url, "early": True}
        try:
            self._ensure_blobs(blobs, host, ctx)
        except StoppedError:
            pass
        except (DropzoneError, OSError) as exc:
            log.info("blob.upload.abandoned", **ctx, error=str(exc))

    def _ensure_blobs(
        self,
        blobs: Mapping[str, tuple[Path, FileKey]],
        host: Host,
        ctx: Mapping[str, object],
        *,
        again: bool = False,
    ) -> None:
        for digest, (path, hashed) in blobs.items():
            self._check_stop()
            with self._blob_locks.hold((host.url, digest), self._stop):
                if host.client.blob_exists(digest):
                    if not again:
                        log.info("blob.exists", **ctx, digest=digest, file=str(path))
                    if host.placer is not None:  # an early copy of it is not needed now
                        host.placer.discard(digest, "the server has the blob already")
                    continue
                identity = self.current_key(hashed)
                with self._slots:
                    if not self._placed(digest, path, identity, host, ctx):
                        self._upload(digest, path, identity, host, ctx)

    def _placed(
        self,
        digest: str,
        path: Path,
        identity: FileKey,
        host: Host,
        ctx: Mapping[str, object],
    ) -> bool:
        """True when no upload is needed now: the blob was placed in the host's store on this
        machine (issue 17), or is there already, or staged early under a temporary name for
        the import of record to commit, or an early upload leaves the hard link to the import
        itself. False: upload it."""
        if host.placer is None:
            return False
        early = bool(ctx.get("early"))
        result = host.placer.place(
            self._drop_dir, path, identity, digest, early=early, cancel=self._stop
        )
        if result is Skip.HTTP:
            return False
        if result is Skip.EXISTS:
            log.info("blob.exists", **ctx, digest=digest, file=str(path), in_store=True)
            return True
        if result is Skip.LATER:
            return True
        if isinstance(result, Staged):
            log.info(
                "blob.staged",
                **ctx,
                digest=digest,
                file=str(path),
                method=result.method,
                bytes=result.bytes,
                seconds=round(result.seconds, 3),
                trailed=result.trailed,
            )
            return True
        if result.identity != identity:
            self._rekey(identity, result.identity)
        seconds = max(result.seconds, 1e-9)
        log.info(
            "blob.placed",
            **ctx,
            digest=digest,
            file=str(path),
            method=result.method,
            bytes=result.bytes,
            seconds=round(seconds, 3),
            rate_mb_s=round(result.bytes / 1e6 / seconds, 1),
            staged=result.staged,
            trailed=result.trailed,
        )
        return True

    def current_key(self, key: FileKey) -> FileKey:
        """The identity a file hashed as ``key`` has now: ``key`` itself unless dropzone's own
        hard link into a server's store changed its ctime."""
        with self._rekey_lock:
            return self._rekeyed.get(key, key)

    def _rekey(self, old: FileKey, new: FileKey) -> None:
        with self._rekey_lock:
            for hashed, now in list(self._rekeyed.items()):
                if now == old:
                    self._rekeyed[hashed] = new
            self._rekeyed[old] = new
            while len(self._rekeyed) > REKEYED_MAX:  # bounded: the oldest are long cleaned
                del self._rekeyed[next(iter(self._rekeyed))]

    def _follow_links(
        self,
        recipe: Recipe,
        digests: Mapping[Path, str],
        identities: Mapping[Path, FileKey],
        host: Host,
    ) -> None:
        """The server's create touched the mtime of each blob it used; a blob hard-linked
        from a drop file is that file, so cleanup must know it by its identity now."""
        if host.placer is None:
            return
        for path in recipe.blob_paths():
            hashed, digest = identities.get(path), digests.get(path)
            if hashed is None or digest is None or self.current_key(hashed) == hashed:
                continue  # not linked by us
            now = still_linked(host.placer.blobs, digest, path, hashed)
            if now is not None:
                self._rekey(self.current_key(hashed), now)

    def _withdraw_links(
        self,
        recipe: Recipe,
        digests: Mapping[Path, str],
        identities: Mapping[Path, FileKey],
        host: Host,
        ctx: Mapping[str, object],
    ) -> None:
        """A file changed after it was hard-linked into the host's store: that blob no
        longer holds the bytes its name says, so it is removed before anything uses it."""
        if host.placer is None:
            return
        for path in recipe.blob_paths():
            digest, hashed = digests.get(path), identities.get(path)
            if digest is None or hashed is None:
                continue
            if withdraw_if_changed(host.placer.blobs, digest, hashed):
                log.warning("blob.withdrawn", **ctx, digest=digest, file=str(path))

    def _upload(
        self,
        digest: str,
        path: Path,
        identity: FileKey,
        host: Host,
        ctx: Mapping[str, object],
    ) -> None:
        fd = _open_hashed(self._drop_dir, path, identity)
        size = identity.size
        started = time.monotonic()
        progress, finished = self._progress.track(
            "blob.upload.progress", f"upload {path.name}", size, **ctx, digest=digest
        )
        try:
            created = host.client.push_blob(digest, fd, progress=progress, cancel=self._stop)
        finally:
            finished()
            os.close(fd)
        seconds = max(time.monotonic() - started, 1e-9)
        log.info(
            "blob.uploaded",
            **ctx,
            digest=digest,
            file=str(path),
            bytes=size,
            seconds=round(seconds, 3),
            rate_mb_s=round(size / 1e6 / seconds, 1),
            created=created,
        )

    def _failed(
        self,
        key: str,
        host: Host,
        exc: OllamaError,
        attempts: int,
        ctx: dict[str, str],
        *,
        model: str,
        fingerprint: str,
        fix: str | None = None,
    ) -> Outcome:
        # The fingerprint is recorded even when the host failed before the first transition
        # (its version could not be read): without it the plan sees "another request" and
        # goes again at once, a hot loop against a host that is down.
        retry_at = self._clock() + backoff_seconds(attempts, self._rng) if exc.transient else None
        server_side = SERVER_SIDE_FIXES.get(exc.status or 0)
        if server_side is not None:
            # Not this request's fault, and not over in seconds either: someone must fix the
            # server or the proxy. Retried, but rarely (``dropzone retry`` once it is fixed).
            retry_at = self._clock() + max(
                SERVER_SIDE_BACKOFF_SECONDS, backoff_seconds(attempts, self._rng)
            )
        self._state.set_host_state(
            key,
            host.url,
            HostState.REFUSED if retry_at is None else HostState.WAITING,
            model=model,
            request_fingerprint=fingerprint,
            attempts=attempts,
            error=str(exc),
            next_retry_at=retry_at,
        )
        if server_side is not None and retry_at is not None:
            log.error(
                "artifact.refused",
                **ctx,
                error=str(exc),
                status=exc.status,
                fix=server_side,
                retry_in=round(retry_at - self._clock(), 1),
            )
            return Outcome(Result.RETRY, str(exc), retry_at)
        if retry_at is not None:
            retry_in = round(retry_at - self._clock(), 1)
            if exc.status is None:
                log.warning("ollama.unreachable", **ctx, error=str(exc), attempts=attempts)
            log.warning(
                "retry.scheduled", **ctx, error=str(exc), attempts=attempts, retry_in=retry_in
            )
            host.version = None  # it may come back as another version
            return Outcome(Result.RETRY, str(exc), retry_at, unreachable=exc.status is None)
        log.error("model.failed", **ctx, error=str(exc), status=exc.status, fix=fix)
        return Outcome(Result.FAILED, str(exc))

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise StoppedError("stopping")


def _fix_for(exc: OllamaError, recipe: Recipe) -> str | None:
    """What the operator can do about a refusal, where the server's text alone does not say."""
    base = recipe.fields.get("from")
    if isinstance(base, str) and "pull model manifest" in str(exc):
        # The create pulled a base this host lacks, and the registry does not have it.
        return (
            f"run 'ollama pull {base}' on that host (or copy the model there), or name a"
            " model the host has in FROM; then dropzone retry"
        )
    return None


def _stamp(host: Host, model: str) -> str:
    """The model's ``modified_at`` on ``host`` ('' when it has no such model): a create that
    the server carried out changes it, whatever the clocks of the two machines say."""
    wanted = parse_name(model).key()
    for entry in host.client.tags():
        name = entry.get("name") or entry.get("model")
        if isinstance(name, str) and is_valid_name(name) and parse_name(name).key() == wanted:
            return str(entry.get("modified_at") or "?")
    return ""


def _open_hashed(drop_dir: Path, path: Path, identity: FileKey) -> int:
    """``path`` opened as the very file that was hashed; ``FileChangedError`` otherwise."""
    try:
        return open_verified(drop_dir, path, expect=identity)
    except OSError as exc:  # removed, replaced by a link out, a FIFO: not what was hashed
        raise FileChangedError(str(path), exc.strerror or str(exc)) from exc


def verify_unchanged(drop_dir: Path, recipe: Recipe, identities: Mapping[Path, FileKey]) -> None:
    """``FileChangedError`` unless every file of ``recipe`` is still the one hashed and its
    sidecar the one read: a create goes out only for verified bytes."""
    for path in recipe.blob_paths():
        os.close(_open_hashed(drop_dir, path, identities[path]))
    sidecar, key = recipe.sidecar, recipe.sidecar_key
    if sidecar is not None and key is not None and not matches_followed(sidecar, key):
        raise FileChangedError(str(sidecar), "changed since it was read")


def _status_fields(status: Mapping[str, object]) -> dict[str, object]:
    fields: dict[str, object] = {"status": status.get("status")}
    for name in ("digest", "total", "completed"):
        if name in status:
            fields[name] = status[name]
    return fields

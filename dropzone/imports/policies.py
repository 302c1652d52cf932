"""What happens to files after import (``on_success``) and to models when files go
(``on_removed``).

Cleanup removes only what was imported: the recipe's own files (weights, the files Ollama's
converter reads, adapters, the sidecar), each only while ``lstat`` still shows the identity that
was hashed or read, then folders left empty by that. Never a whole folder, never a file that
belongs to no artifact. If any file of the recipe is another version now, nothing is cleaned:
that version is imported next, and cleaned after its own import. A file that another artifact
still needs (a projector beside two models) stays until that one is done too.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import structlog

from dropzone.errors import OllamaError
from dropzone.fs.identity import FileKey
from dropzone.fs.safeopen import matches
from dropzone.imports.importer import Host
from dropzone.recipes.types import Recipe
from dropzone.store.state import ArtifactRow, HostState, StateStore

log = structlog.get_logger("dropzone.policies")

IMPORTED_DIR = ".imported"  # hidden, so the scanner never sees what was moved there


def owned_files(recipe: Recipe, identities: Mapping[Path, FileKey]) -> dict[Path, FileKey]:
    """The recipe's own files with the identity each had when it was hashed or read."""
    files = {p: identities[p] for p in recipe.blob_paths() if p in identities}
    if recipe.sidecar is not None and recipe.sidecar_key is not None:
        files[recipe.sidecar] = recipe.sidecar_key
    return files


def _free_name(target: Path) -> Path:
    """``target``, or ``target.1``, ``target.2``… if an earlier import left that name."""
    candidate, n = target, 0
    while os.path.lexists(candidate):
        n += 1
        candidate = target.with_name(f"{target.name}.{n}")
    return candidate


def _move_aside(path: Path, drop_dir: Path) -> None:
    """Move ``path`` under ``.imported/`` keeping its relative path, never over a name taken:
    a hard link fails with EEXIST instead of replacing, so a name taken between the look and
    the move is not lost either."""
    target = _free_name(drop_dir / IMPORTED_DIR / path.relative_to(drop_dir))
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(path, target, follow_symlinks=False)
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            return _move_aside(path, drop_dir)
        os.rename(path, target)  # no hard links here (some FUSE file systems)
        return None
    os.unlink(path)
    return None


def _remove_empty_parents(paths: Sequence[Path], drop_dir: Path) -> None:
    for parent in sorted({p.parent for p in paths}, key=lambda p: len(p.parts), reverse=True):
        folder = parent
        while folder != drop_dir and folder.is_relative_to(drop_dir):
            try:
                folder.rmdir()  # only succeeds on an empty folder
            except OSError:
                break
            folder = folder.parent


def apply_on_success(
    policy: str,
    recipe: Recipe,
    identities: Mapping[Path, FileKey],
    *,
    rel: str,
    drop_dir: Path,
    state: StateStore,
    needed_elsewhere: Callable[[Path], bool],
) -> None:
    """Apply ``policy`` to the files of ``recipe`` (imported, done on every host)."""
    if policy == "keep":
        return
    files = owned_files(recipe, identities)
    present = {p: k for p, k in files.items() if os.path.lexists(p)}
    # ``matches`` looks at the path itself: a symlink is never removed (what was hashed is its
    # target, which may be another artifact's file).
    changed = [p for p, k in present.items() if not matches(p, k)]
    if changed:
        log.info(
            "artifact.cleanup_skipped",
            path=str(recipe.artifact.path),
            policy=policy,
            changed=[str(p) for p in changed],
            reason="another version is there now: it is imported, then cleaned",
        )
        return
    done: list[Path] = []
    kept: list[str] = []
    for path in present:
        if needed_elsewhere(path):
            kept.append(str(path))
            continue
        try:
            if policy == "delete":
                os.unlink(path)
            else:
                _move_aside(path, drop_dir)
        except OSError as exc:
            log.error(
                "artifact.cleanup_failed",
                path=str(path),
                policy=policy,
                error=exc.strerror or str(exc),
                fix="make the drop folder writable by the dropzone user",
            )
            return
        done.append(path)
    _remove_empty_parents(done, drop_dir)
    # Forget the artifact: its absence is our doing, not a removal to act on.
    state.forget_artifact(rel)
    log.info(
        "artifact.cleaned",
        path=str(recipe.artifact.path),
        policy=policy,
        model=recipe.model,
        files=len(done),
        kept_for_others=kept,
    )


def apply_on_removed(
    policy: str, row: ArtifactRow, hosts: Sequence[Host], state: StateStore
) -> None:
    """The artifact ``row`` is no longer in the drop folder.

    Under ``delete``, a host that cannot delete the model now (down, 5xx) keeps its row, and so
    does the artifact: the next full rescan finds it removed again and retries that host only
    (hosts that succeeded have forgotten their rows). A model already gone (404) counts as
    deleted. The artifact is forgotten once no host is left to delete from.
    """
    left = 0
    if policy == "delete":
        for host in hosts:
            host_row = state.host_state(row.path, host.url)
            if host_row is None or host_row.state is not HostState.DONE or not host_row.model:
                continue
            ctx = {"path": row.path, "host": host.url, "model": host_row.model}
            try:
                host.client.delete(host_row.model)
            except OllamaError as exc:
                if exc.status != 404:
                    left += 1
                    log.warning(
                        "model.delete_failed",
                        **ctx,
                        error=str(exc),
                        fix="retried at the next full rescan (rescan_interval, or SIGHUP)",
                    )
                    continue
                log.info("model.deleted", **ctx, found=False)
            else:
                log.info("model.deleted", **ctx, found=True)
            state.forget_host(row.path, host.url)
    if left:
        return
    log.info("artifact.removed", path=row.path, model=row.model, policy=policy)
    state.forget_artifact(row.path)

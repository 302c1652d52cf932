"""What happens to files after import (``on_success``) and to models when files go
(``on_removed``)."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import structlog

from dropzone.errors import OllamaError
from dropzone.importer import Host
from dropzone.model import ArtifactKind, Recipe
from dropzone.scanner import ScannedArtifact
from dropzone.state import ArtifactRow, HostState, StateStore

log = structlog.get_logger("dropzone.policies")

IMPORTED_DIR = ".imported"  # hidden, so the scanner never sees what was moved there


def _owned_paths(sa: ScannedArtifact, recipe: Recipe) -> list[Path]:
    """The artifact's own files (a safetensors folder as a whole) and its sidecar."""
    art = sa.artifact
    if art.kind in (ArtifactKind.SAFETENSORS, ArtifactKind.SAFETENSORS_ADAPTER):
        paths = [art.path]
    else:
        paths = [f.path for f in art.files]
    if art.sidecar is not None and not art.sidecar.is_relative_to(art.path):
        paths.append(art.sidecar)
    return paths


def _free_name(target: Path) -> Path:
    """``target``, or ``target.1``, ``target.2``… if an earlier import left that name: moving
    a folder onto an existing one would nest it inside instead of replacing it."""
    candidate, n = target, 0
    while candidate.exists():
        n += 1
        candidate = target.with_name(f"{target.name}.{n}")
    return candidate


def apply_on_success(
    policy: str, sa: ScannedArtifact, recipe: Recipe, drop_dir: Path, state: StateStore
) -> None:
    if policy == "keep":
        return
    for path in _owned_paths(sa, recipe):
        try:
            if policy == "delete":
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
            else:
                target = _free_name(drop_dir / IMPORTED_DIR / path.relative_to(drop_dir))
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(path, target)
        except OSError as exc:
            log.error(
                "artifact.cleanup_failed",
                path=str(path),
                policy=policy,
                error=str(exc),
                fix="make the drop folder writable by the dropzone user",
            )
            return
    # Forget the artifact: its absence is our doing, not a removal to act on.
    state.forget_artifact(sa.rel_path)
    log.info("artifact.cleaned", path=str(sa.artifact.path), policy=policy, model=recipe.model)


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

"""The pull Ollama runs inside a create whose ``from`` is not local (ollama-api.md §4.4.1).

The "registry" is another emulator store (a folder of ``blobs/`` and ``manifests/``): a name it
holds is copied in with the pull's own statuses (``pulling manifest``, ``pulling <12 hex>`` with
``digest``/``total``/``completed``, ``verifying sha256 digest``, ``writing manifest``,
``success``); any other name fails after ``pulling manifest`` with Ollama's registry-404 text.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

from dropzone.recipes.names import Name
from dropzone.testing.emulator.sources import CreateFailureError
from dropzone.testing.emulator.store import Store

NOT_FOUND = "pull model manifest: file does not exist"
CHUNK = 1 << 20


def pull(
    store: Store, registry: Store | None, name: Name, emit: Callable[[dict[str, Any]], None]
) -> None:
    """Copy ``name`` from ``registry`` into ``store``, emitting the pull's statuses."""
    emit({"status": "pulling manifest"})
    found = registry.load(registry.existing_name(name)) if registry is not None else None
    if found is None or registry is None:
        raise CreateFailureError(NOT_FOUND)
    for layer in [*found.layers, found.config]:
        source = registry.blob_path(layer.digest)
        status = "pulling " + layer.digest.removeprefix("sha256:")[:12]
        progress = {"status": status, "digest": layer.digest, "total": layer.size}
        emit(progress)
        if not store.has_blob(layer.digest):
            temp, out = store.temp_file()
            with out, source.open("rb") as src:
                shutil.copyfileobj(src, out, CHUNK)
            store.commit_file(temp)
        emit({**progress, "completed": layer.size})
    emit({"status": "verifying sha256 digest"})
    emit({"status": "writing manifest"})
    target = store.manifest_path(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(found.raw)
    emit({"status": "success"})

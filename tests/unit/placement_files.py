"""What the placement tests share: a drop file with its digest, its identity, and where the
server's store keeps its blob."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from dropzone.fs.identity import FileKey


def drop_file(
    drop: Path, name: str = "model.gguf", *, data: bytes | None = None, size: int = 300_000
) -> tuple[Path, str]:
    drop.mkdir(parents=True, exist_ok=True)
    path = drop / name
    data = os.urandom(size) if data is None else data
    path.write_bytes(data)
    return path, "sha256:" + hashlib.sha256(data).hexdigest()


def key(path: Path) -> FileKey:
    return FileKey.from_stat(os.lstat(path))


def blob(models: Path, digest: str) -> Path:
    return models / "blobs" / digest.replace(":", "-")

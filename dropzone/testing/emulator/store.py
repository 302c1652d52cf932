"""The emulator's on-disk model store, laid out as Ollama's (ollama-api.md §9).

::

    STORE/blobs/sha256-<hex>                         content-addressed, mode 0644
    STORE/manifests/<host>/<namespace>/<model>/<tag> Go-style compact JSON + newline

Blob writes go through a temp file in ``blobs/`` and an atomic rename. Manifest writes, layer
removal and pruning hold one lock so concurrent creates and deletes see consistent references.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dropzone.recipes.names import InvalidNameError, Name, parse_name
from dropzone.testing.emulator.gojson import go_json_line

DIGEST_RE = re.compile(r"^sha256[:-][0-9a-fA-F]{64}$")
BLOB_NAME_RE = re.compile(r"^sha256-[0-9a-f]{64}$")
MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_MEDIA_TYPE = "application/vnd.docker.container.image.v1+json"
_IMAGE = "application/vnd.ollama.image."
MODEL, PROJECTOR = _IMAGE + "model", _IMAGE + "projector"
ADAPTER, DRAFT = _IMAGE + "adapter", _IMAGE + "draft"
TEMPLATE, SYSTEM, LICENSE = _IMAGE + "template", _IMAGE + "system", _IMAGE + "license"
PARAMS, MESSAGES = _IMAGE + "params", _IMAGE + "messages"
GGUF_MEDIA_TYPES = (MODEL, PROJECTOR, ADAPTER, DRAFT)


class InvalidDigestError(ValueError):
    def __init__(self) -> None:
        super().__init__("invalid digest format")


@dataclass
class Layer:
    """A manifest layer; ``status`` is the create progress text it earned (not serialised).

    ``name`` is a tensor's or JSON file's name in the manifests of Ollama's safetensors import
    (``x/create``); the emulator never makes such layers but must keep them (``manifest.Layer``).
    """

    media_type: str
    digest: str
    size: int
    from_: str = ""
    status: str = ""
    name: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest}
        out["size"] = self.size
        if self.from_:
            out["from"] = self.from_
        if self.name:
            out["name"] = self.name
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Layer:
        return cls(
            data["mediaType"],
            data["digest"],
            int(data["size"]),
            data.get("from", ""),
            name=data.get("name", ""),
        )


@dataclass
class StoredModel:
    name: Name
    path: Path
    raw: bytes
    config: Layer
    layers: list[Layer]

    @property
    def digest_hex(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()

    @property
    def mtime_ns(self) -> int:
        return self.path.stat().st_mtime_ns


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.manifests = root / "manifests"
        self.lock = threading.RLock()
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.manifests.mkdir(parents=True, exist_ok=True)

    # --- blobs ------------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        """``BlobsPath``: syntax check, then ``:`` → ``-``; hex case is kept."""
        if not DIGEST_RE.match(digest):
            raise InvalidDigestError
        return self.blobs / digest.replace(":", "-")

    def has_blob(self, digest: str) -> bool:
        try:
            return self.blob_path(digest).exists()
        except InvalidDigestError:
            return False

    def temp_file(self, prefix: str = "sha256-") -> tuple[Path, io.FileIO]:
        """``os.CreateTemp(blobs, prefix)``: a new file named prefix + random digits."""
        while True:
            path = self.blobs / f"{prefix}{secrets.randbelow(9 * 10**9) + 10**9}"
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue
            return path, os.fdopen(fd, "wb", buffering=0)

    def commit_blob(self, temp: Path, hex_digest: str) -> tuple[str, bool]:
        """Move a finished temp file to its digest name; (digest, created). Touches the blob."""
        digest = "sha256:" + hex_digest
        final = self.blob_path(digest)
        created = not final.exists()
        if created:
            os.replace(temp, final)
            final.chmod(0o644)
        else:
            temp.unlink(missing_ok=True)
        os.utime(final)
        return digest, created

    def write_blob_bytes(self, data: bytes) -> tuple[str, bool]:
        temp, f = self.temp_file()
        try:
            with f:
                f.write(data)
            return self.commit_blob(temp, hashlib.sha256(data).hexdigest())
        finally:
            temp.unlink(missing_ok=True)

    def commit_file(self, temp: Path) -> tuple[str, int, bool]:
        """Hash a finished temp file and commit it; (digest, size, created)."""
        h = hashlib.sha256()
        with temp.open("rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        size = temp.stat().st_size
        digest, created = self.commit_blob(temp, h.hexdigest())
        return digest, size, created

    def new_layer(self, data: bytes, media_type: str) -> Layer:
        """``NewLayer`` for small content (template, system, params…)."""
        digest, created = self.write_blob_bytes(data)
        return Layer(media_type, digest, len(data), status=_status(created, digest))

    def file_layer(self, temp: Path, media_type: str) -> Layer:
        digest, size, created = self.commit_file(temp)
        return Layer(media_type, digest, size, status=_status(created, digest))

    def existing_layer(self, digest: str, media_type: str, from_: str = "") -> Layer:
        """``NewLayerFromLayer``: reuse a stored blob (stat errors propagate, as in Go)."""
        path = self.blob_path(digest)
        size = path.stat().st_size
        os.utime(path)
        return Layer(media_type, digest, size, from_, f"using existing layer {digest}")

    # --- manifests --------------------------------------------------------------------------

    def manifest_path(self, name: Name) -> Path:
        return self.manifests / name.host / name.namespace / name.model / name.tag

    def names(self) -> list[Name]:
        """Every stored model name (exactly four levels under ``manifests/``)."""
        found = []
        for path in sorted(self.manifests.glob("*/*/*/*")):
            if not path.is_file():
                continue
            host, namespace, model, tag = path.relative_to(self.manifests).parts
            try:
                name = parse_name(f"{host}/{namespace}/{model}:{tag}")
            except InvalidNameError:
                continue
            found.append(name)
        return found

    def existing_name(self, name: Name) -> Name:
        """``getExistingName``: the stored name equal to ``name`` ignoring case, else ``name``.

        Whole-name matching (the newer server code); older servers adopted the casing of each
        part separately, which could borrow a tag's casing from an unrelated model.
        """
        for other in self.names():
            if other.key() == name.key():
                return other
        return name

    def load(self, name: Name) -> StoredModel | None:
        path = self.manifest_path(name)
        try:
            raw = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        data = _json_loads(raw)
        layers = [Layer.from_json(item) for item in data.get("layers") or []]
        return StoredModel(name, path, raw, Layer.from_json(data["config"]), layers)

    def models(self) -> Iterator[StoredModel]:
        for name in self.names():
            model = self.load(name)
            if model is not None:
                yield model

    def write_manifest(self, name: Name, config: Layer, layers: list[Layer]) -> bytes:
        body = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": config.to_json(),
            "layers": [layer.to_json() for layer in layers],
        }
        raw = go_json_line(body)
        path = self.manifest_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.tmp{secrets.randbelow(10**9)}")
        temp.write_bytes(raw)
        os.replace(temp, path)
        return raw

    def referenced(self) -> set[str]:
        """Blob file names referenced by any manifest (config and layers)."""
        refs = set()
        for model in self.models():
            for layer in [model.config, *model.layers]:
                refs.add(layer.digest.replace(":", "-"))
        return refs

    def remove_unreferenced(self, layers: list[Layer]) -> None:
        """``Layer.Remove`` for each: delete the blob unless some manifest still uses it."""
        refs = self.referenced()
        for layer in layers:
            file_name = layer.digest.replace(":", "-")
            if file_name not in refs:
                (self.blobs / file_name).unlink(missing_ok=True)

    def delete_model(self, model: StoredModel) -> None:
        model.path.unlink()
        parent = model.path.parent
        while parent != self.manifests:  # prune empty manifest directories
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
        self.remove_unreferenced([model.config, *model.layers])

    def prune(self, min_age_seconds: float) -> list[str]:
        """Start-up ``PruneLayers``: drop old blobs that are stale temps or unreferenced."""
        for path in self.blobs.glob("sha256:*"):  # fixblobs: legacy colon names
            path.rename(path.with_name(path.name.replace(":", "-")))
        refs = self.referenced()
        now = time.time()
        removed = []
        for path in sorted(self.blobs.iterdir()):
            try:
                age = now - path.stat().st_mtime
            except FileNotFoundError:
                continue
            if age < min_age_seconds:
                continue
            if BLOB_NAME_RE.match(path.name) and path.name in refs:
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path.name)
        return removed


def _status(created: bool, digest: str) -> str:
    return f"{'creating new layer' if created else 'using existing layer'} {digest}"


def _json_loads(raw: bytes) -> Any:
    return json.loads(raw)

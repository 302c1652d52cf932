"""Frozen value types shared across modules: artifacts and recipes.

An *artifact* is what sits in the drop folder and becomes (part of) a model. A *recipe* is
what dropzone will ask one Ollama host to create from it: the ``/api/create`` request with
file paths where the digests will go. Digests are filled in by ``Recipe.request``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from dropzone.fs.bytenames import shown
from dropzone.fs.identity import FileKey


class ArtifactKind(StrEnum):
    GGUF = "gguf"  # one model GGUF (with its projector, if any)
    GGUF_SPLIT = "gguf-split"  # NAME-0000K-of-0000N.gguf shards, one model
    GGUF_ADAPTER = "gguf-adapter"  # general.type = adapter: only through a sidecar
    SAFETENSORS = "safetensors"  # a folder with config.json and *.safetensors
    SAFETENSORS_ADAPTER = "safetensors-adapter"  # a folder with adapter_config.json
    RECIPE = "recipe"  # a Modelfile or sidecar alone whose FROM names a model (no weights)


@dataclass(frozen=True, slots=True)
class ArtifactFile:
    """One file of an artifact: its key in the ``files`` map and where it lies."""

    key: str
    path: Path
    # Bytes the scan saw. Once the artifact is complete this is the size judged complete, and
    # hashing must find exactly this size (formats.completeness has the rule, not the hasher).
    seen_size: int | None = None


@dataclass(frozen=True, slots=True)
class Artifact:
    kind: ArtifactKind
    path: Path  # identity: the GGUF file (first shard for a split group) or the folder
    files: tuple[ArtifactFile, ...]
    sidecar: Path | None = None
    file_type: str | None = None  # GGUF general.file_type name (F16, Q4_K_M, …) when known
    architecture: str | None = None  # GGUF general.architecture or config.json architectures[0]

    @property
    def is_adapter(self) -> bool:
        return self.kind in (ArtifactKind.GGUF_ADAPTER, ArtifactKind.SAFETENSORS_ADAPTER)


@dataclass(frozen=True)
class Recipe:
    """What to create: the ``/api/create`` fields, with paths where digests will go."""

    model: str
    artifact: Artifact
    sidecar: Path | None
    files: Mapping[str, Path] = field(default_factory=dict)  # key → path (empty with ``from``)
    adapters: Mapping[str, Path] = field(default_factory=dict)
    fields: Mapping[str, Any] = field(default_factory=dict)  # from, system, template, …
    draft_files: Mapping[str, Path] = field(default_factory=dict)  # speculative-decoding draft
    sidecar_key: FileKey | None = None  # the identity of the sidecar as it was read
    sidecar_digest: str | None = None  # and the digest of what was read
    # What the base model was when this was made (per host): a base dropzone re-creates
    # changes it, and so the fingerprint, and so the model made from it is made again.
    base_token: str | None = None

    def blob_paths(self) -> list[Path]:
        """Every file whose bytes must be on the server, in a stable order."""
        return sorted({*self.files.values(), *self.adapters.values(), *self.draft_files.values()})

    def fingerprinted(self, request: Mapping[str, Any]) -> Mapping[str, Any]:
        """What the request fingerprint is taken of: the request, and the base's version."""
        return {**request, "dropzone.base": self.base_token} if self.base_token else request

    def request(self, digests: Mapping[Path, str]) -> dict[str, Any]:
        """The ``/api/create`` body (without ``stream``) given ``path → sha256:<hex>``."""
        # Keys are names for the server, sent as JSON text: one that is not UTF-8 goes as it is
        # shown (``mod\xe8le.gguf``, issue 13). The bytes still come from the path.
        body: dict[str, Any] = {"model": self.model}
        if self.files:
            body["files"] = {shown(k): digests[p] for k, p in sorted(self.files.items())}
        if self.adapters:
            body["adapters"] = {shown(k): digests[p] for k, p in sorted(self.adapters.items())}
        if self.draft_files:
            body["draft_files"] = {
                shown(k): digests[p] for k, p in sorted(self.draft_files.items())
            }
        body.update(self.fields)
        return body

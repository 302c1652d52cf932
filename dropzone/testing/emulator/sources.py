"""GGUF sources of ``/api/create``: ``files`` type detection and GGUF files, with the v0.30+
split-shard merge (ollama-api.md §4.4.2, §4.4.3a, §12.3). Shared by the safetensors sources.
"""

from __future__ import annotations

import io
import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from dropzone.testing.emulator.gguf_view import GGUFError, GGUFView, decode_gguf, has_magic
from dropzone.testing.emulator.gguf_writer import (
    TensorSource,
    rewrite_entries,
    tensor_sources,
    write_gguf,
)
from dropzone.testing.emulator.store import (
    ADAPTER,
    DRAFT,
    MODEL,
    PROJECTOR,
    InvalidDigestError,
    Layer,
    Store,
)

SPLIT_NAME_RE = re.compile(r"^(.*)-(\d{5})-of-(\d{5})\.gguf$")
ONLY_GGUF = "supplied file was not in GGUF format"


class CreateFailureError(Exception):
    """A create error with the HTTP status Ollama attaches (500 when it attaches none)."""

    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class Context(Protocol):
    store: Store
    split_gguf: bool

    def emit(self, progress: dict[str, Any]) -> None: ...


@dataclass
class WeightLayer:
    """A layer whose blob is GGUF (``header``), or another reused layer (``header`` None)."""

    layer: Layer
    header: GGUFView | None = None
    from_files: bool = False
    key: str = ""


def detect_type(store: Store, files: dict[str, str]) -> str:
    """``detectModelTypeFromFiles`` in sorted key order (Go's is random): gguf or safetensors."""
    for key in sorted(files):
        if key.endswith(".safetensors"):
            return "safetensors"
        if key.endswith(".gguf"):
            return "gguf"
        try:
            with store.blob_path(files[key]).open("rb") as f:
                magic = f.read(4)
        except (InvalidDigestError, OSError):
            break
        if not magic:
            break
        if has_magic(magic):
            return "gguf"
    raise CreateFailureError("unknown type", 400)


def blob(store: Store, digest: str, status: int) -> Path:
    try:
        return store.blob_path(digest)
    except InvalidDigestError as exc:
        raise CreateFailureError(str(exc), status) from None


def media_type_of(header: GGUFView) -> str:
    kind = header.general_type
    if kind == "adapter":
        return ADAPTER
    if kind in ("projector", "mmproj") or header.architecture == "clip":
        return PROJECTOR
    return MODEL


def parse_gguf_blob(path: Path, status: int) -> GGUFView:
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except FileNotFoundError:
        raise CreateFailureError(f"open {path}: no such file or directory", status) from None
    if not has_magic(magic):
        raise CreateFailureError(ONLY_GGUF, 400)
    try:
        return decode_gguf(path)
    except GGUFError as exc:
        raise CreateFailureError(str(exc), status) from None


def gguf_layers(
    ctx: Context, files: dict[str, str], *, status: int = 500, draft: bool = False
) -> list[WeightLayer]:
    """One ``parsing GGUF`` and one layer per file, in sorted key order; shards merged."""
    splits = _SplitCollector(ctx) if ctx.split_gguf and not draft else None
    layers = []
    for key in sorted(files):
        ctx.emit({"status": "parsing GGUF"})
        path = blob(ctx.store, files[key], status)
        header = parse_gguf_blob(path, status)
        media = DRAFT if draft else media_type_of(header)
        try:
            layer = ctx.store.existing_layer(files[key], media, key)
        except OSError as exc:
            raise CreateFailureError(str(exc), status) from None
        weight = WeightLayer(layer, header, from_files=True, key=key)
        layers.append(weight)
        if splits:
            splits.check(weight)
    return splits.merge(layers) if splits else layers


def _split_uint(header: GGUFView, key: str) -> int | None:
    for name in (key, f"{header.architecture}.{key}"):
        value = header.metadata.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


class _SplitCollector:
    """Split GGUF rules of v0.30+ (``create_split_gguf.go``); errors are prefixed."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    @staticmethod
    def fail(message: str) -> CreateFailureError:
        return CreateFailureError("invalid split GGUF: " + message)

    def group_key(self, w: WeightLayer) -> tuple[str, str, str, int] | None:
        assert w.header is not None
        count = _split_uint(w.header, "split.count")
        if count is None or count <= 1:
            return None
        match = SPLIT_NAME_RE.match(posixpath.basename(w.key))
        if not match or int(match[2]) == 0 or int(match[3]) == 0:
            raise self.fail(f'split GGUF "{w.key}" must use llama.cpp split filename pattern')
        index, name_count = int(match[2]) - 1, int(match[3])
        if name_count != count:
            raise self.fail(
                f'split GGUF "{w.key}" filename count {name_count} '
                f"does not match metadata count {count}"
            )
        if index >= count:
            raise self.fail(f'split GGUF "{w.key}" filename index {index} exceeds metadata count')
        split_no = _split_uint(w.header, "split.no")
        if split_no is None:
            raise self.fail(f'split GGUF "{w.key}" is missing split.no metadata')
        if split_no != index:
            raise self.fail(
                f'split GGUF "{w.key}" filename index {index} '
                f"does not match metadata index {split_no}"
            )
        return (w.layer.media_type, posixpath.dirname(w.key), match[1], count)

    def check(self, w: WeightLayer) -> None:
        self.group_key(w)

    def merge(self, layers: list[WeightLayer]) -> list[WeightLayer]:
        out: list[WeightLayer | tuple[str, str, str, int]] = []
        groups: dict[tuple[str, str, str, int], list[WeightLayer]] = {}
        for w in layers:
            key = self.group_key(w)
            if key is None:
                out.append(w)
                continue
            if key not in groups:
                out.append(key)
            groups.setdefault(key, []).append(w)
        return [x if isinstance(x, WeightLayer) else self._merge(groups[x]) for x in out]

    def _merge(self, shards: list[WeightLayer]) -> WeightLayer:
        first = shards[0]
        count = int(SPLIT_NAME_RE.match(posixpath.basename(first.key))[3])  # type: ignore[index]
        if len(shards) != count:
            raise self.fail(f'split GGUF "{first.key}" has {len(shards)} shards, expected {count}')
        ordered: list[WeightLayer | None] = [None] * count
        for w in shards:
            index = int(SPLIT_NAME_RE.match(posixpath.basename(w.key))[2]) - 1  # type: ignore[index]
            if ordered[index] is not None:
                raise self.fail(f"split GGUF has duplicate shard index {index}")
            ordered[index] = w
        if ordered[0] is None:
            raise self.fail("split GGUF is missing first shard")
        parts = [w for w in ordered if w is not None]
        primary = parts[0]
        assert primary.header is not None
        sources, seen = [], set()
        for part in parts:
            assert part.header is not None
            path = self.ctx.store.blob_path(part.layer.digest)
            for src in tensor_sources(part.header, path):
                if src.info.name in seen:
                    raise self.fail(
                        f'split GGUF "{part.key}" contains duplicate tensor "{src.info.name}"'
                    )
                seen.add(src.info.name)
                if src.start + src.info.nbytes > part.header.file_size:
                    raise self.fail(
                        f'split GGUF "{part.key}" tensor "{src.info.name}" '
                        "extends beyond shard data"
                    )
                sources.append(src)
        expected = _split_uint(primary.header, "split.tensors.count")
        if expected is not None and expected != len(sources):
            raise self.fail(
                f'split GGUF "{primary.key}" has {len(sources)} tensors, expected {expected}'
            )
        arch = primary.header.architecture
        drop = [f"{p}split.{k}" for p in ("", arch + ".") for k in ("no", "count", "tensors.count")]
        entries = rewrite_entries(primary.header, {}, drop)
        temp = write_temp_gguf(self.ctx.store, "split-gguf-", entries, sources, primary.header)
        layer = self.ctx.store.file_layer(temp, primary.layer.media_type)
        layer.from_ = primary.key
        header = decode_gguf(self.ctx.store.blob_path(layer.digest))
        return WeightLayer(layer, header, from_files=True, key=primary.key)


def write_temp_gguf(
    store: Store,
    prefix: str,
    entries: Sequence[bytes],
    sources: Iterable[TensorSource],
    like: GGUFView | None = None,
) -> Path:
    temp, raw = store.temp_file(prefix)
    try:
        with raw, io.BufferedWriter(raw, 1 << 20) as out:
            alignment = like.alignment if like else 32
            order = like.byteorder if like else "<"
            write_gguf(out, entries, sources, alignment=alignment, order=order)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp

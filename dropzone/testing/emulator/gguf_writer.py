"""The GGUF writer of the Ollama emulator: the stand-ins for llama-quantize (validation copy,
quantization), split-shard merging and the safetensors converter write their GGUF with it.

A writer only: headers are read with dropzone's reader (``gguf_view``), whose entries' bytes
``rewrite_entries`` reuses as they are. Tensor data is copied byte for byte from the sources.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from dropzone.formats.gguf import DEFAULT_ALIGNMENT, SCALAR_FORMATS, TensorInfo, ValueType
from dropzone.testing.emulator.gguf_view import GGUFError, GGUFView

T_STRING, T_ARRAY, T_BOOL = ValueType.STRING, ValueType.ARRAY, ValueType.BOOL
T_UINT32, T_UINT64, T_FLOAT32 = ValueType.UINT32, ValueType.UINT64, ValueType.FLOAT32


def encode_kv(key: str, vtype: int, value: Any, order: str = "<") -> bytes:
    head = _encode_string(key, order) + struct.pack(order + "I", vtype)
    return head + _encode(vtype, value, order)


def _encode_string(text: str, order: str) -> bytes:
    raw = text.encode()
    return struct.pack(order + "Q", len(raw)) + raw


def _encode(vtype: int, value: Any, order: str) -> bytes:
    if vtype == T_STRING:
        return _encode_string(value, order)
    if vtype == T_ARRAY:
        items = list(value)
        item_type = T_STRING if items and isinstance(items[0], str) else T_UINT32
        body = b"".join(_encode(item_type, v, order) for v in items)
        return struct.pack(order + "IQ", item_type, len(items)) + body
    return struct.pack(order + SCALAR_FORMATS[ValueType(vtype)], value)


@dataclass(frozen=True)
class TensorSource:
    """A tensor to write: its info (offset ignored) and where its bytes are."""

    info: TensorInfo
    path: Path
    start: int  # absolute byte offset of the data in ``path``


def tensor_sources(header: GGUFView, path: Path) -> list[TensorSource]:
    return [TensorSource(t, path, header.data_offset + t.offset) for t in header.tensors]


def write_gguf(
    out: BinaryIO,
    kv_entries: Sequence[bytes],
    tensors: Iterable[TensorSource],
    *,
    alignment: int = DEFAULT_ALIGNMENT,
    order: str = "<",
    chunk: int = 1 << 20,
) -> None:
    """Write a GGUF v3 file: the given encoded KV entries, then tensors copied from sources."""
    sources = list(tensors)
    offsets, cursor = [], 0
    for src in sources:
        cursor = -(-cursor // alignment) * alignment
        offsets.append(cursor)
        cursor += src.info.nbytes
    head = bytearray(b"GGUF" + struct.pack(order + "IQQ", 3, len(sources), len(kv_entries)))
    for entry in kv_entries:
        head += entry
    for src, offset in zip(sources, offsets, strict=True):
        info = src.info
        head += _encode_string(info.name, order) + struct.pack(order + "I", len(info.dims))
        head += b"".join(struct.pack(order + "Q", d) for d in info.dims)
        head += struct.pack(order + "IQ", info.ggml_type, offset)
    head += b"\0" * (-len(head) % alignment)
    out.write(head)
    written = 0
    for src, offset in zip(sources, offsets, strict=True):
        out.write(b"\0" * (offset - written))
        _copy_range(src.path, src.start, src.info.nbytes, out, chunk)
        written = offset + src.info.nbytes


def _copy_range(path: Path, start: int, length: int, out: BinaryIO, chunk: int) -> None:
    with path.open("rb") as f:
        f.seek(start)
        remaining = length
        while remaining:
            data = f.read(min(chunk, remaining))
            if not data:
                raise GGUFError(f"tensor data of {path.name} ends early")
            out.write(data)
            remaining -= len(data)


def rewrite_entries(
    header: GGUFView, updates: dict[str, tuple[int, Any]], drop: Iterable[str] = ()
) -> list[bytes]:
    """The header's KV entries, ``updates`` replaced in place (or appended), ``drop`` gone."""
    dropped = set(drop)
    entries = []
    for key, kv in header.kvs.items():
        if key in dropped:
            continue
        if key in updates:
            vtype, value = updates[key]
            entries.append(encode_kv(key, vtype, value, header.byteorder))
        else:
            entries.append(kv.raw)
    for key, (vtype, value) in updates.items():
        if key not in header.kvs and key not in dropped:
            entries.append(encode_kv(key, vtype, value, header.byteorder))
    return entries

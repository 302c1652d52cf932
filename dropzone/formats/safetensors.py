"""safetensors header reader, and the shard list of ``model.safetensors.index.json``.

A safetensors file is an 8-byte little-endian header length, a JSON header, then the tensor
bytes; it is complete exactly when its size is ``8 + header length + the largest tensor end
offset``. The header length is untrusted: it is capped (``MAX_HEADER_LENGTH``) and checked
against the file size before anything is allocated from it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import BinaryIO

from dropzone.formats.headers import CorruptHeaderError, TruncatedHeaderError, load_json

# The safetensors library allows 100 MB; real headers are under 2 MB. A lower cap keeps
# a hostile header from costing the daemon hundreds of MB of parsed JSON.
MAX_HEADER_LENGTH = 16 << 20
MAX_INDEX_BYTES = 16 << 20

# Bits per element (the safetensors Dtype list, v0.8).
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32, "I64": 64, "U64": 64, "F64": 64, "C64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class TensorEntry:
    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int  # data_offsets, relative to the end of the header
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    header_length: int
    tensors: tuple[TensorEntry, ...]
    metadata: Mapping[str, str]  # "__metadata__"
    expected_length: int  # the exact size of the complete file

    @property
    def data_offset(self) -> int:
        return 8 + self.header_length


def read_header_file(path: str | os.PathLike[str]) -> SafetensorsHeader:
    with open(path, "rb") as f:
        return read_header(f)


def read_header(f: BinaryIO) -> SafetensorsHeader:
    """Read a safetensors header. TruncatedHeaderError if the header is not all there yet
    (or still zeros); CorruptHeaderError for anything invalid."""
    size = f.seek(0, os.SEEK_END)
    f.seek(0)
    raw = f.read(8)
    if len(raw) < 8:
        raise TruncatedHeaderError(0, "an 8-byte header length", f"end of file after {len(raw)}")
    n = int.from_bytes(raw, "little")
    if n == 0:
        raise TruncatedHeaderError(0, "a header length", "zero bytes (header not written yet)")
    if n > MAX_HEADER_LENGTH:
        # Not the number: it is the file's first 8 bytes, readable as text (issue 13).
        raise CorruptHeaderError(0, f"a header length of at most {MAX_HEADER_LENGTH}", "more")
    if 8 + n > size:
        raise TruncatedHeaderError(8, f"a {n}-byte JSON header", f"end of file after {size - 8}")
    data = f.read(n)
    if len(data) < n:
        raise TruncatedHeaderError(8, f"a {n}-byte JSON header", "end of file (file shrank)")
    if data[:1] == b"\0":
        raise TruncatedHeaderError(8, "a JSON header", "zero bytes (header not written yet)")
    if data[:1] != b"{":
        raise CorruptHeaderError(8, "a JSON header starting with '{'", "another byte")
    # The header is all there, so a JSON fault is corruption, not a copy in progress.
    doc = load_json(data, "a JSON header", base=8, may_be_partial=False)
    if not isinstance(doc, dict):
        raise CorruptHeaderError(8, "a JSON object", type(doc).__name__)
    metadata = doc.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CorruptHeaderError(8, "__metadata__ as an object of strings", "other values")
    tensors = tuple(_entry(name, value) for name, value in doc.items())
    end = _check_layout(tensors)
    return SafetensorsHeader(n, tensors, MappingProxyType(metadata), 8 + n + end)


def _entry(name: str, value: object) -> TensorEntry:
    def bad(expected: str) -> CorruptHeaderError:
        return CorruptHeaderError(8, f"tensor {name!r} with {expected}", _json_type(value))

    if not isinstance(value, dict):
        raise bad("an object")
    dtype, shape, offsets = value.get("dtype"), value.get("shape"), value.get("data_offsets")
    if not isinstance(dtype, str):
        raise bad("a dtype string")
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise bad("a shape of non-negative integers")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(_is_count(o) for o in offsets)
        or offsets[0] > offsets[1]
    ):
        raise bad("data_offsets [start, end], 0 <= start <= end")
    entry = TensorEntry(name, dtype, tuple(shape), offsets[0], offsets[1])
    bits = DTYPE_BITS.get(dtype)
    if bits is not None:  # an unknown (newer) dtype is checked by its offsets only
        count = 1
        for d in entry.shape:
            count *= d
        if count * bits != (entry.end - entry.start) * 8:
            raise bad(f"{count} {dtype} elements in {entry.end - entry.start} bytes")
    return entry


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 63


def _check_layout(tensors: tuple[TensorEntry, ...]) -> int:
    """Tensors must tile the data section without gaps or overlaps (as the library checks);
    return its length."""
    end = 0
    for t in sorted(tensors, key=lambda t: (t.start, t.end)):
        if t.start != end:
            raise CorruptHeaderError(
                8, f"tensor {t.name!r} to start at data offset {end}", str(t.start)
            )
        end = t.end
    return end


def read_index_file(path: str | os.PathLike[str]) -> tuple[str, ...]:
    with open(path, "rb") as f:
        return read_index(f)


def read_index(f: BinaryIO) -> tuple[str, ...]:
    """The shard file names a ``model.safetensors.index.json`` names, sorted, each a valid
    relative path ending in ``.safetensors``. TruncatedHeaderError if the JSON breaks off."""
    data = f.read(MAX_INDEX_BYTES + 1)
    if len(data) > MAX_INDEX_BYTES:
        raise CorruptHeaderError(0, f"an index of at most {MAX_INDEX_BYTES} bytes", "more")
    doc = load_json(data, "an index JSON document")
    weight_map = doc.get("weight_map") if isinstance(doc, dict) else None
    if not isinstance(weight_map, dict):
        # Only the JSON type: the document may be a secret linked in under this name.
        raise CorruptHeaderError(0, "an object with a 'weight_map' object", _json_type(doc))
    shards = set()
    for value in weight_map.values():
        if not isinstance(value, str) or not value.endswith(".safetensors"):
            got = "a string naming another file" if isinstance(value, str) else _json_type(value)
            raise CorruptHeaderError(0, "weight_map values naming .safetensors files", got)
        if not is_valid_relative_path(value):
            raise CorruptHeaderError(0, "a relative shard path without '..'", "another path")
        shards.add(value)
    return tuple(sorted(shards))


def _json_type(value: object) -> str:
    """What a JSON value is, without what it says."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")


def is_valid_relative_path(path: str) -> bool:
    """Go's ``io/fs.ValidPath`` minus the lone ``.``: what the server accepts as a files key
    (ollama-api.md §4.9). Also refuses backslashes and NUL, which never name a real file."""
    if not path or path.startswith("/") or "\\" in path or "\0" in path:
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))

"""GGUF header reader: metadata, tensor infos, and the length the file must reach.

Reads only the header, through a 1 MiB window, so memory and time stay flat whether the
file holds 1 MB or 100 GB. Every length in the file is untrusted: it is checked against a
fixed cap (beyond it the file is corrupt) and against the bytes present (beyond them the
header is cut short: the file may still be arriving). Nothing is allocated from an
untrusted length; strings and arrays that are not kept are skipped by seeking.

``read_layout`` adds where every metadata entry lies (for a caller that copies entries
verbatim or decodes whole arrays with ``gguf_values``); ``read_header`` keeps none of it.

Both byte orders are read: the magic ``GGUF`` with a little-endian version (the norm), the
byte-swapped magic ``FUGG`` (Ollama's big-endian detection, ollama-api.md §10), and ``GGUF``
with a byte-swapped version (how gguf-py writes big-endian files).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from types import MappingProxyType
from typing import BinaryIO

from dropzone.formats._cursor import MAX_HEADER_BYTES, Cursor
from dropzone.formats.ggml_types import GGML_TYPES, file_type_name, tensor_nbytes
from dropzone.formats.headers import CorruptHeaderError, NotGGUFError, TruncatedHeaderError

MAGIC = b"GGUF"
MAGIC_SWAPPED = b"FUGG"
DEFAULT_ALIGNMENT = 32

# Caps well above anything real (llama.cpp's own limits where it has them); past them a
# header is corrupt, not merely unfinished.
MAX_KV = 1 << 16
MAX_TENSORS = 1 << 17
MAX_KEY_BYTES = 65_535
MAX_STRING_BYTES = 256 << 20
MAX_TENSOR_NAME_BYTES = 1024
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_ARRAY_DEPTH = 3
MAX_ARRAY_ITEMS = 1 << 22  # items walked one by one (strings, nested arrays), whole header
MAX_NESTED_ARRAYS = 1 << 16  # llama.cpp refuses arrays of arrays; gguf-py writes them
MAX_FILE_LENGTH = 1 << 50
# Values kept in memory; longer strings and all arrays are summarised instead.
KEEP_STRING_BYTES = 256 << 10
KEEP_TOTAL_BYTES = 4 << 20
# A layout keeps every key; real headers have a few kilobytes of them.
MAX_LAYOUT_KEY_BYTES = 16 << 20


class ValueType(IntEnum):
    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


# struct formats of the scalar value types (``gguf_values`` decodes with the same table)
SCALAR_FORMATS = {
    ValueType.UINT8: "B",
    ValueType.INT8: "b",
    ValueType.UINT16: "H",
    ValueType.INT16: "h",
    ValueType.UINT32: "I",
    ValueType.INT32: "i",
    ValueType.FLOAT32: "f",
    ValueType.BOOL: "?",
    ValueType.UINT64: "Q",
    ValueType.INT64: "q",
    ValueType.FLOAT64: "d",
}
_MAX_TYPE = max(ValueType)
_TYPE_RANGE = f"a GGUF value type 0-{_MAX_TYPE}"


@dataclass(frozen=True)
class Summary:
    """A value not kept in memory: an array (``count`` items) or a long string (bytes)."""

    value_type: ValueType
    count: int
    item_type: ValueType | None = None


MetaValue = int | float | bool | str | Summary


@dataclass(frozen=True, slots=True)
class TensorInfo:
    name: str
    dims: tuple[int, ...]  # as stored: fastest-varying dimension first
    ggml_type: int
    offset: int  # relative to the start of the data section

    @property
    def type_name(self) -> str:
        return GGML_TYPES[self.ggml_type].name

    @property
    def nbytes(self) -> int:
        return tensor_nbytes(self.ggml_type, self.dims)


@dataclass(frozen=True)
class GGUFHeader:
    version: int
    byte_order: str  # "little" or "big"
    metadata: Mapping[str, MetaValue]
    tensors: tuple[TensorInfo, ...]
    alignment: int
    header_length: int  # end of the tensor infos
    data_offset: int  # header_length rounded up to the alignment
    expected_length: int  # end of the last tensor's data: the file is complete from here

    def get_str(self, key: str) -> str | None:
        value = self.metadata.get(key)
        return value if isinstance(value, str) else None

    def get_int(self, key: str) -> int | None:
        value = self.metadata.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def architecture(self) -> str | None:
        return self.get_str("general.architecture")

    @property
    def general_type(self) -> str | None:
        return self.get_str("general.type")

    @property
    def file_type(self) -> int | None:
        return self.get_int("general.file_type")

    @property
    def file_type_name(self) -> str:
        """The ``general.file_type`` name; "unknown" when it is missing or not a known value
        (the header was read: the server will see the same, and cannot quantize it)."""
        return file_type_name(self.file_type) or "unknown"

    @property
    def split_count(self) -> int | None:
        return self.get_int("split.count")

    @property
    def split_no(self) -> int | None:
        return self.get_int("split.no")

    @property
    def is_adapter(self) -> bool:
        return self.general_type == "adapter"

    @property
    def is_projector(self) -> bool:
        # The server's rule (ollama-api.md §4.4.3a): general.type, or a CLIP vision encoder.
        return self.general_type in ("mmproj", "projector") or self.architecture == "clip"


@dataclass(frozen=True, slots=True)
class Entry:
    """Where one metadata entry lies: bytes ``[start, end)`` of the file hold its key, type
    and value as written; the value's own bytes start at ``value_at``."""

    key: str
    value_type: ValueType
    start: int
    value_at: int
    end: int
    item_type: ValueType | None = None  # an array's


@dataclass(frozen=True)
class GGUFLayout:
    """A header and every metadata entry in file order, those ``header.metadata`` summarises
    or leaves out (past its memory budget) included."""

    header: GGUFHeader
    entries: tuple[Entry, ...]

    @property
    def order(self) -> str:
        """The ``struct`` byte order of every number in the file."""
        return "<" if self.header.byte_order == "little" else ">"


def read_header_file(path: str | os.PathLike[str]) -> GGUFHeader:
    with open(path, "rb") as f:
        return read_header(f)


def read_header(f: BinaryIO) -> GGUFHeader:
    """Read the GGUF header of a seekable binary file; the file size bounds every length.

    Raises TruncatedHeaderError when the header runs past the end of the file (or is still
    zeros), NotGGUFError without the magic, CorruptHeaderError for anything else invalid.
    """
    return _read(f, None)


def read_layout(f: BinaryIO) -> GGUFLayout:
    """``read_header`` plus where each metadata entry lies. Same checks and errors, and
    also: no key twice anywhere, at most ``MAX_LAYOUT_KEY_BYTES`` of keys in all."""
    entries: list[Entry] = []
    header = _read(f, entries)
    return GGUFLayout(header, tuple(entries))


def _read(f: BinaryIO, entries: list[Entry] | None) -> GGUFHeader:
    size = f.seek(0, os.SEEK_END)
    f.seek(0)
    magic = f.read(4)
    order = _byte_order(magic)
    cur = Cursor(f, size, order)
    cur.skip(4, "the GGUF magic")
    version = cur.u32("the GGUF version")
    if order == "<" and version & 0xFFFF == 0:
        order, version = ">", int.from_bytes(version.to_bytes(4, "little"), "big")
        cur = Cursor(f, size, order)
        cur.skip(8, "the GGUF magic and version")
    if version not in (2, 3):
        got = f"{version} (GGUFv1 is no longer read by llama.cpp)" if version == 1 else version
        raise CorruptHeaderError(4, "GGUF version 2 or 3", str(got))
    n_tensors = _count(cur, "the tensor count", MAX_TENSORS)
    n_kv = _count(cur, "the metadata key/value count", MAX_KV)
    metadata = _read_metadata(cur, n_kv, entries)
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    assert isinstance(alignment, int)  # checked as it was read
    tensors = _read_tensor_infos(cur, n_tensors, alignment)
    header_length = cur.pos
    data_offset = -(-header_length // alignment) * alignment
    expected = header_length
    for t in tensors:
        expected = max(expected, data_offset + t.offset + t.nbytes)
    if expected > MAX_FILE_LENGTH:
        raise CorruptHeaderError(header_length, "tensor data ending before 1 PiB", str(expected))
    return GGUFHeader(
        version=version,
        byte_order="little" if order == "<" else "big",
        metadata=MappingProxyType(metadata),
        tensors=tuple(tensors),
        alignment=alignment,
        header_length=header_length,
        data_offset=data_offset,
        expected_length=expected,
    )


def _byte_order(magic: bytes) -> str:
    if magic == MAGIC:
        return "<"
    if magic == MAGIC_SWAPPED:
        return ">"
    if len(magic) < 4 and (MAGIC.startswith(magic) or MAGIC_SWAPPED.startswith(magic)):
        raise TruncatedHeaderError(0, "the GGUF magic", f"end of file after {len(magic)} bytes")
    if magic == b"\0\0\0\0":
        # Preallocating writers (download managers, llama-quantize) fill in the header last.
        raise TruncatedHeaderError(0, "the GGUF magic", "zero bytes (header not written yet)")
    # Never the bytes themselves: the file may be anything (a hard link to a secret, issue 13).
    raise NotGGUFError(0, "the GGUF magic b'GGUF'", "other bytes (not a GGUF file)")


def _count(cur: Cursor, what: str, cap: int) -> int:
    at = cur.pos
    n = cur.u64(what)
    if n > cap:
        raise CorruptHeaderError(at, f"{what} of at most {cap}", str(n))
    return n


def _read_metadata(cur: Cursor, n_kv: int, entries: list[Entry] | None) -> dict[str, MetaValue]:
    metadata: dict[str, MetaValue] = {}
    kept = 0
    walk = [MAX_ARRAY_ITEMS, MAX_NESTED_ARRAYS]  # budgets shared by every array in the header
    keys: set[str] = set()  # a layout's keys, every one of them
    key_bytes = 0
    for _ in range(n_kv):
        at = cur.pos
        key = cur.string("a metadata key", MAX_KEY_BYTES, MAX_KEY_BYTES)
        assert isinstance(key, str)
        keep = kept < KEEP_TOTAL_BYTES
        if (keep and key in metadata) or key in keys:
            raise CorruptHeaderError(at, "a metadata key not seen before", repr(key))
        if entries is not None:
            key_bytes += len(key)
            if key_bytes > MAX_LAYOUT_KEY_BYTES:
                what = f"metadata keys of at most {MAX_LAYOUT_KEY_BYTES} bytes in all"
                raise CorruptHeaderError(at, what, "more")
            keys.add(key)
        value_at = cur.pos + 4
        value_type = _value_type(cur)
        value = _read_value(cur, value_type, walk, depth=0)
        if entries is not None:
            item_type = value.item_type if isinstance(value, Summary) else None
            entries.append(Entry(key, value_type, at, value_at, cur.pos, item_type))
        if key == "general.alignment":
            _check_alignment(value, value_at)
            keep = True  # needed to place the data, whatever the budget says
        if keep:
            metadata[key] = value
            kept += len(key) + (len(value) if isinstance(value, str) else 8)
    return metadata


def _value_type(cur: Cursor) -> ValueType:
    at = cur.pos
    raw = cur.u32(_TYPE_RANGE)
    if raw > _MAX_TYPE:
        raise CorruptHeaderError(at, _TYPE_RANGE, str(raw))
    return ValueType(raw)


def _read_value(cur: Cursor, vtype: ValueType, walk: list[int], depth: int) -> MetaValue:
    fmt = SCALAR_FORMATS.get(vtype)
    if fmt is not None:
        value: MetaValue = cur.scalar(fmt, f"a {vtype.name} value")
        return value
    if vtype == ValueType.STRING:
        text = cur.string("a string value", MAX_STRING_BYTES, KEEP_STRING_BYTES)
        return text if isinstance(text, str) else Summary(vtype, text)
    if depth >= MAX_ARRAY_DEPTH:
        raise CorruptHeaderError(cur.pos, f"arrays nested at most {MAX_ARRAY_DEPTH} deep", "more")
    item_type = _value_type(cur)
    at = cur.pos
    count = cur.u64("an array length")
    if item_type in SCALAR_FORMATS:
        width = struct.calcsize(SCALAR_FORMATS[item_type])
        if count > MAX_HEADER_BYTES // width:
            raise CorruptHeaderError(at, "an array that fits in a 1 GiB header", f"{count} items")
        cur.skip(count * width, f"{count} {item_type.name} array items")
        return Summary(vtype, count, item_type)
    if count > walk[0]:
        raise CorruptHeaderError(at, f"at most {MAX_ARRAY_ITEMS} array items", str(count))
    walk[0] -= count
    if item_type == ValueType.STRING:
        cur.skip_strings(count, MAX_STRING_BYTES)
    else:
        if count > walk[1]:
            raise CorruptHeaderError(at, f"at most {MAX_NESTED_ARRAYS} nested arrays", str(count))
        walk[1] -= count
        cur.check_room(count * 12, f"{count} nested arrays")  # each has a type and a length
        for _ in range(count):
            _read_value(cur, item_type, walk, depth + 1)  # an inner array: type, count, items
    return Summary(vtype, count, item_type)


def _check_alignment(value: MetaValue, at: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0 or value & (value - 1):
        raise CorruptHeaderError(at, "general.alignment to be a power of two", repr(value))


def _read_tensor_infos(cur: Cursor, n_tensors: int, alignment: int) -> list[TensorInfo]:
    tensors: list[TensorInfo] = []
    names: set[str] = set()
    for _ in range(n_tensors):
        at = cur.pos
        name = cur.string("a tensor name", MAX_TENSOR_NAME_BYTES, MAX_TENSOR_NAME_BYTES)
        assert isinstance(name, str)
        if name in names:
            raise CorruptHeaderError(at, "a tensor name not seen before", repr(name))
        names.add(name)
        dims_at = cur.pos
        n_dims = cur.u32("a tensor dimension count")
        if n_dims > MAX_DIMS:
            raise CorruptHeaderError(dims_at, f"at most {MAX_DIMS} tensor dimensions", str(n_dims))
        dims = tuple(cur.u64("a tensor dimension") for _ in range(n_dims))
        elements = 1
        for d in dims:
            elements *= d
        if elements >= 1 << 63:
            raise CorruptHeaderError(dims_at, "a tensor of fewer than 2**63 elements", str(dims))
        type_at = cur.pos
        ggml_type = cur.u32("a ggml tensor type")
        if ggml_type not in GGML_TYPES:
            raise CorruptHeaderError(
                type_at,
                f"a known ggml type (one of {min(GGML_TYPES)}-{max(GGML_TYPES)})",
                str(ggml_type),
            )
        row = dims[0] if dims else 1  # no dimensions: one element
        if row % GGML_TYPES[ggml_type].block_size:
            raise CorruptHeaderError(
                dims_at,
                f"rows of whole {GGML_TYPES[ggml_type].name} blocks "
                f"({GGML_TYPES[ggml_type].block_size} elements)",
                f"{row} elements",
            )
        offset_at = cur.pos
        offset = cur.u64("a tensor data offset")
        if offset % alignment:
            raise CorruptHeaderError(
                offset_at, f"a tensor offset that is a multiple of {alignment}", str(offset)
            )
        tensors.append(TensorInfo(name, dims, ggml_type, offset))
    return tensors

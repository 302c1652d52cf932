"""A small GGUF header reader and writer for the Ollama emulator.

Why not ``gguf.GGUFReader``: it memory-maps the whole file and raises an opaque ``ValueError``
when tensor data is cut short, so it cannot tell "header fine, data truncated" (which a pre-0.30
server accepts and a v0.30+ server rejects) from "corrupt header". This reader reads only the
header with ``struct``. It shares only the ggml type table (``dropzone.formats.ggml_types``) with
dropzone's own header reader: it keeps what that reader deliberately does not (every array
value, each entry's raw bytes for rewriting), and being walked independently, each checks the
other. Neither ``gguf`` nor ``numpy`` is needed: the emulator installs with the product.

The writer copies tensor data byte for byte from source files; it serves the emulator's
stand-ins for llama-quantize (validation copy, quantization), split-shard merging and the
safetensors converter.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from dropzone.formats.ggml_types import GGML_TYPES

MAGICS = (b"GGUF", b"FUGG")  # Go checks the little-endian word and its byte-swapped form
DEFAULT_ALIGNMENT = 32

# GGUF value types (gguf.GGUFValueType) and their struct formats.
T_STRING, T_ARRAY, T_BOOL = 8, 9, 7
T_UINT32, T_UINT64, T_FLOAT32 = 4, 10, 6
_SCALARS = {
    0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d",
}  # fmt: skip

# llama.cpp LlamaFileType → name, as Ollama's FileType.String() prints them.
FILE_TYPE_NAMES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M",
    30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4",
}  # fmt: skip
FILE_TYPE_VALUES = {name: value for value, name in FILE_TYPE_NAMES.items()}
# The names Ollama's FileType.String() knows (fs/ggml/type.go); any other value prints "unknown".
OLLAMA_FILE_TYPE_NAMES = {
    1: "F16", 2: "Q4_0", 3: "Q4_1", 4: "MXFP4", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 21: "Q2_K_S", 32: "BF16",
}  # fmt: skip


class GGUFError(ValueError):
    """The bytes are not a readable GGUF header."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # GGUF order: innermost dimension first
    ggml_type: int
    offset: int  # relative to the start of the data section

    @property
    def n_elements(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count

    @property
    def nbytes(self) -> int:
        return tensor_nbytes(self.ggml_type, self.n_elements)

    @property
    def type_name(self) -> str:
        known = GGML_TYPES.get(self.ggml_type)
        return known.name if known else f"type{self.ggml_type}"


@dataclass(frozen=True)
class KV:
    key: str
    vtype: int
    value: Any
    raw: bytes  # the whole encoded entry (key, type, value), reused verbatim when rewriting


@dataclass
class GGUFHeader:
    version: int
    byteorder: str  # "<" or ">"
    kvs: dict[str, KV]
    tensors: list[TensorInfo]
    alignment: int
    data_offset: int
    file_size: int
    metadata: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.metadata = {k: kv.value for k, kv in self.kvs.items()}

    @property
    def data_end(self) -> int:
        return self.data_offset + max((t.offset + t.nbytes for t in self.tensors), default=0)

    @property
    def truncated(self) -> bool:
        # No tensors, no data: the padding up to data_offset may be absent (issue 15).
        return bool(self.tensors) and self.file_size < self.data_end

    @property
    def architecture(self) -> str:
        value = self.metadata.get("general.architecture")
        return value if isinstance(value, str) else "unknown"

    @property
    def general_type(self) -> str:
        value = self.metadata.get("general.type")
        return value if isinstance(value, str) else ""

    @property
    def file_type(self) -> str:
        """``KV.FileType().String()`` (fs/ggml/ggml.go): only a uint32 ``general.file_type``
        above 0 counts, so F32 (0), a missing value or another integer type are "unknown"."""
        kv = self.kvs.get("general.file_type")
        if kv is None or kv.vtype != T_UINT32 or not kv.value:
            return "unknown"
        return OLLAMA_FILE_TYPE_NAMES.get(kv.value, "unknown")

    @property
    def parameter_count(self) -> int:
        """The tensors' element total: Ollama's decoder (fs/ggml/gguf.go) overwrites any
        ``general.parameter_count`` the file carries with it."""
        return sum(t.n_elements for t in self.tensors)

    def arch_value(self, key: str) -> Any:
        return self.metadata.get(f"{self.architecture}.{key}")


def tensor_nbytes(ggml_type: int, n_elements: int) -> int:
    known = GGML_TYPES.get(ggml_type)
    if known is None:
        raise GGUFError(f"invalid tensor type {ggml_type}")
    return n_elements // known.block_size * known.type_size


def shortest_float32(value: float) -> float:
    """The float32 ``value`` with the fewest decimal digits that still round-trip to it, as
    Go prints a float32: 1e-05 rather than 9.99999974e-06."""
    if not math.isfinite(value):
        return value
    packed = struct.pack("<f", value)
    for digits in range(1, 10):
        candidate = float(f"{value:.{digits}g}")
        if struct.pack("<f", candidate) == packed:
            return candidate
    return value


def has_magic(prefix: bytes) -> bool:
    return prefix[:4] in MAGICS


class _Reader:
    def __init__(self, f: BinaryIO, size: int) -> None:
        self.f, self.size, self.pos, self.order = f, size, 0, "<"

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.size:
            raise GGUFError("unexpected EOF")
        data = self.f.read(n)
        if len(data) != n:
            raise GGUFError("unexpected EOF")
        self.pos += n
        return data

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(self.order + fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        raw = self.take(self.unpack("Q"))
        return raw.decode("utf-8", errors="replace")

    def value(self, vtype: int) -> Any:
        if vtype == T_STRING:
            return self.string()
        if vtype == T_ARRAY:
            item_type, count = self.unpack("I"), self.unpack("Q")
            if count > self.size - self.pos:  # every item takes at least one byte
                raise GGUFError("unexpected EOF")
            return [self.value(item_type) for _ in range(count)]
        fmt = _SCALARS.get(vtype)
        if fmt is None:
            raise GGUFError(f"invalid type: {vtype}")
        value = self.unpack(fmt)
        if vtype == T_FLOAT32:  # keep float32's shortest digits (1e-05, not 9.99999974e-06)
            return shortest_float32(value)
        return value


def read_header(path: Path) -> GGUFHeader:
    """Parse a GGUF file's header; GGUFError if it is not GGUF or the header is cut short."""
    size = path.stat().st_size
    with path.open("rb") as f:
        r = _Reader(f, size)
        magic = r.take(4)
        if magic not in MAGICS:
            raise GGUFError("invalid file magic")
        version = r.unpack("I")
        if version & 0xFFFF == 0 and version != 0:
            r.order, version = ">", struct.unpack(">I", struct.pack("<I", version))[0]
        if version not in (2, 3):
            raise GGUFError(f"unsupported GGUF version {version}")
        n_tensors, n_kv = r.unpack("Q"), r.unpack("Q")
        kvs: dict[str, KV] = {}
        for _ in range(n_kv):
            start = r.pos
            key = r.string()
            vtype = r.unpack("I")
            value = r.value(vtype)
            f.seek(start)
            raw = f.read(r.pos - start)
            kvs[key] = KV(key, vtype, value, raw)
        tensors = []
        for _ in range(n_tensors):
            name = r.string()
            dims = tuple(r.unpack("Q") for _ in range(r.unpack("I")))
            ggml_type, offset = r.unpack("I"), r.unpack("Q")
            tensors.append(TensorInfo(name, dims, ggml_type, offset))
            tensor_nbytes(ggml_type, 0)  # rejects unknown tensor types
    align_value = kvs.get("general.alignment")
    alignment = align_value.value if align_value and isinstance(align_value.value, int) else 0
    alignment = alignment or DEFAULT_ALIGNMENT
    data_offset = -(-r.pos // alignment) * alignment
    return GGUFHeader(version, r.order, kvs, tensors, alignment, data_offset, size)


# --- writing ------------------------------------------------------------------------------


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
    return struct.pack(order + _SCALARS[vtype], value)


@dataclass(frozen=True)
class TensorSource:
    """A tensor to write: its info (offset ignored) and where its bytes are."""

    info: TensorInfo
    path: Path
    start: int  # absolute byte offset of the data in ``path``


def tensor_sources(header: GGUFHeader, path: Path) -> list[TensorSource]:
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
        head += _encode_string(info.name, order) + struct.pack(order + "I", len(info.shape))
        head += b"".join(struct.pack(order + "Q", d) for d in info.shape)
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
    header: GGUFHeader, updates: dict[str, tuple[int, Any]], drop: Iterable[str] = ()
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

"""What Ollama's decoder (``fs/ggml`` ``Decode``) makes of a GGUF blob: every metadata value
whole, the tensors, and whether their data is all there.

The bytes are read by dropzone's own header reader (``dropzone.formats.gguf`` and
``gguf_values``), the one the daemon trusts: the emulator has no GGUF reader of its own,
and needs neither ``gguf`` nor ``numpy``. What is Ollama's rather than the format's lives
here: which ``general.file_type`` values it names, float32 values printed as Go prints them,
the parameter count from the tensors. A header the reader refuses is a :class:`GGUFError`.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dropzone.formats.gguf import MAGIC, MAGIC_SWAPPED, TensorInfo, ValueType, read_layout
from dropzone.formats.gguf_values import Value, decode_value, entry_bytes
from dropzone.formats.headers import HeaderError

# The names Ollama's FileType.String() knows (fs/ggml/type.go); any other value prints "unknown".
OLLAMA_FILE_TYPE_NAMES = {
    1: "F16", 2: "Q4_0", 3: "Q4_1", 4: "MXFP4", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 21: "Q2_K_S", 32: "BF16",
}  # fmt: skip


class GGUFError(ValueError):
    """The bytes are not a readable GGUF header, or a GGUF cannot be written."""


@dataclass(frozen=True)
class KV:
    key: str
    vtype: ValueType
    value: Any
    raw: bytes  # the whole encoded entry (key, type, value), reused verbatim when rewriting


@dataclass
class GGUFView:
    version: int
    byteorder: str  # "<" or ">"
    kvs: dict[str, KV]
    tensors: tuple[TensorInfo, ...]
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
        if kv is None or kv.vtype != ValueType.UINT32 or not kv.value:
            return "unknown"
        return OLLAMA_FILE_TYPE_NAMES.get(kv.value, "unknown")

    @property
    def parameter_count(self) -> int:
        """The tensors' element total: Ollama's decoder (fs/ggml/gguf.go) overwrites any
        ``general.parameter_count`` the file carries with it."""
        return sum(n_elements(t) for t in self.tensors)

    def arch_value(self, key: str) -> Any:
        return self.metadata.get(f"{self.architecture}.{key}")


def n_elements(tensor: TensorInfo) -> int:
    count = 1
    for dim in tensor.dims:
        count *= dim
    return count


def has_magic(prefix: bytes) -> bool:
    """The check Go makes: the little-endian word or its byte-swapped form."""
    return prefix[:4] in (MAGIC, MAGIC_SWAPPED)


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


def decode_gguf(path: Path) -> GGUFView:
    """A GGUF blob's header as Ollama sees it; GGUFError if the reader refuses it."""
    size = path.stat().st_size
    with path.open("rb") as f:
        try:
            layout = read_layout(f)
            raws = entry_bytes(f, layout)
            kvs: dict[str, KV] = {}
            for entry, raw in zip(layout.entries, raws, strict=True):
                value = decode_value(raw, entry, layout.order)
                if ValueType.FLOAT32 in (entry.value_type, entry.item_type):
                    value = _float32(value)
                kvs[entry.key] = KV(entry.key, entry.value_type, value, raw)
        except HeaderError as exc:
            raise GGUFError(str(exc)) from None
    header = layout.header
    return GGUFView(
        version=header.version,
        byteorder=layout.order,
        kvs=kvs,
        tensors=header.tensors,
        alignment=header.alignment,
        data_offset=header.data_offset,
        file_size=size,
    )


def _float32(value: Value) -> Value:
    if isinstance(value, list):
        return [_float32(v) for v in value]
    return shortest_float32(value) if isinstance(value, float) else value

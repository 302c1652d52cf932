"""Whole GGUF metadata values, arrays included, for a caller that wants what ``read_header``
summarises (a vocabulary, a list of layer sizes) or an entry's bytes to copy unchanged.

It works on the entries ``gguf.read_layout`` found, so it reads only bytes that reader has
already walked and checked. Decoding builds at most one Python object per byte of the
entry, so memory follows the entry's size: a caller bounds it by the entries it decodes.
Offsets in errors are the file's.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

from dropzone.formats.gguf import (
    MAX_ARRAY_DEPTH,
    MAX_STRING_BYTES,
    SCALAR_FORMATS,
    Entry,
    GGUFLayout,
    ValueType,
)
from dropzone.formats.headers import CorruptHeaderError, TruncatedHeaderError

Value = int | float | bool | str | list["Value"]


def entry_bytes(f: BinaryIO, layout: GGUFLayout) -> list[bytes]:
    """Every entry's bytes as written (key, type, value), in file order: one read of the
    metadata section, which the layout's reader has already bounded."""
    if not layout.entries:
        return []
    first, last = layout.entries[0].start, layout.entries[-1].end
    f.seek(first)
    data = f.read(last - first)
    if len(data) != last - first:  # the file shrank since the layout was read
        raise TruncatedHeaderError(first + len(data), "the metadata entries", "end of file")
    return [data[e.start - first : e.end - first] for e in layout.entries]


def decode_value(raw: bytes, entry: Entry, order: str) -> Value:
    """The whole value of ``entry`` from its bytes ``raw`` (as ``entry_bytes`` gives them);
    ``order`` is the layout's. Strings decode as UTF-8 with replacement, as when read."""
    reader = _Bytes(raw, entry.start, order)
    reader.pos = entry.value_at - entry.start
    value = reader.value(entry.value_type, depth=0)
    if reader.pos != len(raw):
        raise CorruptHeaderError(entry.start + reader.pos, "the end of the entry", "more bytes")
    return value


class _Bytes:
    def __init__(self, data: bytes, base: int, order: str) -> None:
        self.data, self.base, self.order, self.pos = data, base, order, 0

    def _need(self, n: int, what: str) -> None:
        if self.pos + n > len(self.data):
            at = self.base + self.pos
            raise TruncatedHeaderError(at, what, f"the entry's end after {n} bytes were asked")

    def unpack(self, fmt: str, count: int, what: str) -> tuple[int | float | bool, ...]:
        layout = struct.Struct(f"{self.order}{count}{fmt}")
        self._need(layout.size, what)
        values: tuple[int | float | bool, ...] = layout.unpack_from(self.data, self.pos)
        self.pos += layout.size
        return values

    def u32(self, what: str) -> int:
        value = self.unpack("I", 1, what)[0]
        assert isinstance(value, int)
        return value

    def u64(self, what: str) -> int:
        value = self.unpack("Q", 1, what)[0]
        assert isinstance(value, int)
        return value

    def string(self) -> str:
        at = self.base + self.pos
        n = self.u64("the length of a string")
        if n > MAX_STRING_BYTES:
            raise CorruptHeaderError(at, f"a string of at most {MAX_STRING_BYTES} bytes", str(n))
        self._need(n, "a string")
        text = self.data[self.pos : self.pos + n].decode("utf-8", errors="replace")
        self.pos += n
        return text

    def value_type(self) -> ValueType:
        at = self.base + self.pos
        raw = self.u32("a GGUF value type")
        if raw > max(ValueType):
            raise CorruptHeaderError(at, f"a GGUF value type 0-{max(ValueType)}", str(raw))
        return ValueType(raw)

    def value(self, vtype: ValueType, depth: int) -> Value:
        fmt = SCALAR_FORMATS.get(vtype)
        if fmt is not None:
            return self.unpack(fmt, 1, f"a {vtype.name} value")[0]
        if vtype == ValueType.STRING:
            return self.string()
        if depth >= MAX_ARRAY_DEPTH:
            at = self.base + self.pos
            raise CorruptHeaderError(at, f"arrays nested at most {MAX_ARRAY_DEPTH} deep", "more")
        item_type = self.value_type()
        at = self.base + self.pos
        count = self.u64("an array length")
        # Every item takes a byte at least: a count past the entry's bytes cannot be there,
        # and nothing is allocated from it.
        if count > len(self.data) - self.pos:
            raise TruncatedHeaderError(at, f"{count} array items", "the entry's end")
        item_fmt = SCALAR_FORMATS.get(item_type)
        if item_fmt is not None:  # one unpack for the whole array
            return list(self.unpack(item_fmt, count, f"{count} {item_type.name} array items"))
        if item_type == ValueType.STRING:
            return self.strings(count)
        return [self.value(item_type, depth + 1) for _ in range(count)]

    def strings(self, count: int) -> list[Value]:
        """``count`` strings: the hot loop of a vocabulary, kept bare."""
        data, pos, end = self.data, self.pos, len(self.data)
        unpack = struct.Struct(self.order + "Q").unpack_from
        out: list[Value] = []
        for _ in range(count):
            if pos + 8 > end:
                break
            (n,) = unpack(data, pos)
            if n > MAX_STRING_BYTES or pos + 8 + n > end:
                break
            out.append(data[pos + 8 : pos + 8 + n].decode("utf-8", errors="replace"))
            pos += 8 + n
        self.pos = pos
        if len(out) < count:  # the one that does not fit, with the checks' own errors
            out.append(self.string())
        return out

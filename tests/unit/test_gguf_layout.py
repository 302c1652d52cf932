"""The GGUF reader's layout (where each metadata entry lies) and whole values, checked
against gguf-py's reader, and against damage."""

from __future__ import annotations

import io
import struct
from collections.abc import Sequence
from pathlib import Path

import gguf as gguf_py
import numpy as np
import pytest

from dropzone.formats.gguf import (
    KEEP_TOTAL_BYTES,
    MAX_LAYOUT_KEY_BYTES,
    Entry,
    GGUFLayout,
    ValueType,
    read_header,
    read_layout,
)
from dropzone.formats.gguf_values import decode_value, entry_bytes
from dropzone.formats.headers import CorruptHeaderError, HeaderError, TruncatedHeaderError
from dropzone.testing import builders


def s(text: str, o: str = "<") -> bytes:
    raw = text.encode()
    return struct.pack(o + "Q", len(raw)) + raw


def kv(key: str, vtype: int, payload: bytes, o: str = "<") -> bytes:
    return s(key, o) + struct.pack(o + "I", vtype) + payload


def header_bytes(kvs: Sequence[bytes], o: str = "<", magic: bytes = b"GGUF") -> bytes:
    return magic + struct.pack(o + "IQQ", 3, 0, len(kvs)) + b"".join(kvs)


def layout_of(path: Path) -> tuple[GGUFLayout, list[bytes]]:
    with path.open("rb") as f:
        layout = read_layout(f)
        return layout, entry_bytes(f, layout)


def values(layout: GGUFLayout, raws: list[bytes]) -> dict[str, object]:
    return {
        e.key: decode_value(raw, e, layout.order)
        for e, raw in zip(layout.entries, raws, strict=True)
    }


EXTRA = {
    "tokenizer.ggml.tokens": ["a", "bc", "", "é"] * 40,
    "tokenizer.ggml.scores": [0.5, -1.25, 3.0],
    "x.flags": [True, False],
    "x.nested": [[1, 2], [3]],
    "x.rope": 1e-5,
}


@pytest.mark.parametrize(
    "endian", [gguf_py.GGUFEndian.LITTLE, gguf_py.GGUFEndian.BIG], ids=["little", "big"]
)
def test_entries_and_values_match_gguf_py(tmp_path: Path, endian: gguf_py.GGUFEndian) -> None:
    path = tmp_path / "m.gguf"
    writer = gguf_py.GGUFWriter(str(path), "llama", endianess=endian)
    writer.add_uint32("general.file_type", 1)
    for key, value in EXTRA.items():
        writer.add_key_value(key, value, _gguf_type(value))
    writer.add_tensor("t", np.ones(64, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    layout, raws = layout_of(path)
    ref = gguf_py.GGUFReader(str(path))
    fields = [f for name, f in ref.fields.items() if not name.startswith("GGUF.")]
    assert [e.key for e in layout.entries] == [f.name for f in fields]
    for entry, raw, field in zip(layout.entries, raws, fields, strict=True):
        assert entry.start == field.offset
        assert entry.end - entry.start == sum(int(p.nbytes) for p in field.parts) == len(raw)
        assert entry.value_type == ValueType(field.types[0])
        item_type = ValueType(field.types[1]) if len(field.types) > 1 else None
        assert entry.item_type == item_type
    got = values(layout, raws)
    for field in fields:
        if field.name == "x.nested":  # gguf-py's contents() flattens arrays of arrays
            continue
        assert got[field.name] == pytest.approx(field.contents()), field.name
    assert got["x.nested"] == [[1, 2], [3]]
    assert got["tokenizer.ggml.tokens"] == EXTRA["tokenizer.ggml.tokens"]
    with path.open("rb") as f:
        assert layout.header == read_header(f)


def _gguf_type(value: object) -> gguf_py.GGUFValueType:
    if isinstance(value, list):
        return gguf_py.GGUFValueType.ARRAY
    return gguf_py.GGUFValueType.FLOAT32


def test_entry_bytes_are_the_metadata_section_as_written(tmp_path: Path) -> None:
    path = builders.build_gguf(tmp_path / "m.gguf", extra=EXTRA)
    layout, raws = layout_of(path)
    data = path.read_bytes()
    first, last = layout.entries[0], layout.entries[-1]
    assert b"".join(raws) == data[first.start : last.end]
    assert first.start == 24  # right after the magic, version and counts
    for entry, raw in zip(layout.entries, raws, strict=True):
        assert raw[: entry.value_at - entry.start] == s(entry.key) + struct.pack(
            "<I", entry.value_type
        )


def test_entries_past_the_metadata_budget_are_listed_and_decoded() -> None:
    big = "y" * (200 << 10)  # kept (under 256 KiB) until 4 MiB of values are kept
    n = KEEP_TOTAL_BYTES // len(big) + 2
    data = header_bytes([kv(f"k{i}", 8, s(big)) for i in range(n)])
    layout = read_layout(io.BytesIO(data))
    assert len(layout.entries) == n > len(layout.header.metadata)
    raws = entry_bytes(io.BytesIO(data), layout)
    assert decode_value(raws[-1], layout.entries[-1], "<") == big


def test_a_key_twice_past_the_budget_fails_the_layout_but_not_the_header() -> None:
    big = "y" * (200 << 10)
    kvs = [kv(f"k{i}", 8, s(big)) for i in range(KEEP_TOTAL_BYTES // len(big) + 2)]
    data = header_bytes([*kvs, kv("dup", 4, b"\0" * 4), kv("dup", 4, b"\0" * 4)])
    assert "dup" not in read_header(io.BytesIO(data)).metadata  # the daemon's reader: unchanged
    with pytest.raises(CorruptHeaderError, match="not seen before"):
        read_layout(io.BytesIO(data))


def test_keys_past_the_layout_cap_are_corrupt() -> None:
    key_len = 60_000
    count = MAX_LAYOUT_KEY_BYTES // key_len + 1
    data = header_bytes([kv(f"{i:05}" + "k" * (key_len - 5), 0, b"\0") for i in range(count)])
    read_header(io.BytesIO(data))  # the daemon keeps no keys past its budget: fine
    with pytest.raises(CorruptHeaderError, match="metadata keys of at most"):
        read_layout(io.BytesIO(data))


def test_a_big_endian_file_decodes_in_its_order() -> None:
    array = struct.pack(">IQ", 5, 2) + struct.pack(">ii", -1, 7)
    data = header_bytes([kv("a", 9, array, ">"), kv("b", 8, s("text", ">"), ">")], ">", b"FUGG")
    layout = read_layout(io.BytesIO(data))
    raws = entry_bytes(io.BytesIO(data), layout)
    assert layout.order == ">"
    assert values(layout, raws) == {"a": [-1, 7], "b": "text"}


def _entry(raw: bytes, key: str = "a", vtype: ValueType = ValueType.ARRAY) -> Entry:
    return Entry(key, vtype, 100, 100 + 8 + len(key) + 4, 100 + len(raw))


@pytest.mark.parametrize(
    ("payload", "error", "offset"),
    [
        # An array claiming more items than the entry has bytes: refused before allocating.
        (struct.pack("<IQ", 8, 2**60), TruncatedHeaderError, 117),
        (struct.pack("<IQ", 4, 3) + b"\0" * 8, TruncatedHeaderError, 125),
        (struct.pack("<IQ", 99, 1) + b"\0", CorruptHeaderError, 113),
        (struct.pack("<IQ", 8, 1) + struct.pack("<Q", 5) + b"ab", TruncatedHeaderError, 133),
        (
            struct.pack("<IQ", 8, 2) + s("ab") + struct.pack("<Q", 9) + b"x",
            TruncatedHeaderError,
            143,
        ),
        (struct.pack("<IQ", 4, 0) + b"\0", CorruptHeaderError, 125),  # a byte too many
        # Arrays of arrays of arrays of arrays: deeper than any reader allows.
        (struct.pack("<IQ", 9, 1) * 3 + struct.pack("<IQ", 0, 0), CorruptHeaderError, 149),
    ],
)
def test_damaged_entry_bytes_give_a_header_error_at_the_file_offset(
    payload: bytes, error: type[HeaderError], offset: int
) -> None:
    raw = kv("a", 9, payload)
    with pytest.raises(error) as info:
        decode_value(raw, _entry(raw), "<")
    assert type(info.value) is error
    assert info.value.offset == offset

"""GGUF header reader: checked against gguf-py's writer and reader, and against damage."""

from __future__ import annotations

import io
import struct
import tracemalloc
from collections.abc import Sequence
from pathlib import Path

import gguf as gguf_py
import numpy as np
import pytest

from dropzone.formats import ggml_types
from dropzone.formats.gguf import (
    MAX_ARRAY_ITEMS,
    MAX_KV,
    MAX_STRING_BYTES,
    MAX_TENSORS,
    GGUFHeader,
    Summary,
    ValueType,
    read_header,
    read_header_file,
)
from dropzone.formats.headers import CorruptHeaderError, NotGGUFError, TruncatedHeaderError
from dropzone.testing import builders

# --- a minimal hand encoder, for headers gguf-py refuses to write ----------------------------


def s(text: str | bytes, o: str = "<") -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack(o + "Q", len(raw)) + raw


def kv(key: str, vtype: int, payload: bytes, o: str = "<") -> bytes:
    return s(key, o) + struct.pack(o + "I", vtype) + payload


def tinfo(name: str, dims: tuple[int, ...], gtype: int = 0, offset: int = 0, o: str = "<") -> bytes:
    return (
        s(name, o)
        + struct.pack(o + "I", len(dims))
        + b"".join(struct.pack(o + "Q", d) for d in dims)
        + struct.pack(o + "I", gtype)
        + struct.pack(o + "Q", offset)
    )


def header_bytes(
    kvs: Sequence[bytes] = (),
    tensors: Sequence[bytes] = (),
    *,
    version: int = 3,
    magic: bytes = b"GGUF",
    o: str = "<",
    n_tensors: int | None = None,
    n_kv: int | None = None,
) -> bytes:
    return (
        magic
        + struct.pack(o + "I", version)
        + struct.pack(o + "Q", len(tensors) if n_tensors is None else n_tensors)
        + struct.pack(o + "Q", len(kvs) if n_kv is None else n_kv)
        + b"".join(kvs)
        + b"".join(tensors)
    )


ARCH = kv("general.architecture", 8, s("llama"))


def read(data: bytes) -> GGUFHeader:
    return read_header(io.BytesIO(data))


# --- agreement with gguf-py ------------------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        builders.build_gguf,
        lambda p: builders.build_gguf(p, file_type=builders.FILE_TYPE_F32, n_tensors=5),
        builders.build_adapter_gguf,
        builders.build_mmproj_gguf,
        lambda p: builders.build_gguf(p, split=(1, 3), chat_template="{{ .Prompt }}"),
        lambda p: builders.build_gguf(p, extra={"tokenizer.ggml.tokens": ["a", "bc", ""] * 50}),
    ],
    ids=["f16", "f32", "adapter", "mmproj", "shard", "vocab"],
)
def test_header_matches_gguf_py_reader(tmp_path: Path, build) -> None:
    path = build(tmp_path / "m.gguf")
    ours = read_header_file(path)
    ref = gguf_py.GGUFReader(str(path))
    assert ours.data_offset == ref.data_offset
    assert [t.name for t in ours.tensors] == [t.name for t in ref.tensors]
    for mine, theirs in zip(ours.tensors, ref.tensors, strict=True):
        assert mine.dims == tuple(int(d) for d in theirs.shape)
        assert mine.ggml_type == int(theirs.tensor_type)
        assert ours.data_offset + mine.offset == theirs.data_offset
        assert mine.nbytes == theirs.n_bytes
    for name, field in ref.fields.items():
        if name.startswith("GGUF."):
            continue
        value = ours.metadata[name]
        if field.types[0] == gguf_py.GGUFValueType.ARRAY:
            assert value == Summary(ValueType.ARRAY, len(field.data), ValueType(field.types[1]))
        elif field.types[0] == gguf_py.GGUFValueType.STRING:
            assert value == field.contents()
        else:
            assert value == pytest.approx(field.contents())
    size = path.stat().st_size
    last_end = max(t.data_offset + t.n_bytes for t in ref.tensors)
    assert ours.expected_length == last_end
    assert ours.expected_length <= size < ours.expected_length + ours.alignment


def test_convenience_fields_name_the_file_type_and_roles(tmp_path: Path) -> None:
    model = read_header_file(builders.build_gguf(tmp_path / "a.gguf", file_type=15))
    assert (model.architecture, model.file_type, model.file_type_name) == ("llama", 15, "Q4_K_M")
    assert not model.is_adapter and not model.is_projector
    assert read_header_file(builders.build_adapter_gguf(tmp_path / "b.gguf")).is_adapter
    assert read_header_file(builders.build_mmproj_gguf(tmp_path / "c.gguf")).is_projector
    shard = read_header_file(builders.build_gguf(tmp_path / "d.gguf", split=(2, 4)))
    assert (shard.split_no, shard.split_count) == (2, 4)


QUANT_TYPES = [t for t in gguf_py.GGML_QUANT_SIZES if t != gguf_py.GGMLQuantizationType.Q8_1]


@pytest.mark.parametrize("qtype", QUANT_TYPES, ids=lambda t: t.name)
def test_expected_length_covers_every_ggml_type(tmp_path: Path, qtype) -> None:
    block, size = gguf_py.GGML_QUANT_SIZES[qtype]
    rows, cols = 3, block * 2
    path = tmp_path / "q.gguf"
    writer = gguf_py.GGUFWriter(str(path), "llama")
    writer.add_tensor("a", np.ones(8, dtype=np.float32))
    raw = np.zeros((rows, cols // block * size), dtype=np.uint8)  # bytes; gguf-py derives dims
    writer.add_tensor("q", raw, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    header = read_header_file(path)
    ref = gguf_py.GGUFReader(str(path))
    assert header.expected_length == max(t.data_offset + t.n_bytes for t in ref.tensors)
    assert header.tensors[1].type_name == qtype.name
    assert header.tensors[1].dims == (cols, rows)


def test_type_tables_agree_with_gguf_py() -> None:
    for qtype, (block, size) in gguf_py.GGML_QUANT_SIZES.items():
        ours = ggml_types.GGML_TYPES[int(qtype)]
        if qtype == gguf_py.GGMLQuantizationType.Q8_1:
            assert (ours.block_size, ours.type_size) == (32, 36)  # ggml's block_q8_1
            continue
        assert (ours.name, ours.block_size, ours.type_size) == (qtype.name, block, size)
    for ftype in gguf_py.LlamaFileType:
        expected = ftype.name.removeprefix("MOSTLY_").removeprefix("ALL_")
        assert ggml_types.FILE_TYPE_NAMES[int(ftype)] == expected


# --- damage ----------------------------------------------------------------------------------


def test_truncation_anywhere_in_the_header_is_reported_as_cut_short(tmp_path: Path) -> None:
    data = builders.build_gguf(tmp_path / "m.gguf", chat_template="x" * 40).read_bytes()
    full = read(data)
    for cut in range(full.header_length):
        with pytest.raises(TruncatedHeaderError):
            read(data[:cut])


def test_truncation_in_the_data_keeps_the_header_and_the_expected_length(tmp_path: Path) -> None:
    data = builders.build_gguf(tmp_path / "m.gguf", n_tensors=4).read_bytes()
    full = read(data)
    for cut in range(full.header_length, len(data), 37):
        header = read(data[:cut])
        assert header.expected_length == full.expected_length > cut


def test_error_names_the_offset_and_what_was_expected() -> None:
    data = header_bytes([kv("k", 99, b"")])
    with pytest.raises(CorruptHeaderError) as info:
        read(data)
    offset = 24 + 8 + 1  # fixed header, key length, key
    assert str(info.value) == f"at offset {offset}: expected a GGUF value type 0-12, got 99"
    assert info.value.offset == offset


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", TruncatedHeaderError),
        (b"GG", TruncatedHeaderError),
        (b"FU", TruncatedHeaderError),
        (b"\0" * 4096, TruncatedHeaderError),  # preallocated, header not written yet
        (b"GGUX" + b"\0" * 60, NotGGUFError),
        (b"PK\x03\x04" + b"\0" * 60, NotGGUFError),
        (b"version https://git-lfs.github.com/spec/v1\n", NotGGUFError),
        (header_bytes(version=1), CorruptHeaderError),
        (header_bytes(version=4), CorruptHeaderError),
        (header_bytes(n_kv=MAX_KV + 1), CorruptHeaderError),
        (header_bytes(n_tensors=MAX_TENSORS + 1), CorruptHeaderError),
        (header_bytes(n_kv=3), TruncatedHeaderError),  # count within caps, kvs not there yet
        (header_bytes([s("k") + struct.pack("<IQ", 8, MAX_STRING_BYTES + 1)]), CorruptHeaderError),
        (header_bytes([s("k") + struct.pack("<IQ", 8, 1000)]), TruncatedHeaderError),
        (header_bytes([struct.pack("<Q", 70_000) + b"k" * 70_000]), CorruptHeaderError),
        (header_bytes([kv("a", 9, struct.pack("<IQ", 99, 1))]), CorruptHeaderError),
        (
            header_bytes([kv("a", 9, struct.pack("<IQ", 8, MAX_ARRAY_ITEMS + 1))]),
            CorruptHeaderError,
        ),
        (header_bytes([kv("a", 9, struct.pack("<IQ", 8, 10**6))]), TruncatedHeaderError),
        (header_bytes([kv("a", 9, struct.pack("<IQ", 4, 2**61))]), CorruptHeaderError),
        (header_bytes([ARCH, ARCH]), CorruptHeaderError),  # duplicate key
        (header_bytes([kv("general.alignment", 4, struct.pack("<I", 48))]), CorruptHeaderError),
        (header_bytes([kv("general.alignment", 4, struct.pack("<I", 0))]), CorruptHeaderError),
        (header_bytes([], [tinfo("t", (1, 1, 1, 1, 1))]), CorruptHeaderError),  # 5 dims
        (header_bytes([], [tinfo("t", (32,), gtype=5)]), CorruptHeaderError),  # no type 5
        (header_bytes([], [tinfo("t", (33,), gtype=8)]), CorruptHeaderError),  # partial block
        (header_bytes([], [tinfo("t", (), gtype=8)]), CorruptHeaderError),  # 1 element of Q8_0
        (header_bytes([], [tinfo("t", (32,), offset=16)]), CorruptHeaderError),  # misaligned
        (header_bytes([], [tinfo("t", (2**40, 2**40))]), CorruptHeaderError),  # 2**80 elements
        (header_bytes([], [tinfo("t", (32,)), tinfo("t", (32,), offset=128)]), CorruptHeaderError),
        (header_bytes([], [tinfo("t", (2**49,))]), CorruptHeaderError),  # data past 1 PiB
    ],
)
def test_damaged_headers_give_the_documented_error(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        read(data)
    assert type(info.value) is error


def test_random_bytes_are_not_gguf() -> None:
    rng = np.random.default_rng(7)
    for _ in range(50):
        with pytest.raises(NotGGUFError):
            read(b"X" + rng.bytes(500))


# --- byte orders, versions, layouts ----------------------------------------------------------


def test_big_endian_file_from_gguf_py_is_read(tmp_path: Path) -> None:
    path = tmp_path / "be.gguf"
    writer = gguf_py.GGUFWriter(str(path), "llama", endianess=gguf_py.GGUFEndian.BIG)
    writer.add_uint32("general.file_type", 1)
    writer.add_tensor("t", np.ones(64, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    header = read_header_file(path)
    assert (header.byte_order, header.version, header.file_type_name) == ("big", 3, "F16")
    assert header.tensors[0].dims == (64,)
    assert header.expected_length == path.stat().st_size


def test_byte_swapped_magic_is_read_big_endian() -> None:
    arch = kv("general.architecture", 8, s("llama", ">"), ">")
    data = header_bytes([arch], [tinfo("t", (8,), o=">")], magic=b"FUGG", o=">")
    header = read(data + b"\0" * 64)
    assert (header.byte_order, header.architecture) == ("big", "llama")
    assert header.tensors[0].dims == (8,)


def test_version_2_and_custom_alignment_are_honoured() -> None:
    align = kv("general.alignment", 4, struct.pack("<I", 64))
    data = header_bytes(
        [align], [tinfo("t", (16,), offset=0), tinfo("u", (8,), offset=64)], version=2
    )
    header = read(data)
    assert header.version == 2
    assert header.data_offset % 64 == 0 and header.data_offset >= len(data)
    assert header.expected_length == header.data_offset + 64 + 32


def test_header_without_tensors_is_complete_at_its_end() -> None:
    data = header_bytes([ARCH])
    assert read(data).expected_length == len(data)


def test_nested_arrays_and_long_strings_are_skipped_not_kept() -> None:
    nested = kv(
        "n",
        9,
        struct.pack("<IQ", 9, 2)
        + struct.pack("<IQ", 4, 2)
        + b"\0" * 8
        + struct.pack("<IQ", 8, 1)
        + s("x"),
    )
    long_text = kv("long", 8, s("y" * (300 << 10)))
    header = read(header_bytes([nested, long_text, ARCH]))
    assert header.metadata["n"] == Summary(ValueType.ARRAY, 2, ValueType.ARRAY)
    assert header.metadata["long"] == Summary(ValueType.STRING, 300 << 10)
    assert header.architecture == "llama"


def test_hostile_lengths_allocate_nothing(tmp_path: Path) -> None:
    # A 200 MiB string (under the cap) in a sparse file: skipped by seeking, not read.
    path = tmp_path / "sparse.gguf"
    data = header_bytes([s("k") + struct.pack("<IQ", 8, 200 << 20)])
    path.write_bytes(data)
    builders.truncate(path, len(data) + (200 << 20))
    tracemalloc.start()
    try:
        header = read_header_file(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert header.metadata["k"] == Summary(ValueType.STRING, 200 << 20)
    assert peak < 4 << 20


def test_string_arrays_larger_than_the_read_window_are_walked_exactly() -> None:
    tokens = [b"t" * (i % 23) for i in range(200_000)]  # ~2.8 MB: several read windows
    items = [s(t) for t in tokens]
    prefix = header_bytes([kv("tok", 9, struct.pack("<IQ", 8, len(items)))], n_kv=2)
    data = prefix + b"".join(items) + ARCH
    header = read(data)
    assert header.metadata["tok"] == Summary(ValueType.ARRAY, len(items), ValueType.STRING)
    assert header.architecture == "llama"
    starts = np.cumsum([len(prefix)] + [len(i) for i in items[:-1]])
    for cut in np.linspace(len(prefix), len(data) - len(ARCH) - 1, 40, dtype=int).tolist():
        with pytest.raises(TruncatedHeaderError) as info:
            read(data[:cut])
        if cut - len(prefix) < 8 * len(items):  # not even room for the lengths: fails at once
            assert info.value.offset == len(prefix)
        else:  # names the string that does not fit
            assert info.value.offset == starts[np.searchsorted(starts, cut, side="right") - 1]

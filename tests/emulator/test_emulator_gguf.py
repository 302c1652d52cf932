"""The emulator's view of a GGUF (read with dropzone's reader) and its GGUF writer, checked
against the ``gguf`` package."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import gguf
import numpy as np
import pytest

from dropzone.formats.gguf import Summary, ValueType, read_header_file
from dropzone.formats.headers import HeaderError
from dropzone.testing import builders
from dropzone.testing.emulator.gguf_view import GGUFError, decode_gguf, shortest_float32
from dropzone.testing.emulator.gguf_writer import (
    T_BOOL,
    T_UINT32,
    rewrite_entries,
    tensor_sources,
    write_gguf,
)


def test_header_matches_the_reference_reader(tmp_path: Path) -> None:
    path = builders.build_gguf(
        tmp_path / "m.gguf", extra={"llama.context_length": 4096, "x.list": ["a", "b"]}
    )
    ours, theirs = decode_gguf(path), gguf.GGUFReader(str(path))
    assert ours.data_offset == theirs.data_offset
    assert [t.name for t in ours.tensors] == [t.name for t in theirs.tensors]
    assert [t.nbytes for t in ours.tensors] == [int(t.n_bytes) for t in theirs.tensors]
    assert ours.metadata["llama.context_length"] == 4096
    assert ours.metadata["x.list"] == ["a", "b"]
    assert (ours.architecture, ours.file_type, ours.parameter_count) == ("llama", "F16", 192)
    assert ours.data_end == path.stat().st_size and not ours.truncated


def test_truncated_tensor_data_is_detected_but_the_header_still_reads(tmp_path: Path) -> None:
    path = builders.truncate(builders.build_gguf(tmp_path / "m.gguf"), -10)
    header = decode_gguf(path)
    assert header.truncated
    assert header.data_end - header.file_size == 10


@pytest.mark.parametrize("cut", [3, 20, 60])
def test_cut_header_is_an_error(tmp_path: Path, cut: int) -> None:
    path = builders.truncate(builders.build_gguf(tmp_path / "m.gguf"), cut)
    with pytest.raises(GGUFError):
        decode_gguf(path)


def test_wrong_magic_is_an_error(tmp_path: Path) -> None:
    path = builders.corrupt_magic(builders.build_gguf(tmp_path / "m.gguf"))
    with pytest.raises(GGUFError, match="magic"):
        decode_gguf(path)


def test_rewrite_keeps_tensors_and_adds_metadata(tmp_path: Path) -> None:
    source = builders.build_gguf(tmp_path / "m.gguf")
    header = decode_gguf(source)
    out = tmp_path / "copy.gguf"
    entries = rewrite_entries(header, {"emulator.validated": (T_BOOL, True)})
    with out.open("wb") as f:
        write_gguf(f, entries, tensor_sources(header, source))
    before, after = gguf.GGUFReader(str(source)), gguf.GGUFReader(str(out))
    assert bool(after.fields["emulator.validated"].parts[-1][0]) is True
    for old, new in zip(before.tensors, after.tensors, strict=True):
        assert old.name == new.name
        assert np.array_equal(old.data, new.data)


def test_float32_values_print_as_numpy_prints_them() -> None:
    # The emulator no longer imports numpy (issue 15): its shortest float32 digits must agree.
    rng = np.random.default_rng(0)
    samples = [1e-5, 1e-6, 0.1, 1 / 3, 10000.0, 1e30, -2.5e-12, 0.0, 500000.0]
    samples += [float(x) for x in rng.standard_normal(500).astype(np.float32)]
    samples += [float(x) for x in (rng.random(500) * 10.0 ** rng.integers(-20, 20, 500))]
    for value in samples:
        as_f32 = float(np.float32(value))
        assert shortest_float32(as_f32) == float(str(np.float32(value))), value


def test_the_view_has_whole_arrays_where_the_products_header_summarises_them(
    tmp_path: Path,
) -> None:
    tokens = [f"tok{i}" for i in range(3000)]
    path = builders.build_gguf(
        tmp_path / "m.gguf",
        extra={"tokenizer.ggml.tokens": tokens, "tokenizer.ggml.scores": [1e-5, 0.1, -2.5]},
    )
    summary = read_header_file(path).metadata["tokenizer.ggml.tokens"]
    assert summary == Summary(ValueType.ARRAY, 3000, ValueType.STRING)
    view = decode_gguf(path)
    assert view.metadata["tokenizer.ggml.tokens"] == tokens
    assert view.metadata["tokenizer.ggml.scores"] == [1e-05, 0.1, -2.5]  # as Go prints float32
    assert view.kvs["general.file_type"].vtype == ValueType.UINT32


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: builders.truncate(p, 40),
        builders.corrupt_magic,
        lambda p: _overwrite(p, _offset_of_tensor_offset(p), struct.pack("<Q", 16)),
    ],
    ids=["cut", "magic", "misaligned-tensor"],
)
def test_a_header_the_products_reader_refuses_is_refused_with_its_words(
    tmp_path: Path, damage: Callable[[Path], object]
) -> None:
    path = builders.build_gguf(tmp_path / "m.gguf")
    damage(path)
    with pytest.raises(HeaderError) as product:
        read_header_file(path)
    with pytest.raises(GGUFError) as emulator:
        decode_gguf(path)
    assert str(emulator.value) == str(product.value)


def test_a_rewrite_of_a_big_endian_file_keeps_its_order_and_untouched_entries(
    tmp_path: Path,
) -> None:
    source = tmp_path / "be.gguf"
    writer = gguf.GGUFWriter(str(source), "llama", endianess=gguf.GGUFEndian.BIG)
    writer.add_uint32("general.file_type", 1)
    writer.add_array("x.sizes", [3, 1, 4])
    writer.add_tensor("t", np.arange(64, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    header = decode_gguf(source)
    assert header.byteorder == ">"
    out = tmp_path / "copy.gguf"
    entries = rewrite_entries(header, {"general.file_type": (T_UINT32, 7)})
    with out.open("wb") as f:
        write_gguf(f, entries, tensor_sources(header, source), order=header.byteorder)
    copy = decode_gguf(out)
    assert copy.byteorder == ">" and copy.file_type == "Q8_0"
    assert copy.kvs["x.sizes"].raw == header.kvs["x.sizes"].raw
    assert copy.metadata["x.sizes"] == [3, 1, 4]
    theirs = gguf.GGUFReader(str(out), "r")
    assert np.array_equal(theirs.tensors[0].data, np.arange(64, dtype=np.float32))


def _offset_of_tensor_offset(path: Path) -> int:
    """Where the first tensor info's data offset is written (the last 8 bytes of the info)."""
    info = gguf.GGUFReader(str(path)).tensors[0]
    return int(info.field.offset) + sum(int(p.nbytes) for p in info.field.parts) - 8


def _overwrite(path: Path, at: int, data: bytes) -> Path:
    with path.open("r+b") as f:
        f.seek(at)
        f.write(data)
    return path

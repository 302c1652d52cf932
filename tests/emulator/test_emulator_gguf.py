"""The emulator's own GGUF header reader and writer, checked against the ``gguf`` package."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest

from dropzone.testing import builders
from dropzone.testing.emulator.gguf import (
    T_BOOL,
    GGUFError,
    read_header,
    rewrite_entries,
    shortest_float32,
    tensor_sources,
    write_gguf,
)


def test_header_matches_the_reference_reader(tmp_path: Path) -> None:
    path = builders.build_gguf(
        tmp_path / "m.gguf", extra={"llama.context_length": 4096, "x.list": ["a", "b"]}
    )
    ours, theirs = read_header(path), gguf.GGUFReader(str(path))
    assert ours.data_offset == theirs.data_offset
    assert [t.name for t in ours.tensors] == [t.name for t in theirs.tensors]
    assert [t.nbytes for t in ours.tensors] == [int(t.n_bytes) for t in theirs.tensors]
    assert ours.metadata["llama.context_length"] == 4096
    assert ours.metadata["x.list"] == ["a", "b"]
    assert (ours.architecture, ours.file_type, ours.parameter_count) == ("llama", "F16", 192)
    assert ours.data_end == path.stat().st_size and not ours.truncated


def test_truncated_tensor_data_is_detected_but_the_header_still_reads(tmp_path: Path) -> None:
    path = builders.truncate(builders.build_gguf(tmp_path / "m.gguf"), -10)
    header = read_header(path)
    assert header.truncated
    assert header.data_end - header.file_size == 10


@pytest.mark.parametrize("cut", [3, 20, 60])
def test_cut_header_is_an_error(tmp_path: Path, cut: int) -> None:
    path = builders.truncate(builders.build_gguf(tmp_path / "m.gguf"), cut)
    with pytest.raises(GGUFError):
        read_header(path)


def test_wrong_magic_is_an_error(tmp_path: Path) -> None:
    path = builders.corrupt_magic(builders.build_gguf(tmp_path / "m.gguf"))
    with pytest.raises(GGUFError, match="magic"):
        read_header(path)


def test_rewrite_keeps_tensors_and_adds_metadata(tmp_path: Path) -> None:
    source = builders.build_gguf(tmp_path / "m.gguf")
    header = read_header(source)
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

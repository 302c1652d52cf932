"""safetensors header reader and index reader: checked against the safetensors library."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save

from dropzone.formats.headers import CorruptHeaderError, TruncatedHeaderError
from dropzone.formats.safetensors import (
    MAX_HEADER_LENGTH,
    SafetensorsHeader,
    is_valid_relative_path,
    read_header,
    read_header_file,
    read_index,
    read_index_file,
)
from dropzone.testing import builders


def read(data: bytes) -> SafetensorsHeader:
    return read_header(io.BytesIO(data))


def raw_file(header: object, data: bytes = b"", *, pad: int = 0) -> bytes:
    text = (json.dumps(header) + " " * pad).encode()
    return struct.pack("<Q", len(text)) + text + data


TENSORS = {
    "a": np.arange(12, dtype=np.float16).reshape(3, 4),
    "b": np.zeros(0, dtype=np.float32),
    "c": np.ones((2, 2), dtype=np.int64),
}


def test_header_matches_the_safetensors_library(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    path.write_bytes(save(TENSORS, metadata={"format": "pt"}))
    header = read_header_file(path)
    assert header.expected_length == path.stat().st_size
    assert dict(header.metadata) == {"format": "pt"}
    with safe_open(str(path), "np") as f:
        assert sorted(t.name for t in header.tensors) == sorted(f.keys())
        for t in header.tensors:
            assert list(t.shape) == list(f.get_slice(t.name).get_shape())
            assert t.dtype == f.get_slice(t.name).get_dtype()


def test_builder_model_shards_are_complete_at_their_size(tmp_path: Path) -> None:
    folder = builders.build_safetensors_model(tmp_path / "m", shards=2)
    for shard in sorted(folder.glob("*.safetensors")):
        assert read_header_file(shard).expected_length == shard.stat().st_size
    assert read_index_file(folder / "model.safetensors.index.json") == (
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    )


def test_truncation_anywhere_in_the_header_is_reported_as_cut_short() -> None:
    data = save(TENSORS, metadata={"format": "pt"})
    full = read(data)
    for cut in range(full.data_offset):
        with pytest.raises(TruncatedHeaderError):
            read(data[:cut])


def test_truncation_in_the_data_keeps_the_expected_length() -> None:
    data = save({"w": np.ones(300, dtype=np.float32)})
    full = read(data)
    for cut in range(full.data_offset, len(data), 53):
        assert read(data[:cut]).expected_length == full.expected_length == len(data)


def test_sub_byte_and_unknown_dtypes_are_sized_or_trusted() -> None:
    header = {
        "f4": {"dtype": "F4", "shape": [4, 2], "data_offsets": [0, 4]},
        "new": {"dtype": "F3_NEW", "shape": [5], "data_offsets": [4, 9]},
    }
    assert read(raw_file(header, b"\0" * 9)).expected_length == 8 + len(json.dumps(header)) + 9


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", TruncatedHeaderError),
        (b"\x10\0\0", TruncatedHeaderError),
        (b"\0" * 64, TruncatedHeaderError),  # preallocated: header not written yet
        (struct.pack("<Q", 100) + b"{}", TruncatedHeaderError),
        (struct.pack("<Q", 4) + b"\0\0\0\0", TruncatedHeaderError),
        (struct.pack("<Q", MAX_HEADER_LENGTH + 1) + b"{", CorruptHeaderError),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:", CorruptHeaderError),
        (struct.pack("<Q", 4) + b"[1] ", CorruptHeaderError),
        (struct.pack("<Q", 4) + b"{\xff\xfe}", CorruptHeaderError),
        (struct.pack("<Q", 6) + b'{"a":}', CorruptHeaderError),
        (struct.pack("<Q", 5) + b'{"a":', CorruptHeaderError),  # cut JSON inside a full header
        (
            struct.pack("<Q", 200_006) + b'{"a":' + b"[" * 10**5 + b"]" * 10**5 + b"}",
            CorruptHeaderError,
        ),
        (raw_file({"__metadata__": {"a": 1}}), CorruptHeaderError),
        (raw_file({"t": []}), CorruptHeaderError),
        (raw_file({"t": {"dtype": "F16", "shape": [2], "data_offsets": [0]}}), CorruptHeaderError),
        (
            raw_file({"t": {"dtype": "F16", "shape": [2], "data_offsets": [4, 0]}}),
            CorruptHeaderError,
        ),
        (
            raw_file({"t": {"dtype": "F16", "shape": [-2], "data_offsets": [0, 4]}}),
            CorruptHeaderError,
        ),
        (
            raw_file({"t": {"dtype": "F16", "shape": [2], "data_offsets": [0, 5]}}),
            CorruptHeaderError,
        ),
        (
            raw_file({"t": {"dtype": "F16", "shape": [True], "data_offsets": [0, 2]}}),
            CorruptHeaderError,
        ),
        (raw_file({"t": {"dtype": 3, "shape": [2], "data_offsets": [0, 4]}}), CorruptHeaderError),
        (
            raw_file({"t": {"dtype": "U8", "shape": [2], "data_offsets": [2, 4]}}),  # gap
            CorruptHeaderError,
        ),
        (
            raw_file(
                {
                    "t": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
                    "u": {"dtype": "U8", "shape": [2], "data_offsets": [2, 4]},  # overlap
                }
            ),
            CorruptHeaderError,
        ),
    ],
)
def test_damaged_headers_give_the_documented_error(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        read(data)
    assert type(info.value) is error


def test_corrupt_json_header_from_the_builder_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    path.write_bytes(save(TENSORS))
    builders.corrupt_safetensors_header(path)
    with pytest.raises(CorruptHeaderError, match="at offset 9: expected a JSON header"):
        read_header_file(path)


def test_file_longer_than_its_header_still_reports_the_header_length() -> None:
    data = save(TENSORS)
    assert read(data + b"junk").expected_length == len(data)


# --- index -----------------------------------------------------------------------------------


def index(weight_map: object) -> io.BytesIO:
    return io.BytesIO(json.dumps({"metadata": {}, "weight_map": weight_map}).encode())


def test_index_lists_each_shard_once_sorted() -> None:
    shards = read_index(
        index({"a": "m-2.safetensors", "b": "m-1.safetensors", "c": "m-2.safetensors"})
    )
    assert shards == ("m-1.safetensors", "m-2.safetensors")


@pytest.mark.parametrize(
    "value",
    [
        "../m.safetensors",
        "/etc/m.safetensors",
        "a/../m.safetensors",
        "./m.safetensors",
        "a//m.safetensors",
        "m.bin",
        3,
        None,
        "a\\m.safetensors",
        "",
    ],
)
def test_index_refuses_shard_paths_outside_the_folder(value: object) -> None:
    with pytest.raises(CorruptHeaderError):
        read_index(index({"w": value}))


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", TruncatedHeaderError),
        (b'{"weight_map": {"a": "m.safe', TruncatedHeaderError),  # still being copied
        (b'{"weight_map": {"a": "m.safetensors"', TruncatedHeaderError),
        (b'{"weight_map": ]}', CorruptHeaderError),
        (b'{"metadata": {}}', CorruptHeaderError),
        (b"[]", CorruptHeaderError),
    ],
)
def test_index_damage_is_cut_short_or_corrupt(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        read_index(io.BytesIO(data))
    assert type(info.value) is error


@pytest.mark.parametrize(
    ("path", "valid"),
    [
        ("model.safetensors", True),
        ("2_Dense/model.safetensors", True),
        ("a/b/c", True),
        (".", False),
        ("..", False),
        ("a/", False),
        ("", False),
        ("/a", False),
    ],
)
def test_relative_path_rule_follows_the_server(path: str, valid: bool) -> None:
    assert is_valid_relative_path(path) is valid

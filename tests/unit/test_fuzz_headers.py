"""Fuzzing both header readers: random and mutated inputs end in a value or in one of the
documented HeaderErrors (cut short / corrupt), never another exception and never a hang."""

from __future__ import annotations

import io
import json
import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dropzone.formats import gguf, safetensors
from dropzone.formats.headers import CorruptHeaderError, HeaderError, TruncatedHeaderError
from dropzone.testing import builders

FUZZ = settings(
    max_examples=300,
    deadline=2000,  # ms per example: a hang or a quadratic blow-up fails here
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _seed_gguf() -> bytes:
    with tempfile.TemporaryDirectory() as d:
        path = builders.build_gguf(
            Path(d) / "seed.gguf",
            n_tensors=2,
            tensor_elems=32,
            chat_template="{{ .Prompt }}",
            extra={"tokenizer.ggml.tokens": ["a", "bc", "def"], "x.scores": [0.5, 1.5]},
        )
        return path.read_bytes()


def _seed_safetensors() -> bytes:
    header = {
        "__metadata__": {"format": "pt"},
        "a": {"dtype": "F16", "shape": [2, 2], "data_offsets": [0, 8]},
        "b": {"dtype": "I8", "shape": [3], "data_offsets": [8, 11]},
    }
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + bytes(11)


GGUF_SEED = _seed_gguf()
ST_SEED = _seed_safetensors()


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "set", "cut", "insert", "delete", "u64"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif op == "u64":  # a plausible-looking but hostile length field
            value = draw(st.sampled_from([0, 1, 2**31, 2**32 - 1, 2**63, 2**64 - 1]))
            data[at : at + 8] = struct.pack("<Q", value)
    return bytes(data)


def _only_documented_errors(reader, data: bytes) -> None:  # type: ignore[no-untyped-def]
    try:
        reader(io.BytesIO(data))
    except (TruncatedHeaderError, CorruptHeaderError) as e:
        assert str(e).startswith(f"at offset {e.offset}: expected ")
        assert 0 <= e.offset <= max(len(data), 8)
    except HeaderError as e:  # the base class alone is never raised
        pytest.fail(f"undocumented HeaderError {type(e).__name__}: {e}")


@FUZZ
@given(st.binary(max_size=2048))
def test_gguf_reader_on_random_bytes(data: bytes) -> None:
    _only_documented_errors(gguf.read_header, data)


@FUZZ
@given(st.binary(max_size=2048))
def test_gguf_reader_on_random_bytes_behind_the_magic(data: bytes) -> None:
    _only_documented_errors(gguf.read_header, b"GGUF\x03\x00\x00\x00" + data)


@FUZZ
@given(mutated(GGUF_SEED))
def test_gguf_reader_on_mutated_files(data: bytes) -> None:
    _only_documented_errors(gguf.read_header, data)


@FUZZ
@given(st.binary(max_size=2048))
def test_safetensors_reader_on_random_bytes(data: bytes) -> None:
    _only_documented_errors(safetensors.read_header, data)


@FUZZ
@given(mutated(ST_SEED))
def test_safetensors_reader_on_mutated_files(data: bytes) -> None:
    _only_documented_errors(safetensors.read_header, data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)


@pytest.mark.slow
@FUZZ
@given(st.dictionaries(st.text(max_size=12), json_values, max_size=6))
def test_safetensors_reader_on_random_json_headers(header: dict[str, object]) -> None:
    text = json.dumps(header).encode()
    _only_documented_errors(
        safetensors.read_header, struct.pack("<Q", len(text)) + text + bytes(64)
    )


@FUZZ
@given(json_values | st.binary(max_size=256).map(lambda b: b.decode("latin-1")))
def test_index_reader_on_random_documents(doc: object) -> None:
    raw = json.dumps({"weight_map": doc}).encode() if not isinstance(doc, str) else doc.encode()
    _only_documented_errors(safetensors.read_index, raw)


def test_seeds_are_valid_so_mutations_start_from_real_files() -> None:
    assert gguf.read_header(io.BytesIO(GGUF_SEED)).expected_length <= len(GGUF_SEED)
    assert safetensors.read_header(io.BytesIO(ST_SEED)).expected_length == len(ST_SEED)

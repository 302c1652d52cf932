"""Names that are not UTF-8 (issue 13): shown escaped, stored as their bytes."""

from __future__ import annotations

import os

import pytest

from dropzone.fs.bytenames import from_column, has_surrogates, shown, shown_in, to_column


@pytest.mark.parametrize(
    ("name", "text"),
    [
        (os.fsdecode(b"mod\xe8le.gguf"), "mod\\xe8le.gguf"),
        (os.fsdecode(b"\xff\xfe/x"), "\\xff\\xfe/x"),
        ("\ud800 lone", "\\ud800 lone"),  # from a JSON or YAML escape, not a file name
        ("café/模型.gguf", "café/模型.gguf"),  # valid text is left alone
    ],
)
def test_shown_is_valid_utf8_with_each_undecodable_byte_as_an_escape(name: str, text: str) -> None:
    assert shown(name) == text
    assert shown(name).encode("utf-8")
    assert has_surrogates(name) == (name != text)


def test_shown_in_reaches_nested_strings_and_keys() -> None:
    bad = os.fsdecode(b"\xe9")
    assert shown_in({bad: [bad, (bad, 1)], "n": None}) == {
        "\\xe9": ["\\xe9", ("\\xe9", 1)],
        "n": None,
    }


@pytest.mark.parametrize("name", [os.fsdecode(b"caf\xe9/m.gguf"), "café/m.gguf", "m.gguf"])
def test_a_column_value_gives_the_name_back(name: str) -> None:
    stored = to_column(name)
    assert from_column(stored) == name
    assert isinstance(stored, bytes) == has_surrogates(name)

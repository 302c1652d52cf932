"""Go-compatible formatting used for emulator blobs and /api/show (ollama-api.md §9.2, §5.4)."""

from __future__ import annotations

import pytest

from dropzone.testing.emulator.gojson import (
    go_float_g,
    go_json,
    go_json_line,
    go_time,
    human_number,
)


def test_go_json_is_compact_and_escapes_html_and_line_separators() -> None:
    value = {"b": "<a&b>", "a": ["\u2028", "é", 1, 2.0, 0.5, None, True]}
    assert go_json(value) == (
        '{"b":"\\u003ca\\u0026b\\u003e","a":["\\u2028","é",1,2,0.5,null,true]}'
    )
    assert go_json(value, sort_keys=True).startswith('{"a":')
    assert go_json_line({}) == b"{}\n"


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.7, "0.7"), (4096.0, "4096"), (1e21, "1e+21"), (1e-7, "1e-7"), (0.00001, "0.00001")],
)
def test_go_json_floats(value: float, text: str) -> None:
    assert go_json(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.7, "0.7"), (4096, "4096"), (1e6, "1e+06"), (123456, "123456"), (1.5e-5, "1.5e-05")],
)
def test_go_percent_v_floats(value: float, text: str) -> None:
    assert go_float_g(float(value)) == text


@pytest.mark.parametrize(
    ("count", "text"),
    [(8_000_000_000, "8B"), (3_200_000_000, "3.2B"), (494_030_000, "494.03M"),
     (7_000_000, "7M"), (12_345, "12K"), (999, "999")],
)  # fmt: skip
def test_human_number(count: int, text: str) -> None:
    assert human_number(count) == text


def test_go_time_trims_trailing_zeros_of_nanoseconds() -> None:
    text = go_time(1_700_000_000_120_000_000)
    assert ".12" in text and ".120" not in text

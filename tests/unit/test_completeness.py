"""The one completeness rule: how long a complete file is, per format (issue 11)."""

from __future__ import annotations

import pytest

from dropzone.formats.completeness import Expected, Fit, as_is, for_gguf, for_safetensors, total


@pytest.mark.parametrize(
    ("expected", "have", "fit"),
    [
        (for_gguf(670), 0, Fit.SHORT),
        (for_gguf(670), 669, Fit.SHORT),
        (for_gguf(670), 670, Fit.COMPLETE),
        (for_gguf(670), 672, Fit.COMPLETE),  # gguf-py's padding after the last tensor
        (for_gguf(670), 10**9, Fit.COMPLETE),  # Ollama decodes it and keeps the whole blob
        (for_safetensors(100), 99, Fit.SHORT),
        (for_safetensors(100), 100, Fit.COMPLETE),
        (for_safetensors(100), 101, Fit.LONG),  # 8 + header + largest end, exactly
        (as_is(5), 5, Fit.COMPLETE),
        (as_is(5), 4, Fit.SHORT),
        (as_is(5), 6, Fit.LONG),
    ],
)
def test_a_file_fits_what_its_format_says_of_its_length(
    expected: Expected, have: int, fit: Fit
) -> None:
    assert expected.fit(have) is fit
    assert expected.complete(have) is (fit is Fit.COMPLETE)


def test_a_gguf_length_is_a_minimum_and_a_safetensors_length_exact() -> None:
    assert (for_gguf(670).size, for_gguf(670).minimum) == (670, True)
    assert (for_safetensors(100).size, for_safetensors(100).minimum) == (100, False)
    assert (str(for_gguf(670)), str(for_safetensors(100))) == ("at least 670", "100")


@pytest.mark.parametrize(
    ("parts", "whole"),
    [
        ([for_safetensors(100), as_is(5)], Expected(105)),
        ([for_safetensors(100), for_gguf(670)], Expected(770, minimum=True)),
        ([], Expected(0)),
    ],
)
def test_an_artifact_needs_the_sum_a_minimum_if_any_part_is(
    parts: list[Expected], whole: Expected
) -> None:
    assert total(parts) == whole

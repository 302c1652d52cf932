"""The banded Levenshtein distance of template detection agrees with the textbook one."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dropzone.testing.emulator.chat_templates import bounded_distance


def full_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
        prev = cur
    return prev[-1]


@given(
    st.text(alphabet="abcé", max_size=40),
    st.text(alphabet="abcé", max_size=40),
    st.integers(min_value=1, max_value=12),
)
def test_below_the_limit_it_is_exact_and_otherwise_none(a: str, b: str, limit: int) -> None:
    exact = full_distance(a, b)
    assert bounded_distance(a, b, limit) == (exact if exact < limit else None)


def test_distance_counts_code_points_as_go_counts_runes() -> None:
    assert bounded_distance("<|eot_id|>", "<|eot_id|>") == 0
    assert bounded_distance("é", "e") == 1
    assert bounded_distance("x" * 200, "") is None

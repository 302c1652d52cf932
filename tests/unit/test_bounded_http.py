"""``json_members``: the complete top-level members of a JSON object cut at a byte cap, so a
capped ``/api/show`` still yields the ``details`` Ollama sends before ``model_info``."""

from __future__ import annotations

from typing import Any

import pytest

from dropzone.ollama._bounded import Deadline, json_members


@pytest.mark.parametrize(
    ("prefix", "members"),
    [
        ('{"a": 1, "b": {"c": 2}}', {"a": 1, "b": {"c": 2}}),
        ('{"a": 1, "d": "' + "x" * 100, {"a": 1}),  # cut inside a long string
        ('{"a": 1, "dddddddddddddddddddd', {"a": 1}),  # cut inside a key
        ('{"a": 1, "d": {"e": [1, 2, 3', {"a": 1}),  # cut inside a nested value
        ('{"a": 1, "b": tr', {"a": 1}),  # cut inside a literal
        ('{"a": 1, "b": 12', {"a": 1}),  # a number cut short is not taken for a smaller one
        ('{"a": 1, "b":', {"a": 1}),
        (" {", {}),
        ("<html>", None),
        ("[1, 2]", None),
        ('{"a" 1, "b": 2, "cccccccccccc', None),  # garbage, not a cut
        ('{"a": 1, "b": <html>' + "x" * 30, None),
        ("", None),
    ],
)
def test_json_members_keeps_what_is_complete_before_the_cut(
    prefix: str, members: dict[str, Any] | None
) -> None:
    assert json_members(prefix) == members


def test_a_deadline_moves_later_when_extended() -> None:
    deadline = Deadline(3600)
    first = deadline.at
    deadline.extend()
    assert deadline.at >= first
    assert not deadline.passed()
    assert Deadline(-1).passed()

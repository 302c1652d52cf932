"""Fuzz: any bytes or text into the Modelfile parser give a result or Problems, nothing else."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dropzone.errors import ProblemError
from dropzone.recipes.modelfile import modelfile_fields, parse_modelfile

# Fragments that steer random text into the grammar's corners.
_PIECES = st.sampled_from(
    [
        "FROM ", "from ", "PARAMETER ", "MESSAGE ", "SYSTEM ", "TEMPLATE ", "LICENSE ",
        "ADAPTER ", "REQUIRES ", "user ", "stop ", "temperature ", "num_ctx ", '"', '"""',
        "\n", "\r\n", "\r", " ", "\t", "#", "\x00", "\ufeff", "x", "1.5", "true", "v1.2.3",
    ]
)  # fmt: skip
_TEXT = st.lists(st.one_of(_PIECES, st.text(max_size=5)), max_size=40).map("".join)


def parse_all_the_way(data: str | bytes) -> None:
    try:
        modelfile = parse_modelfile(data, path="fuzz/Modelfile", require_from=False)
        modelfile_fields(modelfile)
    except ProblemError as e:
        assert e.problems
        assert all(p.path == "fuzz/Modelfile" and p.message for p in e.problems)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(_TEXT)
def test_random_text_gives_only_problems(text: str) -> None:
    parse_all_the_way(text)


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_random_bytes_give_only_problems(data: bytes) -> None:
    parse_all_the_way(data)
    parse_all_the_way(b"\xff\xfe" + data)  # as UTF-16
    parse_all_the_way(b"\xfe\xff" + data)


def test_pathological_inputs_parse_in_linear_time() -> None:
    """Go re-reads the whole value at every line break (quadratic: hours for a 1 MiB sidecar);
    ours must not. A hang here ends at the test timeout."""
    size = 1 << 18
    for body in ('"' + "\n" * size, '"""' + "x \n" * (size // 3), " " * size, "a " * size):
        parse_all_the_way("FROM x\nSYSTEM " + body + "\n" * size)
    found = modelfile_fields(parse_modelfile('FROM x\nSYSTEM "' + "a\n" * (size // 2) + '"'))
    assert found[0]["system"].count("\n") == size // 2

"""The Modelfile parser against the CLI's grammar (ollama-api.md §7, parser/parser.go)."""

from __future__ import annotations

import codecs
from typing import Any

import pytest

from dropzone.errors import Problem, ProblemError
from dropzone.recipes.modelfile import (
    COMMAND_ERROR,
    modelfile_fields,
    parse_modelfile,
    quote_value,
    to_modelfile,
)


def fields(text: str | bytes, **kwargs: Any) -> dict[str, Any]:
    return modelfile_fields(parse_modelfile(text, **kwargs))[0]


def syntax_error(text: str | bytes, **kwargs: Any) -> Problem:
    with pytest.raises(ProblemError) as caught:
        parse_modelfile(text, path="dir/Modelfile", **kwargs)
    (problem,) = caught.value.problems
    assert problem.path == "dir/Modelfile"
    assert problem.fix
    return problem


def field_errors(text: str) -> list[Problem]:
    modelfile = parse_modelfile(text, path="M")
    with pytest.raises(ProblemError) as caught:
        modelfile_fields(modelfile)
    assert all(p.fix and p.line for p in caught.value.problems)
    return caught.value.problems


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("FROM llama3.2", {"from": ["llama3.2"]}),
        ("FROM ./a.gguf\nFROM ./mmproj.gguf\n", {"from": ["./a.gguf", "./mmproj.gguf"]}),
        ("FROM x\nADAPTER ./lora.gguf", {"from": ["x"], "adapters": ["./lora.gguf"]}),
        ("FROM x\nDRAFT ./d1\nDRAFT ./d2", {"from": ["x"], "draft": ["./d1", "./d2"]}),
        ("FROM x\nTEMPLATE {{ .Prompt }}", {"from": ["x"], "template": "{{ .Prompt }}"}),
        ("FROM x\nSYSTEM one\nSYSTEM two", {"from": ["x"], "system": "two"}),  # last wins
        ("FROM x\nLICENSE MIT\nLICENSE BSD", {"from": ["x"], "license": ["MIT", "BSD"]}),
        ("FROM x\nLICENSE MIT", {"from": ["x"], "license": ["MIT"]}),  # always a list
        (
            "FROM x\nRENDERER qwen3\nPARSER qwen3",
            {"from": ["x"], "renderer": "qwen3", "parser": "qwen3"},
        ),
        ("FROM x\nREQUIRES 0.14.0", {"from": ["x"], "requires": "0.14.0"}),
        ("FROM x\nREQUIRES v0.14.0", {"from": ["x"], "requires": "0.14.0"}),
        ("FROM x\nREQUIRES 1.2", {"from": ["x"], "requires": "1.2"}),  # x/mod/semver shorthand
        ("FROM x\nREQUIRES 1.2.3-rc.1+build.5", {"from": ["x"], "requires": "1.2.3-rc.1+build.5"}),
        (
            "FROM x\nMESSAGE user Hi there\nMESSAGE assistant Hello: friend",
            {
                "from": ["x"],
                "messages": [
                    {"role": "user", "content": "Hi there"},
                    {"role": "assistant", "content": "Hello: friend"},
                ],
            },
        ),
        ("from x\nSyStEm hello", {"from": ["x"], "system": "hello"}),  # names case-insensitive
        ("FROM x # not a comment", {"from": ["x # not a comment"]}),  # no trailing comments
        ("# c\n  # indented comment\n\n\t FROM x\n", {"from": ["x"]}),
        ("FROM\tx", {"from": ["x"]}),  # a tab separates too
        ("FROM     x   ", {"from": ["x"]}),  # surrounding whitespace trimmed
        ("FROM x\nSYSTEM ", {"from": ["x"], "system": ""}),
    ],
)
def test_instructions_map_to_request_fields(text: str, expected: dict[str, Any]) -> None:
    assert fields(text) == expected


@pytest.mark.parametrize(
    ("value_text", "value"),
    [
        ('""', ""),
        ('""""""', ""),
        ('"hello"', "hello"),
        ('"  padded  "', "  padded  "),
        ('"""say "hi" """', 'say "hi" '),
        ('"line one\nline two"', "line one\nline two"),
        ('"""\n  indented\n"""', "\n  indented\n"),
        ('"""a""" b\nc"""', 'a""" b\nc'),  # text after closing quotes keeps it open
        ('"a" b\nc"', 'a" b\nc'),
        ('"a\n# not a comment\nFROM y"', "a\n# not a comment\nFROM y"),
        ('"trailing spaces after close"   ', "trailing spaces after close"),
        ('hello"', 'hello"'),  # a quote only at the end is just a character
        ('"abc"""', 'abc""'),
        ('"\nabc"', "\nabc"),  # a lone " does not close itself
        ('"""""\n"""', '""\n'),  # nor do five
        ('"""abc""""', 'abc"'),
        ("a\x00b\x07c\x1bd", "abcd"),  # control characters dropped
        ("a\tb", "a\tb"),  # tab kept
        ('"a\x0b\r\nb"', "a\r\nb"),  # inside quotes CR and LF are kept verbatim
        ("zero\u200bwidth\u00a0nbsp", "zerowidthnbsp"),  # non-printable format/space runes
    ],
)
def test_quoting_forms(value_text: str, value: str) -> None:
    assert fields(f"FROM x\nSYSTEM {value_text}\n")["system"] == value


@pytest.mark.parametrize(
    "data",
    [
        b"FROM x\r\nSYSTEM a\r\n",
        b"FROM x\rSYSTEM a\r",
        codecs.BOM_UTF8 + b"FROM x\nSYSTEM a\n",
        codecs.BOM_UTF16_LE + "FROM x\nSYSTEM a\n".encode("utf-16-le"),
        codecs.BOM_UTF16_BE + "FROM x\nSYSTEM a\n".encode("utf-16-be"),
        "\ufeffFROM x\nSYSTEM a".encode(),
    ],
)
def test_line_ends_and_byte_order_marks(data: bytes) -> None:
    assert fields(data) == {"from": ["x"], "system": "a"}


def test_invalid_utf8_is_replaced_with_a_warning() -> None:
    modelfile = parse_modelfile(b"FROM x\nSYSTEM caf\xe9\n", path="M")
    found, warnings = modelfile_fields(modelfile)
    assert found["system"] == "caf\ufffd"
    assert [w.message for w in warnings] == ["not valid UTF-8: bad bytes read as U+FFFD"]


def test_crlf_counts_one_line_in_positions() -> None:
    problem = syntax_error("FROM x\r\n\r\nBOGUS y\r\n")
    assert (problem.line, problem.column) == (3, 6)


@pytest.mark.parametrize(
    ("text", "message", "line", "key"),
    [
        ("FROM x\nBOGUS y", COMMAND_ERROR, 2, "BOGUS"),
        ("FROM x\nFROM\n", COMMAND_ERROR, 2, "FROM"),  # no space before the line end
        ("FROM x\nSYSTEM:hi", COMMAND_ERROR, 2, "SYSTEM"),
        ('FROM x\n"SYSTEM" y', COMMAND_ERROR, 2, '"SYSTEM'),
        ("FROM x\nFR0M y", COMMAND_ERROR, 2, "FR"),
        ("FROM x\nSYSTEM", "unexpected EOF", 2, "SYSTEM"),
        ('FROM x\nSYSTEM "open', "unexpected EOF", 2, None),
        ('FROM x\nSYSTEM """open\nmore\n', "unexpected EOF", 2, None),
        ('FROM x\nSYSTEM "closed" trailing\n', "unexpected EOF", 2, None),
        ("FROM x\nPARAMETER temp-erature 1", "unexpected EOF: temp", 2, "temp"),
        ("FROM x\nPARAMETER stop\n", "unexpected EOF: stop", 2, "stop"),
        ("FROM x\nPARAMETER stop", "unexpected EOF", 2, "stop"),
        ("FROM x\nMESSAGE user\n", "unexpected EOF: user", 2, "user"),
        (
            "FROM x\nMESSAGE User hi",
            'message role must be one of "system", "user", or "assistant"',
            2,
            "User",
        ),
        (
            "FROM x\nMESSAGE tool hi",
            'message role must be one of "system", "user", or "assistant"',
            2,
            "tool",
        ),
        ("SYSTEM hi\n", "no FROM line", None, None),
    ],
)
def test_syntax_errors_carry_the_cli_text_and_position(
    text: str, message: str, line: int | None, key: str | None
) -> None:
    problem = syntax_error(text)
    assert (problem.message, problem.line, problem.key) == (message, line, key)


def test_unknown_instruction_suggests_the_closest() -> None:
    assert "did you mean 'SYSTEM'?" in syntax_error("FROM x\nSYSTM hi").fix


def test_sidecar_modelfile_needs_no_from() -> None:
    assert fields("SYSTEM hi", require_from=False) == {"system": "hi"}


@pytest.mark.parametrize(
    ("line", "key", "value"),
    [
        ("num_ctx 4096", "num_ctx", 4096),
        ("num_ctx -1", "num_ctx", -1),
        ("num_gpu +7", "num_gpu", 7),
        ("seed 0042", "seed", 42),
        ("seed -" + "0" * 5000 + "9223372036854775808", "seed", -(2**63)),
        ("temperature 0.7", "temperature", 0.7),  # float32, written shortest
        ("top_p 1", "top_p", 1.0),
        ("min_p .05", "min_p", 0.05),
        ("repeat_penalty 1e0", "repeat_penalty", 1.0),
        ("typical_p 0x1p-1", "typical_p", 0.5),  # Go accepts hex floats
        ("presence_penalty 1_0.5", "presence_penalty", 10.5),  # and digit separators
        ("frequency_penalty 0.1", "frequency_penalty", 0.1),
        ("use_mmap true", "use_mmap", True),
        ("use_mmap F", "use_mmap", False),
        ("use_mmap 1", "use_mmap", True),
        ("draft_num_predict 4", "draft_num_predict", 4),
        ("stop <|eot_id|>", "stop", ["<|eot_id|>"]),
    ],
)
def test_parameter_values_typed_like_the_cli(line: str, key: str, value: Any) -> None:
    assert fields(f"FROM x\nPARAMETER {line}")["parameters"] == {key: value}


def test_stop_accumulates_and_other_parameters_take_the_last() -> None:
    text = 'FROM x\nPARAMETER stop a\nPARAMETER temperature 1\nPARAMETER stop "b c"\n'
    text += "PARAMETER temperature 0.5\n"
    assert fields(text)["parameters"] == {"stop": ["a", "b c"], "temperature": 0.5}


@pytest.mark.parametrize(
    ("line", "message", "key"),
    [
        ("num_ctx 4096.0", "invalid int value [4096.0]", "num_ctx"),
        ("num_ctx 1_000", "invalid int value [1_000]", "num_ctx"),
        ("seed 9223372036854775808", "invalid int value [9223372036854775808]", "seed"),
        ("top_k ten", "invalid int value [ten]", "top_k"),
        ("top_k 1-2", "invalid int value [1-2]", "top_k"),
        ("top_k " + "9" * 5000, f"invalid int value [{'9' * 5000}]", "top_k"),
        ("temperature hot", "invalid float value [hot]", "temperature"),
        ("temperature 1e39", "invalid float value [1e39]", "temperature"),  # float32 range
        ("temperature NaN", "invalid float value [NaN]", "temperature"),
        ("temperature inf", "invalid float value [inf]", "temperature"),
        ("temperature 0,7", "invalid float value [0,7]", "temperature"),
        ("use_mmap yes", "invalid bool value [yes]", "use_mmap"),
        ("use_mmap tRUE", "invalid bool value [tRUE]", "use_mmap"),
        (
            "Temperature 0.7",
            "unknown parameter 'Temperature'",
            "Temperature",
        ),  # keys case-sensitive
        ("numa true", "unknown parameter 'numa'", "numa"),
        ("tfs_z 1", "unknown parameter 'tfs_z'", "tfs_z"),
        ("num_gqa 8", "unknown parameter 'num_gqa'", "num_gqa"),
        ("system hi", "unknown parameter 'system'", "system"),
    ],
)
def test_bad_parameters_get_the_cli_texts(line: str, message: str, key: str) -> None:
    (problem,) = field_errors(f"FROM x\nPARAMETER {line}")
    assert (problem.message, problem.key, problem.line) == (message, key, 2)


def test_every_parameter_error_is_reported_at_once() -> None:
    problems = field_errors("FROM x\nPARAMETER top_k a\nREQUIRES 1.x\nPARAMETER temprature 1")
    assert [p.line for p in problems] == [2, 3, 4]
    assert problems[1].message == "requires must be a valid semver (e.g. 0.14.0)"
    assert problems[2].fix == "did you mean 'temperature'?"


def test_removed_parameter_fix_says_it_is_gone() -> None:
    (problem,) = field_errors("FROM x\nPARAMETER numa true")
    assert "no longer" in problem.fix


@pytest.mark.parametrize(
    "key", ["mirostat", "mirostat_tau", "penalize_newline", "use_mlock", "f16_kv"]
)
def test_deprecated_parameters_are_skipped_with_a_warning(key: str) -> None:
    found, warnings = modelfile_fields(parse_modelfile(f"FROM x\nPARAMETER {key} 1\n", path="M"))
    assert "parameters" not in found
    assert [(w.message, w.key, w.line) for w in warnings] == [
        (f"warning: parameter {key} is deprecated", key, 2)
    ]


@pytest.mark.parametrize(
    "version", ["1.2.3.4", "01.2.3", "1.2-rc1", "x", "", "vv1.0.0", "1.0.0-01"]
)
def test_bad_requires(version: str) -> None:
    (problem,) = field_errors(f"FROM x\nREQUIRES {version}\n")
    assert problem.message == "requires must be a valid semver (e.g. 0.14.0)"


def test_repeated_adapter_keeps_the_last_with_a_warning() -> None:
    found, warnings = modelfile_fields(parse_modelfile("FROM x\nADAPTER a\nADAPTER b\n"))
    assert found["adapters"] == ["b"]
    assert warnings[0].line == 3


def test_commands_keep_their_positions() -> None:
    modelfile = parse_modelfile('FROM x\n\n  SYSTEM """a\nb"""\nPARAMETER stop s\n')
    assert [(c.instruction, c.line, c.column) for c in modelfile.commands] == [
        ("FROM", 1, 1),
        ("SYSTEM", 3, 3),
        ("PARAMETER", 5, 1),
    ]
    assert modelfile.line_of("FROM", "x") == 1


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("plain", "plain"),
        ("inner space", "inner space"),
        ("", '""'),
        (" lead", '" lead"'),
        ("trail\t", '"trail\t"'),
        ('"starts quoted"', '""starts quoted""'),
        ("two\nlines", '"two\nlines"'),
        ('ends "\nquoted"', '"""ends "\nquoted""""'),  # a line ending in " would close "…"
        ('""x', '"""""x"""'),  # "…" would read as """
        ('"', '"""""""'),
    ],
)
def test_quote_value_picks_a_form_that_reads_back(value: str, written: str) -> None:
    assert quote_value(value) == written
    assert fields(f"FROM x\nSYSTEM {written}\n")["system"] == value


@pytest.mark.parametrize("value", ['a"""\nb"\nc', "bell\x07", "vt\x0b"])
def test_quote_value_refuses_what_no_form_carries(value: str) -> None:
    with pytest.raises(ValueError, match="Modelfile"):
        quote_value(value)


def test_to_modelfile_writes_every_field() -> None:
    request = {
        "model": "ignored:latest",
        "quantize": "q4_K_M",
        "from": "llama3.2",
        "adapters": ["./lora.gguf"],
        "template": "{{ .System }}\n{{ .Prompt }}",
        "system": "You are Mario.",
        "license": "MIT",
        "parameters": {"temperature": 0.7, "num_ctx": 8192, "use_mmap": False, "stop": ["a", " b"]},
        "messages": [{"role": "user", "content": "Hi"}],
        "renderer": "r",
        "parser": "p",
        "requires": "0.14.0",
    }
    text = to_modelfile(request)
    assert text.splitlines()[:3] == [
        "FROM llama3.2",
        "ADAPTER ./lora.gguf",
        'TEMPLATE "{{ .System }}',
    ]
    back = fields(text)
    assert back["parameters"] == request["parameters"]
    assert back["license"] == ["MIT"]
    assert back["from"] == ["llama3.2"]
    assert "model" not in back and "quantize" not in back


@pytest.mark.parametrize(
    "request_fields",
    [{"files": {"a": "sha256:00"}}, {"adapters": ["a", "b"]}, {"system": "bell\x07"}],
)
def test_to_modelfile_refuses_what_a_modelfile_cannot_say(request_fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        to_modelfile(request_fields)

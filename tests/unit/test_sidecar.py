"""Sidecars: TOML, YAML, JSON and Modelfile into one SidecarSpec; every error names file, line,
key and fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dropzone.errors import Problem, ProblemError
from dropzone.recipes.sidecar import (
    MAX_SIDECAR_BYTES,
    SidecarSpec,
    load_sidecar,
    load_spec,
    parse_sidecar,
    sidecar_format,
)
from dropzone.recipes.types import Artifact, ArtifactFile, ArtifactKind
from dropzone.testing.builders import build_gguf, build_safetensors_model


@pytest.fixture
def drop(tmp_path: Path) -> Path:
    drop = tmp_path / "drop"
    drop.mkdir()
    return drop


def load(drop: Path, name: str, text: str | bytes) -> SidecarSpec | list[Problem]:
    path = drop / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return load_sidecar(path, drop_dir=drop)


def spec_of(drop: Path, name: str, text: str) -> SidecarSpec:
    spec = load(drop, name, text)
    assert isinstance(spec, SidecarSpec), spec
    return spec


def problems_of(drop: Path, name: str, text: str | bytes) -> list[Problem]:
    problems = load(drop, name, text)
    assert isinstance(problems, list), problems
    assert all(p.path == str(drop / name) and p.fix for p in problems)
    return problems


TOML = """\
model = "Qwen3:8B"
from = "llama3.2"
system = "You are terse."
template = "{{ .Prompt }}"
license = "MIT"
quantize = "q4_K_M"
renderer = "qwen3"
parser = "qwen3"
requires = "v0.14.0"
messages = [{role = "user", content = "Hi"}, {role = "assistant", content = "Hello"}]

[parameters]
temperature = 0.7
num_ctx = 8192
stop = "<|im_end|>"
use_mmap = false
"""
YAML = """\
model: Qwen3:8B
from: llama3.2
system: You are terse.
template: "{{ .Prompt }}"
license: MIT
quantize: q4_K_M
renderer: qwen3
parser: qwen3
requires: v0.14.0
messages:
  - {role: user, content: Hi}
  - {role: assistant, content: Hello}
parameters:
  temperature: 0.7
  num_ctx: 8192
  stop: "<|im_end|>"
  use_mmap: false
"""
MODELFILE = """\
FROM llama3.2
SYSTEM You are terse.
TEMPLATE "{{ .Prompt }}"
LICENSE MIT
RENDERER qwen3
PARSER qwen3
REQUIRES v0.14.0
MESSAGE user Hi
MESSAGE assistant Hello
PARAMETER temperature 0.7
PARAMETER num_ctx 8192
PARAMETER stop <|im_end|>
PARAMETER use_mmap false
"""
EXPECTED_FIELDS = {
    "system": "You are terse.",
    "template": "{{ .Prompt }}",
    "license": ["MIT"],
    "renderer": "qwen3",
    "parser": "qwen3",
    "requires": "0.14.0",
    "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
    "parameters": {"temperature": 0.7, "num_ctx": 8192, "stop": ["<|im_end|>"], "use_mmap": False},
}


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("x.toml", TOML),
        ("x.yaml", YAML),
        ("x.yml", YAML),
        ("x.json", json.dumps(__import__("tomllib").loads(TOML))),
        ("x.Modelfile", MODELFILE),
        ("D/Modelfile", MODELFILE),
    ],
)
def test_every_sidecar_kind_gives_the_same_spec(drop: Path, name: str, text: str) -> None:
    spec = spec_of(drop, name, text)
    assert spec.fields == EXPECTED_FIELDS
    assert spec.from_name == "llama3.2"
    if name.endswith("Modelfile"):  # the model name and quantize are CLI flags there
        assert (spec.model, spec.quantize) == (None, None)
    else:
        assert (spec.model, spec.quantize) == ("Qwen3:8B", "q4_K_M")
    assert spec.path == drop / name


def test_license_list_and_adapter_paths(drop: Path) -> None:
    (drop / "lora.gguf").write_bytes(b"GGUF")
    (drop / "base.gguf").write_bytes(b"GGUF")
    text = 'license = ["MIT", "Apache"]\nfrom = "./base.gguf"\nadapters = ["lora.gguf"]\n'
    spec = spec_of(drop, "x.toml", text)
    assert spec.fields == {"license": ["MIT", "Apache"]}
    assert (spec.from_paths, spec.adapter_paths) == ((drop / "base.gguf",), (drop / "lora.gguf",))


def test_deprecated_parameter_is_a_warning(drop: Path) -> None:
    spec = spec_of(drop, "x.toml", "[parameters]\nmirostat = 1\ntop_k = 5\n")
    assert spec.fields == {"parameters": {"top_k": 5}}
    assert [(w.message, w.line, w.key) for w in spec.warnings] == [
        ("warning: parameter mirostat is deprecated", 2, "mirostat")
    ]


QUANTIZE_ERROR = (
    "unsupported quantization type Q5_0 - supported types are F32, F16, Q4_K_S, Q4_K_M, Q8_0"
)
ROLE_ERROR = 'message 1: message role must be one of "system", "user", or "assistant"'


@pytest.mark.parametrize(
    ("sidecar", "message", "where"),
    [
        (("x.toml", 'model = "a"\nsytem = "hi"\n'), "unknown key 'sytem'",
         (2, "sytem", "did you mean 'system'?")),
        (("x.toml", 'name = "a"\n'), "unknown key 'name'", (1, "name", "did you mean 'model'?")),
        (("x.yaml", "params:\n  top_k: 1\n"), "unknown key 'params'",
         (1, "params", "did you mean 'parameters'?")),
        (("x.json", '{"adapter": "a.gguf"}'), "unknown key 'adapter'",
         (1, "adapter", "did you mean 'adapters'?")),
        (("x.toml", "system = 5\n"), "'system' must be a string, not int 5", (1, "system", None)),
        (("x.yaml", "requires: 0.14\n"), "'requires' must be a string, not float 0.14",
         (1, "requires", None)),
        (("x.toml", 'requires = "next"\n'), "requires must be a valid semver (e.g. 0.14.0)",
         (1, "requires", None)),
        (("x.toml", 'quantize = "q5_0"\n'), QUANTIZE_ERROR, (1, "quantize", None)),
        (("x.toml", "license = [1]\n"),
         "'license' must be a string or a list of strings, not list [1]", (1, "license", None)),
        (("x.toml", '\n[parameters]\ntemperature = "hot"\n'),
         "parameter 'temperature' must be a number, not str 'hot'", (3, "temperature", None)),
        (("x.toml", "[parameters]\nnum_ctx = 4096.0\n"),
         "parameter 'num_ctx' must be a whole number, not float 4096.0", (2, "num_ctx", None)),
        (("x.toml", "[parameters]\nuse_mmap = 1\n"),
         "parameter 'use_mmap' must be true or false, not int 1", (2, "use_mmap", None)),
        (("x.toml", "[parameters]\nstop = [1]\n"),
         "parameter 'stop' must be a string or a list of strings, not list [1]", (2, "stop", None)),
        (("x.toml", "[parameters]\ntemprature = 1\n"), "unknown parameter 'temprature'",
         (2, "temprature", "did you mean 'temperature'?")),
        (("x.json", '{\n "parameters": {\n  "numa": true}}'), "unknown parameter 'numa'",
         (3, "numa", None)),
        (("x.json", '{"parameters": {"temperature": 1e39}}'),
         "parameter 'temperature' must be a number, not float 1e+39", (1, "temperature", None)),
        (("x.yaml", "messages:\n- {role: tool, content: x}\n"), ROLE_ERROR, (1, "messages", None)),
        (("x.yaml", "messages:\n- {role: user}\n"),
         "message 1 must have exactly the keys role and content", (1, "messages", None)),
        (("x.toml", 'model = "bad name!"\n'), "invalid model name: bad name!", (1, "model", None)),
        (("x.toml", 'from = "./missing.gguf"\n'), "no such file or folder: './missing.gguf'",
         (1, "from", None)),
        (("x.toml", 'adapters = ["../../etc/passwd"]\n'),
         "'../../etc/passwd' leads outside the drop folder", (1, "adapters", None)),
        (("x.Modelfile", "FROM x\nADAPTER /abs/lora.gguf\n"),
         "absolute path '/abs/lora.gguf' is not allowed", (2, "adapters", None)),
        (("x.Modelfile", "FROM x\nPARAMETER top_k 1.5\n"), "invalid int value [1.5]",
         (2, "top_k", None)),
    ],
)  # fmt: skip
def test_field_errors_name_line_key_and_fix(
    drop: Path, sidecar: tuple[str, str], message: str, where: tuple[int, str, str | None]
) -> None:
    (problem,) = problems_of(drop, *sidecar)
    line, key, fix = where
    assert (problem.message, problem.line, problem.key) == (message, line, key)
    if fix is not None:
        assert problem.fix == fix


@pytest.mark.parametrize(
    ("sidecar", "message", "where"),
    [
        (("x.toml", 'model = "a"\nsystem = \n'), "Invalid value", (2, 10)),
        (("x.toml", 'model = "a"\nmodel = "b"\n'), "Cannot overwrite a value", (2, 12)),
        (("x.json", '{"model": "a",\n "system": }'), "Expecting value", (2, 12)),
        (("x.json", '{"model": "a", "model": "b"}'), "duplicate key 'model'", (None, None)),
        (("x.json", '{"parameters": {"temperature": NaN}}'), "NaN is not a number JSON allows",
         (None, None)),
        (("x.yaml", "model: a\n  system: b\n"), "mapping values are not allowed here", (2, 9)),
        (("x.yaml", "model: !!python/object:os.system x\n"),
         "YAML tags are not allowed: tag:yaml.org,2002:python/object:os.system", (1, 8)),
        (("x.yaml", "system: !!str hi\n"), "YAML tags are not allowed: tag:yaml.org,2002:str",
         (1, 9)),
        (("x.yaml", "a: &x hi\nsystem: *x\n"), "YAML anchors and aliases are not allowed", (1, 4)),
        (("x.yaml", "- a\n- b\n"), "a sidecar must be a table of keys", (1, None)),
        (("x.yaml", "system: 2024-13-45\n"), "invalid YAML value: month must be in 1..12",
         (None, None)),
        (("x.yaml", "? [a]\n: b\n"), "found unhashable key", (1, 3)),
        (("x.toml", b'system = "caf\xe9"\n'), "not valid UTF-8", (1, None)),
        (("x.Modelfile", 'FROM x\nSYSTEM "open\n'), "unexpected EOF", (2, None)),
    ],
)  # fmt: skip
def test_syntax_errors_carry_the_parsers_position(
    drop: Path, sidecar: tuple[str, str | bytes], message: str, where: tuple[int | None, ...]
) -> None:
    (problem,) = problems_of(drop, *sidecar)
    assert message in problem.message
    assert (problem.line, problem.column) == where


@pytest.mark.parametrize("name", ["x.toml", "x.yaml", "x.json", "x.Modelfile"])
def test_empty_sidecars_say_nothing(drop: Path, name: str) -> None:
    spec = spec_of(drop, name, "\n")
    assert spec == SidecarSpec(path=drop / name)


def test_oversized_sidecar_is_refused_before_parsing(drop: Path) -> None:
    (problem,) = problems_of(drop, "x.toml", "#" * (MAX_SIDECAR_BYTES + 1))
    assert "more than the" in problem.message


def test_sidecar_symlinked_from_outside_is_refused(drop: Path, tmp_path: Path) -> None:
    (tmp_path / "secret.toml").write_text('model = "x"\n')
    (drop / "x.toml").symlink_to(tmp_path / "secret.toml")
    problems = load_sidecar(drop / "x.toml", drop_dir=drop)
    assert isinstance(problems, list)
    assert "symlink that leads outside" in problems[0].message


def test_every_field_error_is_reported_at_once(drop: Path) -> None:
    problems = problems_of(
        drop, "x.toml", 'sytem = 1\nquantize = "q2"\n[parameters]\ntop_k = "x"\n'
    )
    assert [p.line for p in problems] == [1, 2, 4]


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("Modelfile", "modelfile"),
        ("a.modelfile", "modelfile"),
        ("a.TOML", "toml"),
        ("a.yml", "yaml"),
        ("a.txt", None),
    ],
)
def test_sidecar_format_from_the_name(name: str, fmt: str | None) -> None:
    assert sidecar_format(Path(name)) == fmt


def test_parse_sidecar_is_pure_and_locates_keys() -> None:
    fields, warnings, locate = parse_sidecar(b'\n\nsystem = "x"\n', path="mem.toml", fmt="toml")
    assert (fields, warnings, locate("system", "x")) == ({"system": "x"}, [], 3)


# --- Hugging Face side files and load_spec -------------------------------------------------


def folder_artifact(folder: Path, sidecar: Path | None = None) -> Artifact:
    build_safetensors_model(folder)
    files = tuple(
        ArtifactFile(p.name, p)
        for p in sorted(folder.iterdir())
        if p.suffix in (".json", ".safetensors")
    )
    return Artifact(ArtifactKind.SAFETENSORS, folder, files, sidecar=sidecar)


def test_hf_side_files_become_fields(drop: Path) -> None:
    artifact = folder_artifact(drop / "fred")
    (drop / "fred" / "template").write_text("{{ .Prompt }}")
    (drop / "fred" / "system").write_text("Be brief.")
    (drop / "fred" / "params").write_text('{"stop": ["<end>"], "temperature": 0.2}')
    spec = load_spec(artifact, drop_dir=drop)
    assert isinstance(spec, SidecarSpec)
    assert spec.path is None
    assert spec.fields == {
        "template": "{{ .Prompt }}",
        "system": "Be brief.",
        "parameters": {"stop": ["<end>"], "temperature": 0.2},
    }


def test_a_sidecar_field_wins_over_the_hf_side_file(drop: Path) -> None:
    sidecar = drop / "fred" / "dropzone.toml"
    artifact = folder_artifact(drop / "fred", sidecar)
    sidecar.write_text('system = "From the sidecar."\n[parameters]\ntop_k = 3\n')
    (drop / "fred" / "system").write_text("From HF.")
    (drop / "fred" / "template").write_text("T")
    (drop / "fred" / "params").write_text("not even JSON")  # not read: the sidecar sets parameters
    spec = load_spec(artifact, drop_dir=drop)
    assert isinstance(spec, SidecarSpec)
    assert spec.fields == {
        "system": "From the sidecar.",
        "parameters": {"top_k": 3},
        "template": "T",
    }


def test_bad_hf_params_file_is_a_problem(drop: Path) -> None:
    artifact = folder_artifact(drop / "fred")
    (drop / "fred" / "params").write_text('{\n"temperature": "hot"}')
    problems = load_spec(artifact, drop_dir=drop)
    assert isinstance(problems, list)
    assert (problems[0].path, problems[0].line) == (str(drop / "fred" / "params"), 2)


def test_hf_side_files_symlinked_out_are_refused(drop: Path, tmp_path: Path) -> None:
    artifact = folder_artifact(drop / "fred")
    (tmp_path / "shadow").write_text("secret")
    (drop / "fred" / "system").symlink_to(tmp_path / "shadow")
    problems = load_spec(artifact, drop_dir=drop)
    assert isinstance(problems, list)
    assert "leads outside" in problems[0].message


def test_gguf_at_the_top_of_the_drop_folder_takes_no_side_files(drop: Path) -> None:
    path = build_gguf(drop / "m.gguf")
    (drop / "system").write_text("would apply to every file here")
    artifact = Artifact(ArtifactKind.GGUF, path, (ArtifactFile("m.gguf", path),))
    assert load_spec(artifact, drop_dir=drop) == SidecarSpec(path=None)
    nested = build_gguf(drop / "repo" / "m.gguf")
    (drop / "repo" / "system").write_text("repo system")
    artifact = Artifact(ArtifactKind.GGUF, nested, (ArtifactFile("m.gguf", nested),))
    spec = load_spec(artifact, drop_dir=drop)
    assert isinstance(spec, SidecarSpec)
    assert spec.fields == {"system": "repo system"}


def test_load_spec_passes_sidecar_problems_through(drop: Path) -> None:
    path = build_gguf(drop / "m.gguf")
    (drop / "m.toml").write_text("bogus = 1\n")
    artifact = Artifact(
        ArtifactKind.GGUF, path, (ArtifactFile("m.gguf", path),), sidecar=drop / "m.toml"
    )
    problems: Any = load_spec(artifact, drop_dir=drop)
    assert [p.key for p in problems] == ["bogus"]


@pytest.mark.parametrize(
    ("fmt", "text"),
    [
        ("toml", "a = " + "[" * 100_000),
        ("json", "[" * 100_000 + "]" * 100_000),
        ("yaml", "[" * 100_000 + "]" * 100_000),
        ("json", '{"parameters": {"stop": ' + "[" * 5_000 + "]" * 5_000 + "}}"),
    ],
)
def test_deep_nesting_is_a_problem_not_a_crash(fmt: str, text: str) -> None:
    with pytest.raises(ProblemError) as caught:
        parse_sidecar(text.encode(), path="deep", fmt=fmt)
    assert caught.value.problems[0].path == "deep"


_STRUCTURED_PIECES = st.sampled_from(
    ['model', 'parameters', 'stop', 'temperature', '"', "'", "=", ":", "-", "[", "]", "{", "}",
     ",", "\n", " ", "&a", "*a", "!!str", "1", "1.5", "true", "null", "#", "messages", "role"]
)  # fmt: skip


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["toml", "yaml", "json"]),
    st.lists(st.one_of(_STRUCTURED_PIECES, st.text(max_size=4)), max_size=30).map("".join),
)
def test_random_structured_sidecars_give_only_problems(fmt: str, text: str) -> None:
    try:
        parse_sidecar(text.encode(), path="fuzz", fmt=fmt)
    except ProblemError as e:
        assert e.problems and all(p.path == "fuzz" and p.message for p in e.problems)


# A lone surrogate escape is valid JSON and YAML syntax, but no text: it crashed the daemon where
# the request was hashed, stored or sent (issue 13). A pair (an emoji) is one character: fine.
@pytest.mark.parametrize(
    ("name", "text", "line"),
    [
        ("x.json", '{"model": "x",\n "system": "\\ud800"}', 2),
        ("x.yaml", 'model: x\nsystem: "\\ud800"\n', 2),
        ("x.json", '{"parameters": {"stop": ["\\udce8"]}}', 1),
        ("x.json", '{"messages": [{"role": "user", "\\ud800": "hi"}]}', 1),
    ],
)
def test_a_lone_surrogate_escape_is_refused_naming_file_key_and_fix(
    drop: Path, name: str, text: str, line: int
) -> None:
    (problem,) = problems_of(drop, name, text)
    top = "system" if "system" in text else "parameters" if "stop" in text else "messages"
    assert (problem.key, problem.line) == (top, line)
    assert "lone surrogate" in problem.message and "\\ud" in problem.message
    assert "\\u" in problem.fix


def test_an_escaped_surrogate_pair_is_one_character_and_fine(drop: Path) -> None:
    spec = spec_of(drop, "x.json", '{"system": "\\ud83d\\ude00"}')
    assert spec.fields["system"] == "\U0001f600"


def test_a_lone_surrogate_in_the_hf_params_file_is_a_problem(drop: Path) -> None:
    artifact = folder_artifact(drop / "fred")
    (drop / "fred" / "params").write_text('{"stop": ["\\ud800"]}')
    problems = load_spec(artifact, drop_dir=drop)
    assert isinstance(problems, list)
    assert problems[0].path == str(drop / "fred" / "params")
    assert "lone surrogate" in problems[0].message

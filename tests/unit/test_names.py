"""Ollama's model-name rules (ollama-api.md §6) and names derived from file names."""

import os

import pytest

from dropzone.recipes.names import InvalidNameError, derive_name, is_valid_name, parse_name


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("mario", True),
        ("Mario:V1.0", True),
        ("user/model:tag", True),
        ("localhost:5000/team/model:tag", True),
        ("https://registry.example.org/team/model:tag", True),
        ("_under/score", True),
        ("my.org/model", False),  # no dot in a namespace
        ("foo:", False),
        ("/foo", False),
        ("a//b", False),
        ("foo bar", False),
        ("-foo", False),
        ("a/b/c/d", False),
        ("", False),
        ("model@sha256:abc", False),  # @digest is not parsed in v0.33
        ("m" * 80, True),
        ("m" * 81, False),
        ("m:" + "t" * 80, True),
        ("m:" + "t" * 81, False),
        ("ns-" + "n" * 77 + "/m", True),
        ("ns-" + "n" * 78 + "/m", False),
        ("möhre", False),  # ASCII only
    ],
)
def test_name_rules(text: str, valid: bool) -> None:
    assert is_valid_name(text) is valid


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("mario", "mario:latest"),
        ("Mario:V1.0", "Mario:V1.0"),
        ("team/model", "team/model:latest"),
        ("localhost:5000/team/model:q4", "localhost:5000/team/model:q4"),
        ("registry.ollama.ai/library/llama3", "llama3:latest"),
    ],
)
def test_display_shortest(text: str, shown: str) -> None:
    assert parse_name(text).display_shortest() == shown


def test_names_match_case_insensitively() -> None:
    assert parse_name("Foo:Latest").key() == parse_name("foo").key()


@pytest.mark.parametrize(
    ("file_name", "tag", "name"),
    [
        ("Z-Model.gguf", "latest", "z-model:latest"),
        ("qwen3-8b-q4_k_m.gguf", "latest", "qwen3-8b-q4_k_m:latest"),
        ("Big-Model-00001-of-00003.gguf", "latest", "big-model:latest"),
        ("Qwen 3 (8B).gguf", "latest", "qwen-3-8b:latest"),
        ("my-finetune", "v2", "my-finetune:v2"),
        ("model.v1.2.GGUF", "latest", "model.v1.2:latest"),
        (".hidden-ish.gguf", "latest", "hidden-ish:latest"),
    ],
)
def test_derived_names(file_name: str, tag: str, name: str) -> None:
    assert derive_name(file_name, tag) == name
    assert is_valid_name(name)


@pytest.mark.parametrize(
    ("file_name", "tag"),
    [
        ("+++.gguf", "latest"),  # nothing usable left
        ("ü.gguf", "latest"),
        ("x" * 81 + ".gguf", "latest"),  # too long: never silently cut
        ("model.gguf", "bad tag"),
    ],
)
def test_a_name_that_cannot_be_made_valid_is_an_error(file_name: str, tag: str) -> None:
    with pytest.raises(InvalidNameError):
        derive_name(file_name, tag)


def test_a_file_name_that_is_not_utf8_gives_no_name() -> None:
    # Issue 13: "mod\xe8le.gguf" silently became mod-le:latest, and the daemon crashed later on
    # the name it could not store. The byte's meaning is unknown: never guess a name from it.
    with pytest.raises(InvalidNameError, match=r"from 'mod\\xe8le\.gguf': it is not valid UTF-8"):
        derive_name(os.fsdecode(b"mod\xe8le.gguf"))

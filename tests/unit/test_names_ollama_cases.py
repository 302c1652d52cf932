"""Model names as Ollama v0.33's source treats them (issue 15), cases taken from its tests.

Two rules, two places in the server:
- the name a create makes (``server/create.go``) is ``model.ParseName`` of the text as sent:
  no trimming, so surrounding spaces are invalid, and ``m:local`` is the model ``m`` tagged
  ``local`` (cases: ``types/model/name_test.go``);
- a name that refers to a model (``from`` of a create; show, generate, chat, embed, delete,
  pull) first goes through ``modelref.ParseRef``: spaces trimmed, an empty name is "model is
  required", a ``:local`` suffix dropped, ``:cloud``/``-cloud`` marks an ollama.com model,
  and both suffixes at once are refused (cases: ``internal/modelref/modelref_test.go``).
"""

from __future__ import annotations

import pytest

from dropzone.recipes.names import InvalidNameError, parse_name, parse_ref

P80 = "8" * 80
P350 = "3" * 350


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        (
            "registry.ollama.ai/library/dolphin-mistral:7b-v2.6-dpo-laser-q6_K",
            ("registry.ollama.ai", "library", "dolphin-mistral", "7b-v2.6-dpo-laser-q6_K"),
        ),
        ("scheme://host:port/namespace/model:tag", ("host:port", "namespace", "model", "tag")),
        ("host/namespace/model:tag", ("host", "namespace", "model", "tag")),
        ("host:port/namespace/model:tag", ("host:port", "namespace", "model", "tag")),
        ("host/namespace/model", ("host", "namespace", "model", "latest")),
        ("host:port/namespace/model", ("host:port", "namespace", "model", "latest")),
        ("namespace/model", ("registry.ollama.ai", "namespace", "model", "latest")),
        ("model", ("registry.ollama.ai", "library", "model", "latest")),
        ("h/nn/mm:t", ("h", "nn", "mm", "t")),
        (f"{P80}/{P80}/{P80}:{P80}", (P80, P80, P80, P80)),
        (f"{P350}/{P80}/{P80}:{P80}", (P350, P80, P80, P80)),
    ],
)
def test_parse_name_parts(text: str, parts: tuple[str, str, str, str]) -> None:
    # TestParseNameParts, through ParseName (the defaults merged in), as the server calls it.
    name = parse_name(text)
    assert (name.host, name.namespace, name.model, name.tag) == parts


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        # testCases of name_test.go, judged after ParseName's merge with the defaults (so a
        # name that is only unqualified there, like "model", is valid here).
        ("", False),
        ("_why/_the/_lucky:_stiff", True),
        ("h/n/m:t", True),
        ("host/namespace/model", True),
        ("model", True),
        ("n/m:", False),
        ("@t", False),
        ("m@d", False),
        ("^", False),
        ("mm:", False),
        ("/nn/mm", False),
        ("//", False),
        ("//mm", False),
        ("hh//", False),
        ("//mm:@", False),
        ("00@", False),
        ("@", False),
        ("-hh/nn/mm:tt", False),
        ("hh/-nn/mm:tt", False),
        ("hh/nn/-mm:tt", False),
        ("hh/nn/mm:-tt", False),
        ("host:https/namespace/model:tag", True),
        ("host/name:space/model:tag", False),
        # What a create's name is: not trimmed, and ":local" is a tag like any other.
        (" mario", False),
        ("mario ", False),
        ("mario:local", True),
    ],
)
def test_name_validity(text: str, valid: bool) -> None:
    try:
        parse_name(text)
    except InvalidNameError:
        assert not valid
    else:
        assert valid


def test_local_is_a_plain_tag_in_the_name_a_create_makes() -> None:
    assert parse_name("qwen3:local").tag == "local"


@pytest.mark.parametrize(
    ("text", "base", "source"),
    [
        ("gpt-oss:20b:cloud", "gpt-oss:20b", "cloud"),
        ("gpt-oss:20b-cloud", "gpt-oss:20b", "cloud"),
        ("qwen3:8b:local", "qwen3:8b", "local"),
        ("llama3.2", "llama3.2", None),
        ("my-cloud-model", "my-cloud-model", None),
        # Trimmed first, and the suffix is matched without case or spaces.
        ("  llama3.2  ", "llama3.2", None),
        (" base:LOCAL ", "base", "local"),
        ("base: local", "base", "local"),
        ("mario:local", "mario", "local"),
    ],
)
def test_parse_ref(text: str, base: str, source: str | None) -> None:
    ref = parse_ref(text)
    assert (ref.base, ref.source) == (base, source)
    assert ref.name == parse_name(base)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("foo:cloud:local", "use either :local or :cloud, not both"),
        ("   ", "model is required"),
        ("", "model is required"),
        (" bad name ", "invalid model name"),
        # No suffix taken off (the "/" comes after the colon), and no valid name is left.
        ("foo:bar-cloud/baz", "invalid model name 'foo:bar-cloud/baz'"),
    ],
)
def test_parse_ref_refusals(text: str, error: str) -> None:
    with pytest.raises(InvalidNameError, match=error):
        parse_ref(text)

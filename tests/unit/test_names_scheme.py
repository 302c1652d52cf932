"""Names with a scheme, as Ollama's ParseNameBare (types/model/name.go) reads them: the tag,
model and namespace are cut from the right first, and only what is left (the host part) loses
a ``scheme://`` (issue 15). So ``a://b`` leaves an empty namespace: refused by the server."""

from __future__ import annotations

import pytest

from dropzone.recipes.names import InvalidNameError, is_valid_name, parse_name


@pytest.mark.parametrize("text", ["a://b", "x://y/m:t", "a://b:c", "http://m"])
def test_a_scheme_outside_the_host_part_is_refused(text: str) -> None:
    assert not is_valid_name(text)
    with pytest.raises(InvalidNameError):
        parse_name(text)


@pytest.mark.parametrize(
    ("text", "host", "namespace", "model", "tag"),
    [
        ("https://example.com/ns/m:t", "example.com", "ns", "m", "t"),
        ("http://localhost:5000/ns/m", "localhost:5000", "ns", "m", "latest"),
        ("example.com/ns/m:t", "example.com", "ns", "m", "t"),
    ],
)
def test_a_scheme_on_the_host_part_is_dropped(
    text: str, host: str, namespace: str, model: str, tag: str
) -> None:
    name = parse_name(text)
    assert (name.host, name.namespace, name.model, name.tag) == (host, namespace, model, tag)

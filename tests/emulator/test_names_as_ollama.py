"""Names as Ollama v0.33 reads them (issue 15): the name a create makes is parsed as sent
(``server/create.go``: no trimming, ``:local`` an ordinary tag), while a name that refers to a
model goes through ``modelref.ParseRef`` first (the create's ``from``, show, generate,
delete): trimmed, ``:local`` taken off, ``:cloud`` an ollama.com model (not emulated)."""

from __future__ import annotations

import pytest
from emulator_helpers import Api


@pytest.fixture
def base(api: Api) -> str:
    reply = api.create(model="base", files={"m.gguf": api.gguf()}, stream=False)
    assert reply.status == 200, reply.text
    return "base"


def test_a_created_name_with_spaces_is_invalid(api: Api) -> None:
    reply = api.create(model=" spaced ", files={"m.gguf": api.gguf()}, stream=False)
    assert (reply.status, reply.error) == (400, "invalid model name")


def test_local_is_an_ordinary_tag_of_a_created_name(api: Api) -> None:
    reply = api.create(model="m:local", files={"m.gguf": api.gguf()}, stream=False)
    assert reply.status == 200, reply.text
    assert api.emulator.models() == ["m:local"]


@pytest.mark.parametrize("ref", [" base ", "base:local", "base:latest:local", "BASE: Local "])
def test_from_show_and_generate_read_a_reference(api: Api, base: str, ref: str) -> None:
    reply = api.create(model="derived", **{"from": ref}, system="hi", stream=False)
    assert reply.status == 200, reply.text
    assert api.show(ref).status == 200
    assert api.call("POST", "/api/generate", {"model": ref}).status == 200


def test_two_source_suffixes_are_refused_with_ollamas_text(api: Api, base: str) -> None:
    shown = api.show("base:cloud:local")
    assert shown.status == 400
    assert shown.json()["error"] == 'use either :local or :cloud, not both: "base:cloud:local"'
    created = api.create(model="d", **{"from": "base:cloud:local"}, stream=False)
    assert (created.status, created.error) == (400, "invalid model name")


def test_a_blank_reference_is_required(api: Api) -> None:
    assert api.show("   ").json()["error"] == "model is required"


def test_a_cloud_model_is_refused_as_not_emulated(api: Api, base: str) -> None:
    for ref in ("base:cloud", "base:latest-cloud"):
        shown = api.show(ref)
        assert shown.status == 501
        assert "not emulated" in shown.json()["error"]


def test_delete_reads_a_reference(api: Api, base: str) -> None:
    assert api.call("DELETE", "/api/delete", {"model": " base:local "}).status == 200
    assert api.emulator.models() == []

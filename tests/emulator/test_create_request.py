"""Checklist §10 "POST /api/create — request handling" (ollama-api.md §4.1-4.4, §4.9)."""

from __future__ import annotations

import pytest
from emulator_helpers import Api

from dropzone.testing.ollama import Emulator

ABSENT = "sha256:" + "1" * 64


@pytest.mark.parametrize("key", ["../x", "/etc/passwd", "a/../b", "./x", "dir/", "a//b", ""])
def test_files_key_failing_valid_path_is_a_400(api: Api, key: str) -> None:
    reply = api.create(model="m", files={key: ABSENT})
    assert (reply.status, reply.json()) == (400, {"error": "file path must be relative"})
    assert reply.content_type == "application/json; charset=utf-8"


@pytest.mark.parametrize("key", ["model.gguf", "2_Dense/config.json", "a\\b", "C:x", "."])
def test_files_key_passing_valid_path_gets_past_the_check(api: Api, key: str) -> None:
    reply = api.create(model="m", files={key: ABSENT})
    assert reply.error not in (None, "file path must be relative")


@pytest.mark.parametrize("field", ["files", "draft_files", "adapters"])
def test_empty_digest_is_a_400_invalid_digest_format(api: Api, field: str) -> None:
    reply = api.create(model="m", **{field: {"x.gguf": ""}})
    assert (reply.status, reply.json()) == (400, {"error": "invalid digest format"})


def test_draft_quantize_without_draft_is_a_400(api: Api) -> None:
    reply = api.create(model="m", from_="x", draft_quantize="q8_0")
    assert reply.json() == {"error": "--draft-quantize requires a DRAFT model"}
    assert reply.status == 400


@pytest.mark.parametrize("name", ["", "foo:", "foo bar", "-foo", "a/b/c/d", "my.org/model", "a@b"])
def test_invalid_model_name_is_a_400(api: Api, name: str) -> None:
    reply = api.create(model=name, files={"m.gguf": ABSENT})
    assert (reply.status, reply.json()) == (400, {"error": "invalid model name"})


def test_files_are_checked_before_the_name(api: Api) -> None:
    reply = api.create(model="bad name", files={"../x": ABSENT})
    assert reply.json() == {"error": "file path must be relative"}


def test_deprecated_name_and_quantization_fields_are_used_as_fallbacks(
    api: Api, emulator: Emulator
) -> None:
    digest = api.gguf()
    reply = api.create(name="legacy", files={"m.gguf": digest}, quantization="q8_0", stream=False)
    assert reply.status == 200, reply.text
    assert emulator.manifest("legacy") is not None
    details = api.show("legacy").json()["details"]
    assert details["quantization_level"] == "Q8_0"


def test_model_takes_precedence_over_name(api: Api, emulator: Emulator) -> None:
    digest = api.gguf()
    api.create(model="primary", name="ignored", files={"m.gguf": digest}, stream=False)
    assert emulator.models() == ["primary:latest"]


def test_neither_from_nor_files_is_a_400(api: Api) -> None:
    reply = api.create(model="m")
    assert (reply.status, reply.json()) == (
        400,
        {"error": "neither 'from' or 'files' was specified"},
    )


def test_from_takes_precedence_over_files(api: Api, emulator: Emulator) -> None:
    digest = api.gguf()
    assert api.create(model="base", files={"m.gguf": digest}, stream=False).status == 200
    reply = api.create(model="child", **{"from": "base"}, files={"x.gguf": ABSENT})
    assert reply.status == 200
    assert reply.error is None
    assert "parsing GGUF" not in reply.statuses


def test_invalid_from_name_is_a_400(api: Api) -> None:
    reply = api.create(model="m", **{"from": "not a name"})
    assert (reply.status, reply.json()) == (400, {"error": "invalid model name"})


def test_from_a_model_absent_locally_streams_a_failed_pull(api: Api) -> None:
    reply = api.create(model="m", **{"from": "llama3.2"})
    assert reply.status == 200
    assert reply.lines == [
        {"status": "pulling manifest"},
        {"error": "pull model manifest: file does not exist"},
    ]


def test_from_a_model_absent_locally_without_streaming_is_a_500(api: Api) -> None:
    reply = api.create(model="m", stream=False, **{"from": "llama3.2"})
    assert reply.status == 500
    assert reply.json() == {"error": "pull model manifest: file does not exist"}


def test_from_reuses_base_layers_and_records_the_base_short_name(
    api: Api, emulator: Emulator
) -> None:
    digest = api.gguf()
    api.create(model="Base:v1", files={"m.gguf": digest}, system="base", stream=False)
    base = emulator.manifest("base:v1")
    assert base is not None
    reply = api.create(model="child", **{"from": "base:V1"})
    child = emulator.manifest("child")
    assert child is not None
    assert [layer["digest"] for layer in child["layers"]] == [
        layer["digest"] for layer in base["layers"]
    ]
    assert {layer["from"] for layer in child["layers"]} == {"Base:v1"}
    assert reply.statuses == [
        *(f"using existing layer {layer['digest']}" for layer in base["layers"]),
        "writing manifest",
        "success",
    ]


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"model.gguf": "gguf"}, "gguf"),
        ({"weights": "gguf"}, "gguf"),  # no suffix: the blob is sniffed for the GGUF magic
        ({"config.json": "text", "model.safetensors": "safetensors"}, "safetensors"),
    ],
)
def test_files_type_is_detected_from_names_then_magic(
    api: Api, files: dict[str, str], expected: str
) -> None:
    blobs = {
        "gguf": api.gguf(),
        "text": api.upload(b'{"architectures": []}'),
        "safetensors": api.upload(b"\x02\x00\x00\x00\x00\x00\x00\x00{}"),
    }
    reply = api.create(model="m", files={key: blobs[kind] for key, kind in files.items()})
    first = reply.statuses[0] if reply.status == 200 else ""
    assert first == ("parsing GGUF" if expected == "gguf" else "converting model")


@pytest.mark.parametrize("content", [b"plain text", b""])
def test_undecidable_files_type_is_a_400_unknown_type(api: Api, content: bytes) -> None:
    reply = api.create(model="m", files={"README": api.upload(content)})
    assert (reply.status, reply.json()) == (400, {"error": "unknown type"})


def test_empty_files_map_is_unknown_type(api: Api) -> None:
    reply = api.create(model="m", files={})
    assert (reply.status, reply.json()) == (400, {"error": "unknown type"})


def test_missing_blob_for_a_key_without_suffix_is_unknown_type(api: Api) -> None:
    reply = api.create(model="m", files={"weights": ABSENT})
    assert reply.json() == {"error": "unknown type"}


def test_name_is_canonicalised_to_the_stored_casing_and_overwritten(
    api: Api, emulator: Emulator
) -> None:
    first, second = api.gguf("a.gguf", seed=1), api.gguf("b.gguf", seed=2)
    api.create(model="Mario", files={"a.gguf": first}, stream=False)
    before = emulator.manifest("Mario")
    assert before is not None
    reply = api.create(model="mario:LATEST", files={"b.gguf": second}, stream=False)
    assert reply.status == 200
    assert emulator.models() == ["Mario:latest"]
    after = emulator.manifest("MARIO")
    assert after is not None
    old_model, new_model = before["layers"][0]["digest"], after["layers"][0]["digest"]
    assert old_model != new_model
    assert not emulator.has_blob(old_model)  # the replaced manifest's own layers are pruned
    assert emulator.has_blob(first)  # uploaded blobs are not (until a restart prunes them)
    assert emulator.counters.creates("Mario:latest") == 2

"""Checklist §10 create from safetensors ``files``, adapters and drafts (§4.4.3b-§4.4.5)."""

from __future__ import annotations

import pytest
from emulator_helpers import Api

from dropzone.testing import builders
from dropzone.testing.emulator.gguf_view import decode_gguf
from dropzone.testing.ollama import Emulator

ADAPTER = "application/vnd.ollama.image.adapter"


def test_safetensors_folder_converts_validates_and_creates(api: Api, emulator: Emulator) -> None:
    files = api.folder(builders.build_safetensors_model(api.work / "llama"))
    reply = api.create(model="fred", files=files)
    statuses = reply.statuses
    assert statuses[0] == "converting model"
    assert "validating GGUF model" in statuses
    assert statuses[-3:] == [statuses[-3], "writing manifest", "success"]
    assert statuses[-3].startswith("creating new layer sha256:")
    details = api.show("fred").json()["details"]
    assert (details["format"], details["family"], details["quantization_level"]) == (
        "gguf",
        "llama",
        "F16",
    )
    assert details["parameter_size"] == "64"  # 4 tensors of 4x4


def test_safetensors_conversion_is_deterministic(api: Api, emulator: Emulator) -> None:
    files = api.folder(builders.build_safetensors_model(api.work / "llama"))
    api.create(model="a", files=files, stream=False)
    api.create(model="b", files=files, stream=False)
    a, b = emulator.manifest("a"), emulator.manifest("b")
    assert a is not None and b is not None
    assert a["layers"] == b["layers"]


def test_sharded_safetensors_are_all_converted(api: Api, emulator: Emulator) -> None:
    files = api.folder(builders.build_safetensors_model(api.work / "llama", shards=2))
    assert api.create(model="m", files=files, stream=False).status == 200
    manifest = emulator.manifest("m")
    assert manifest is not None
    header = decode_gguf(emulator.blob_path(manifest["layers"][0]["digest"]))
    assert len(header.tensors) == 4


@pytest.mark.parametrize(
    ("kwargs", "move", "error"),
    [
        ({"with_config": False}, None, "open config.json: no such file or directory"),
        ({"architecture": "Qwen3ForCausalLM"}, None, 'unsupported architecture "Qwen3ForCausalLM"'),
        ({"architecture": None}, None, "unknown architecture"),
        ({"tokenizer": None}, None, "unknown tokenizer format"),
        ({}, "model.safetensors", "unknown tensor format"),
    ],
)
def test_safetensors_problems_fail_after_converting_model(
    api: Api, kwargs: dict[str, object], move: str | None, error: str
) -> None:
    files = api.folder(builders.build_safetensors_model(api.work / "st", **kwargs))
    if move:  # not at the root any more: detected as safetensors, but no root tensors
        files["sub/" + move] = files.pop(move)
    reply = api.create(model="m", files=files)
    assert reply.status == 200
    assert reply.lines == [{"status": "converting model"}, {"error": error}]
    assert api.create(model="m", files=files, stream=False).status == 500


def test_tokenizer_model_is_an_accepted_tokenizer(api: Api) -> None:
    files = api.folder(
        builders.build_safetensors_model(api.work / "sp", tokenizer="tokenizer.model")
    )
    assert api.create(model="m", files=files, stream=False).status == 200


def test_corrupt_safetensors_header_fails_the_conversion(api: Api) -> None:
    folder = builders.build_safetensors_model(api.work / "bad")
    builders.corrupt_safetensors_header(folder / "model.safetensors")
    reply = api.create(model="m", files=api.folder(folder), stream=False)
    assert reply.status == 500


def test_gguf_adapter_on_a_from_model(api: Api, emulator: Emulator) -> None:
    api.create(model="base", files={"b.gguf": api.gguf("b.gguf")}, stream=False)
    adapter = api.upload_file(builders.build_adapter_gguf(api.work / "lora.gguf"))
    reply = api.create(model="tuned", adapters={"lora.gguf": adapter}, **{"from": "base"})
    assert reply.statuses[0] == "parsing GGUF"
    assert f"using existing layer {adapter}" in reply.statuses
    manifest = emulator.manifest("tuned")
    assert manifest is not None
    assert manifest["layers"][-1]["mediaType"] == ADAPTER


def test_more_than_one_gguf_adapter_is_a_400(api: Api) -> None:
    api.create(model="base", files={"b.gguf": api.gguf("b.gguf")}, stream=False)
    one = api.upload_file(builders.build_adapter_gguf(api.work / "a.gguf", seed=1))
    two = api.upload_file(builders.build_adapter_gguf(api.work / "b.gguf", seed=2))
    reply = api.create(model="t", adapters={"a.gguf": one, "b.gguf": two}, **{"from": "base"})
    assert (reply.status, reply.json()) == (
        400,
        {"error": "only one adapter is currently supported"},
    )


def test_adapter_errors_are_400(api: Api) -> None:
    api.create(model="base", files={"b.gguf": api.gguf("b.gguf")}, stream=False)
    reply = api.create(
        model="t", adapters={"a.gguf": api.upload(b"not gguf")}, stream=False, **{"from": "base"}
    )
    assert (reply.status, reply.json()) == (400, {"error": "supplied file was not in GGUF format"})


def test_safetensors_adapter_on_a_llama_base(api: Api, emulator: Emulator) -> None:
    api.create(model="base", files={"b.gguf": api.gguf("b.gguf")}, stream=False)
    adapters = api.folder(builders.build_safetensors_adapter(api.work / "peft"))
    reply = api.create(model="t", adapters=adapters, **{"from": "base"})
    assert reply.statuses[0] == "converting adapter"
    assert reply.statuses[-1] == "success", reply.text
    manifest = emulator.manifest("t")
    assert manifest is not None
    assert ADAPTER in [layer["mediaType"] for layer in manifest["layers"]]


def test_safetensors_adapter_needs_a_supported_base_architecture(api: Api) -> None:
    api.create(model="base", files={"b.gguf": api.gguf("b.gguf", arch="qwen2")}, stream=False)
    adapters = api.folder(builders.build_safetensors_adapter(api.work / "peft"))
    reply = api.create(model="t", adapters=adapters, stream=False, **{"from": "base"})
    assert (reply.status, reply.json()) == (400, {"error": "unsupported architecture"})


def test_safetensors_adapter_needs_adapter_config(api: Api) -> None:
    api.create(model="base", files={"b.gguf": api.gguf("b.gguf")}, stream=False)
    adapters = api.folder(builders.build_safetensors_adapter(api.work / "peft"))
    del adapters["adapter_config.json"]
    reply = api.create(model="t", adapters=adapters, stream=False, **{"from": "base"})
    assert reply.status == 400
    assert reply.json() == {"error": "open adapter_config.json: no such file or directory"}


def test_adapter_with_files_base_works_too(api: Api, emulator: Emulator) -> None:
    adapter = api.upload_file(builders.build_adapter_gguf(api.work / "lora.gguf"))
    reply = api.create(
        model="t", files={"b.gguf": api.gguf("b.gguf")}, adapters={"lora.gguf": adapter}
    )
    assert reply.statuses.count("parsing GGUF") == 2
    assert reply.statuses[-1] == "success"


def test_draft_gguf_becomes_a_draft_layer(api: Api, emulator: Emulator) -> None:
    draft = api.gguf("draft.gguf", seed=9)
    reply = api.create(
        model="spec", files={"m.gguf": api.gguf()}, draft_files={"draft.gguf": draft}
    )
    assert reply.statuses[-1] == "success", reply.text
    manifest = emulator.manifest("spec")
    assert manifest is not None
    assert manifest["layers"][1] == {
        "mediaType": "application/vnd.ollama.image.draft",
        "digest": draft,
        "size": emulator.blob_path(draft).stat().st_size,
        "from": "draft.gguf",
    }


def test_draft_quantize_of_a_quantized_draft_is_a_400(api: Api) -> None:
    draft = api.gguf("draft.gguf", file_type=builders.FILE_TYPE_Q8_0)
    reply = api.create(
        model="spec",
        files={"m.gguf": api.gguf()},
        draft_files={"draft.gguf": draft},
        draft_quantize="q4_K_M",
        stream=False,
    )
    assert (reply.status, reply.json()) == (
        400,
        {"error": "draft quantization requires an unquantized draft model, got Q8_0"},
    )

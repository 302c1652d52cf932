"""A create ``from`` a safetensors model keeps each layer's ``name`` (issue 15).

Ollama's experimental safetensors import (``x/create``) writes a manifest with one
``application/vnd.ollama.image.tensor`` layer per tensor and ``application/vnd.ollama.image.json``
layers for the model's JSON files, each carrying a ``name``. ``parseFromModel``
(``server/model.go``) copies that ``name`` onto the reused layer, and ``createConfigLayer`` keeps
only ``renderer``, ``parser``, ``requires``, ``model_format`` and ``capabilities`` of the base's
config. Cases from ``server/routes_create_test.go`` (``TestCreateFromSafetensorsModel_*``).
"""

from __future__ import annotations

import json
from typing import Any

from emulator_helpers import Api

from dropzone.recipes.names import parse_name
from dropzone.testing.emulator.gojson import go_json_line
from dropzone.testing.emulator.store import CONFIG_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, SYSTEM

TENSOR = "application/vnd.ollama.image.tensor"
JSON_LAYER = "application/vnd.ollama.image.json"


def _layer(api: Api, data: bytes, media_type: str, name: str) -> dict[str, Any]:
    digest = api.upload(data)
    return {"mediaType": media_type, "digest": digest, "size": len(data), "name": name}


def store_safetensors_model(api: Api, model: str, config: dict[str, Any]) -> None:
    """Write ``model`` into the store as ``x/create``'s client does (createSafetensorsTestModel),
    with a tensor layer and two JSON layers, every one named."""
    layers = [
        _layer(api, b"fake-tensor-data-for-testing", TENSOR, "model.embed_tokens.weight"),
        _layer(api, b'{"architectures": ["LlamaForCausalLM"]}', JSON_LAYER, "config.json"),
        _layer(api, b'{"version": "1.0"}', JSON_LAYER, "tokenizer.json"),
    ]
    config_bytes = go_json_line({**config, "architecture": "amd64", "os": "linux"})
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": CONFIG_MEDIA_TYPE,
            "digest": api.upload(config_bytes),
            "size": len(config_bytes),
        },
        "layers": layers,
    }
    path = api.emulator.store.manifest_path(parse_name(model))
    path.parent.mkdir(parents=True)
    path.write_bytes(go_json_line(manifest))


def _config(api: Api, manifest: dict[str, Any]) -> dict[str, Any]:
    config = json.loads(api.emulator.blob_path(manifest["config"]["digest"]).read_bytes())
    assert isinstance(config, dict)
    return config


def test_tensor_and_json_layers_keep_their_names(api: Api) -> None:
    store_safetensors_model(api, "source", {"model_format": "safetensors"})
    reply = api.create(model="derived", **{"from": "source"}, stream=False)
    assert reply.status == 200, reply.text
    manifest = api.emulator.manifest("derived")
    assert manifest is not None
    named = [(layer["mediaType"], layer.get("name")) for layer in manifest["layers"]]
    assert named == [
        (TENSOR, "model.embed_tokens.weight"),
        (JSON_LAYER, "config.json"),
        (JSON_LAYER, "tokenizer.json"),
    ]
    # manifest.Layer's field order: mediaType, digest, size, from, name
    assert list(manifest["layers"][0]) == ["mediaType", "digest", "size", "from", "name"]
    assert manifest["layers"][0]["from"] == "source:latest"


def test_the_base_config_fields_ollama_inherits_are_kept_and_no_others(api: Api) -> None:
    store_safetensors_model(
        api,
        "source",
        {
            "model_format": "safetensors",
            "model_family": "llama",
            "model_type": "1B",
            "file_type": "bf16",
            "renderer": "gemma3",
            "parser": "gemma3",
            "requires": "0.14.0",
            "capabilities": ["completion"],
            "context_length": 4096,
        },
    )
    reply = api.create(model="derived", **{"from": "source"}, system="You are a pirate.")
    assert reply.status == 200, reply.text
    assert reply.lines[-1] == {"status": "success"}
    manifest = api.emulator.manifest("derived")
    assert manifest is not None
    assert [layer["mediaType"] for layer in manifest["layers"]][-1] == SYSTEM
    assert all(layer.get("name") for layer in manifest["layers"][:3])
    # createConfigLayer of a config built from the request plus the five inherited fields
    assert _config(api, manifest) == {
        "model_format": "safetensors",
        "model_family": "",
        "model_families": None,
        "model_type": "",
        "file_type": "",
        "renderer": "gemma3",
        "parser": "gemma3",
        "requires": "0.14.0",
        "capabilities": ["completion"],
        "architecture": "amd64",
        "os": "linux",
    }


def test_a_system_override_keeps_the_model_format(api: Api) -> None:
    store_safetensors_model(api, "source", {"model_format": "safetensors"})
    first = api.create(model="source", **{"from": "source"}, system="Original", stream=False)
    assert first.status == 200, first.text
    second = api.create(model="derived", **{"from": "source"}, system="New", stream=False)
    assert second.status == 200, second.text
    manifest = api.emulator.manifest("derived")
    assert manifest is not None
    assert _config(api, manifest)["model_format"] == "safetensors"
    names = [layer.get("name") for layer in manifest["layers"]]
    assert names[:3] == ["model.embed_tokens.weight", "config.json", "tokenizer.json"]

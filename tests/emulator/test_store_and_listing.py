"""Checklist §10 "Store & listing" (ollama-api.md §5.3-5.6, §6, §9, §12.1, §12.2)."""

from __future__ import annotations

import hashlib
import json
import os
import re

import pytest
from emulator_helpers import Api

from dropzone.testing import builders
from dropzone.testing.ollama import Emulator

T = "application/vnd.ollama.image."
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")


@pytest.fixture
def mario(api: Api) -> str:
    reply = api.create(
        model="mario",
        files={"m.gguf": api.gguf(extra={"llama.context_length": 2048})},
        template="{{ .System }} <|user|>{{ .Prompt }}",
        system="You are Mario.",
        license=["MIT", "Apache"],
        parameters={"temperature": 0.7, "stop": ["</s>", "<|end|>"], "num_ctx": 1000000},
        messages=[{"role": "user", "content": "Hi"}],
        stream=False,
    )
    assert reply.status == 200, reply.text
    return "mario"


def test_manifest_lives_at_host_namespace_model_tag_in_go_json(
    emulator: Emulator, mario: str
) -> None:
    path = emulator.store.manifests / "registry.ollama.ai" / "library" / "mario" / "latest"
    raw = path.read_bytes()
    manifest = json.loads(raw)
    assert raw.endswith(b"}\n") and b" " not in raw and raw.count(b"\n") == 1
    assert list(manifest) == ["schemaVersion", "mediaType", "config", "layers"]
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert manifest["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"
    media = [layer["mediaType"].removeprefix(T) for layer in manifest["layers"]]
    assert media == ["model", "template", "system", "license", "license", "params", "messages"]
    for layer in [manifest["config"], *manifest["layers"]]:
        assert list(layer)[:3] == ["mediaType", "digest", "size"]
        blob = emulator.blob_path(layer["digest"])
        assert layer["size"] == blob.stat().st_size
        assert layer["digest"] == "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest()


def test_config_blob_has_the_go_fields_in_order(emulator: Emulator, mario: str) -> None:
    manifest = emulator.manifest(mario)
    assert manifest is not None
    raw = emulator.blob_path(manifest["config"]["digest"]).read_text()
    config = json.loads(raw)
    assert raw.endswith("}\n")
    assert list(config) == [
        "model_format", "model_family", "model_families", "model_type", "file_type",
        "architecture", "os",
    ]  # fmt: skip  (no "rootfs" since v0.32.7: test_ollama_differences.py)
    assert config["architecture"] == "amd64" and config["os"] == "linux"
    assert (config["model_family"], config["file_type"], config["model_type"]) == (
        "llama",
        "F16",
        "192",  # no general.parameter_count: summed from the tensors (§12.2)
    )


def test_text_layers_are_raw_and_json_layers_end_with_a_newline(
    emulator: Emulator, mario: str
) -> None:
    manifest = emulator.manifest(mario)
    assert manifest is not None
    blobs = {
        layer["mediaType"].removeprefix(T): emulator.blob_path(layer["digest"]).read_bytes()
        for layer in manifest["layers"]
    }
    assert blobs["system"] == b"You are Mario."
    assert blobs["template"] == b"{{ .System }} <|user|>{{ .Prompt }}"
    assert blobs["params"] == (
        b'{"num_ctx":1000000,"stop":["\\u003c/s\\u003e","\\u003c|end|\\u003e"],"temperature":0.7}\n'
    )
    assert blobs["messages"] == b'[{"role":"user","content":"Hi"}]\n'


def test_tags_lists_short_names_sizes_digests_and_details(
    api: Api, emulator: Emulator, mario: str
) -> None:
    reply = api.call("GET", "/api/tags")
    assert reply.content_type == "application/json; charset=utf-8"
    [entry] = reply.json()["models"]
    manifest_path = emulator.store.manifest_path(emulator.store.names()[0])
    manifest = json.loads(manifest_path.read_bytes())
    assert entry["name"] == entry["model"] == "mario:latest"
    assert entry["digest"] == hashlib.sha256(manifest_path.read_bytes()).hexdigest()
    assert entry["size"] == manifest["config"]["size"] + sum(
        layer["size"] for layer in manifest["layers"]
    )
    assert RFC3339.match(entry["modified_at"])
    assert entry["details"] == {
        "parent_model": "",
        "format": "gguf",
        "family": "llama",
        "families": ["llama"],
        "parameter_size": "192",
        "quantization_level": "F16",
        "context_length": 2048,
    }


def test_tags_of_an_empty_store_is_an_empty_list(api: Api) -> None:
    assert api.call("GET", "/api/tags").text == '{"models":[]}'


def test_tags_lists_newest_first(api: Api, emulator: Emulator) -> None:
    digest = api.gguf()
    for name in ("a-old", "b-new"):
        api.create(model=name, files={"m.gguf": digest}, stream=False)
    old_path = emulator.store.manifests / "registry.ollama.ai" / "library" / "a-old" / "latest"
    os.utime(old_path, (1_000_000_000, 1_000_000_000))
    names = [m["name"] for m in api.call("GET", "/api/tags").json()["models"]]
    assert names == ["b-new:latest", "a-old:latest"]  # not alphabetical: newest first


def test_show_returns_the_model_as_ollama_does(api: Api, mario: str) -> None:
    reply = api.show("MARIO")
    assert (reply.status, reply.content_type) == (200, "application/json; charset=utf-8")
    body = reply.json()
    assert body["license"] == "MIT\nApache"
    assert body["system"] == "You are Mario."
    assert body["template"] == "{{ .System }} <|user|>{{ .Prompt }}"
    assert body["messages"] == [{"role": "user", "content": "Hi"}]
    assert body["parameters"].splitlines() == [
        "num_ctx                        1e+06",
        'stop                           "</s>"',
        'stop                           "<|end|>"',
        "temperature                    0.7",
    ]
    assert body["modelfile"].startswith(
        '# Modelfile generated by "ollama show"\n'
        "# To build a new Modelfile based on this, replace FROM with:\n"
        "# FROM mario:latest\n\nFROM /"
    )
    assert "\nSYSTEM You are Mario.\n" in body["modelfile"]
    assert body["details"]["family"] == "llama"
    assert "context_length" not in body["details"]
    assert body["model_info"]["general.architecture"] == "llama"
    assert body["model_info"]["general.parameter_count"] == 192
    assert "general.name" not in body["model_info"]
    assert [t["name"] for t in body["tensors"]] == [f"blk.0.t{i}.weight" for i in range(3)]
    assert body["capabilities"] == ["completion"]
    assert RFC3339.match(body["modified_at"])


def test_show_of_a_model_without_template_gives_the_default(api: Api) -> None:
    api.create(model="bare", files={"m.gguf": api.gguf()}, stream=False)
    body = api.show("bare").json()
    assert body["template"] == "{{ .Prompt }}"
    assert "license" not in body and "system" not in body and "parameters" not in body


def test_show_model_info_empties_long_arrays_unless_verbose(api: Api) -> None:
    extra = {"tokenizer.ggml.tokens": ["a", "b", "c", "d", "e", "f"]}
    api.create(model="tok", files={"m.gguf": api.gguf(extra=extra)}, stream=False)
    assert api.show("tok").json()["model_info"]["tokenizer.ggml.tokens"] == []
    verbose = api.call("POST", "/api/show", {"model": "tok", "verbose": True}).json()
    assert verbose["model_info"]["tokenizer.ggml.tokens"] == list("abcdef")


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({}, 400, "model is required"),
        ({"model": "bad name"}, 400, "invalid model name"),
        ({"model": "absent"}, 404, "model 'absent:latest' not found"),
        ({"name": "ns/absent:v1"}, 404, "model 'ns/absent:v1' not found"),
    ],
)
def test_show_errors(api: Api, body: dict[str, str], status: int, error: str) -> None:
    reply = api.call("POST", "/api/show", body)
    assert (reply.status, reply.json()) == (status, {"error": error})


def test_delete_removes_the_model_and_only_unreferenced_blobs(
    api: Api, emulator: Emulator, mario: str
) -> None:
    api.create(model="luigi", system="You are Luigi.", stream=False, **{"from": mario})
    mario_manifest = emulator.manifest(mario)
    luigi_manifest = emulator.manifest("luigi")
    assert mario_manifest is not None and luigi_manifest is not None
    stray = api.upload(b"uploaded but never used")
    reply = api.call("DELETE", "/api/delete", {"model": "Mario"})
    assert (reply.status, reply.text) == (200, "")
    assert emulator.manifest(mario) is None
    assert not (emulator.store.manifests / "registry.ollama.ai" / "library" / "mario").exists()
    luigi_digests = {layer["digest"] for layer in luigi_manifest["layers"]}
    for layer in mario_manifest["layers"]:
        assert emulator.has_blob(layer["digest"]) == (layer["digest"] in luigi_digests)
    # Without rootfs (v0.32.7+) two models with the same config fields share the config blob.
    config = mario_manifest["config"]["digest"]
    assert emulator.has_blob(config) == (config == luigi_manifest["config"]["digest"])
    assert emulator.has_blob(stray)


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({}, 400, "model is required"),
        ({"model": "bad name"}, 400, 'name "bad name" is invalid'),
        ({"model": "Absent"}, 404, "model 'Absent' not found"),
    ],
)
def test_delete_errors(api: Api, body: dict[str, str], status: int, error: str) -> None:
    reply = api.call("DELETE", "/api/delete", body)
    assert (reply.status, reply.json()) == (status, {"error": error})


def test_copy_duplicates_the_manifest_only(api: Api, emulator: Emulator, mario: str) -> None:
    blobs_before = sorted(p.name for p in emulator.store.blobs.iterdir())
    reply = api.call("POST", "/api/copy", {"source": "mario", "destination": "team/mario:v2"})
    assert (reply.status, reply.text) == (200, "")
    assert emulator.manifest("team/mario:v2") == emulator.manifest("mario")
    assert sorted(p.name for p in emulator.store.blobs.iterdir()) == blobs_before
    assert "team/mario:v2" in emulator.models()


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"source": "bad name", "destination": "x"}, 400, 'source "bad name" is invalid'),
        ({"source": "x", "destination": "a//b"}, 400, 'destination "a//b" is invalid'),
        ({"source": "absent", "destination": "x"}, 404, 'model "absent" not found'),
    ],
)
def test_copy_errors(api: Api, body: dict[str, str], status: int, error: str) -> None:
    reply = api.call("POST", "/api/copy", body)
    assert (reply.status, reply.json()) == (status, {"error": error})


@pytest.mark.parametrize(
    ("name", "stored"),
    [
        ("mario", "mario:latest"),
        ("Mario:V1.0", "Mario:V1.0"),
        ("user/model:tag", "user/model:tag"),
        ("localhost:5000/team/model:tag", "localhost:5000/team/model:tag"),
        ("registry.ollama.ai/library/x:y", "x:y"),
    ],
)
def test_valid_names_are_stored_and_displayed_shortest(
    api: Api, emulator: Emulator, name: str, stored: str
) -> None:
    assert api.create(model=name, files={"m.gguf": api.gguf()}, stream=False).status == 200
    assert emulator.models() == [stored]
    assert api.call("GET", "/api/tags").json()["models"][0]["name"] == stored


@pytest.mark.parametrize(
    "name", ["a" * 81, "ns" * 41 + "/m", "h" * 351 + "/ns/m", "m:" + "t" * 81, "_ok/-bad"]
)
def test_name_part_limits_are_enforced(api: Api, name: str) -> None:
    reply = api.create(model=name, files={"m.gguf": "sha256:" + "4" * 64})
    assert reply.json() == {"error": "invalid model name"}


def test_show_and_delete_match_names_ignoring_case(api: Api, emulator: Emulator) -> None:
    api.create(model="Team/Mario:Big", files={"m.gguf": api.gguf()}, stream=False)
    assert api.show("team/mario:big").status == 200
    assert api.call("DELETE", "/api/delete", {"model": "TEAM/MARIO:BIG"}).status == 200
    assert emulator.models() == []


def test_projector_and_builder_files_show_vision(api: Api) -> None:
    model, projector = api.gguf(), api.upload_file(builders.build_mmproj_gguf(api.work / "p.gguf"))
    api.create(model="v", files={"model.gguf": model, "mmproj.gguf": projector}, stream=False)
    body = api.show("v").json()
    assert "vision" in body["capabilities"]
    assert body["projector_info"]["general.architecture"] == "clip"

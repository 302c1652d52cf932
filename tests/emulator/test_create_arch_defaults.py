"""What a create adds from the GGUF's architecture (issue 15), as ``createModel`` in Ollama
v0.33.0-rc2's ``server/create.go`` does: renderer and parser defaults for gemma4, laguna and
the nemotron_h family (gemma4 also a stop parameter), and ``clip.projector_type = "mlp"`` for
a llava projector that names no projector type (``server/quantization.go``)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from emulator_helpers import Api, manifest_layers

from dropzone.testing import builders
from dropzone.testing.emulator.gguf_view import decode_gguf

PARAMS = "application/vnd.ollama.image.params"
PROJECTOR = "application/vnd.ollama.image.projector"


def config_of(api: Api, model: str) -> dict[str, Any]:
    manifest = api.emulator.manifest(model)
    assert manifest is not None
    config: dict[str, Any] = json.loads(
        api.emulator.blob_path(manifest["config"]["digest"]).read_text()
    )
    return config


def params_of(api: Api, model: str) -> dict[str, Any] | None:
    for layer in manifest_layers(api.emulator, model):
        if layer["mediaType"] == PARAMS:
            found: dict[str, Any] = json.loads(
                api.emulator.blob_path(str(layer["digest"])).read_text()
            )
            return found
    return None


@pytest.mark.parametrize(
    ("arch", "renderer", "parser"),
    [
        ("gemma4", "gemma4", "gemma4"),
        ("laguna", "laguna", "laguna"),
        ("nemotron_h", "nemotron-3-nano", "nemotron-3-nano"),
        ("nemotron_h_moe", "nemotron-3-nano", "nemotron-3-nano"),
        ("nemotron_h_omni", "nemotron-3-nano", "nemotron-3-nano"),
        ("llama", None, None),
    ],
)
def test_renderer_and_parser_defaults_by_architecture(
    api: Api, arch: str, renderer: str | None, parser: str | None
) -> None:
    reply = api.create(model="m", files={"m.gguf": api.gguf(arch=arch)}, stream=False)
    assert reply.status == 200, reply.text
    config = config_of(api, "m")
    assert (config.get("renderer"), config.get("parser")) == (renderer, parser)


def test_gemma4_gets_a_stop_parameter_unless_the_request_has_one(api: Api) -> None:
    files = {"m.gguf": api.gguf(arch="gemma4")}
    assert api.create(model="a", files=files, stream=False).status == 200
    assert params_of(api, "a") == {"stop": ["<turn|>"]}
    given = {"stop": ["<end>"], "temperature": 0.5}
    assert api.create(model="b", files=files, parameters=given, stream=False).status == 200
    assert params_of(api, "b") == given


def test_the_requests_renderer_and_parser_win(api: Api) -> None:
    files = {"m.gguf": api.gguf(arch="laguna")}
    reply = api.create(model="m", files=files, renderer="mine", stream=False)
    assert reply.status == 200, reply.text
    config = config_of(api, "m")
    assert (config["renderer"], config["parser"]) == ("mine", "laguna")


def test_a_llava_projector_without_a_type_gets_mlp(api: Api) -> None:
    model = api.gguf()
    projector = api.upload_file(builders.build_mmproj_gguf(api.work / "mmproj.gguf"))
    reply = api.create(model="m", files={"m.gguf": model, "mmproj.gguf": projector})
    assert reply.status == 200, reply.text
    assert "updating GGUF projector metadata" in reply.statuses
    (layer,) = [x for x in manifest_layers(api.emulator, "m") if x["mediaType"] == PROJECTOR]
    assert layer["digest"] != projector  # rewritten, not the uploaded blob
    header = decode_gguf(api.emulator.blob_path(str(layer["digest"])))
    assert header.metadata["clip.projector_type"] == "mlp"


def test_a_projector_with_a_type_is_kept_as_uploaded(api: Api) -> None:
    model = api.gguf()
    path = builders.build_mmproj_gguf(api.work / "mmproj.gguf", projector_type="ldp")
    projector = api.upload_file(path)
    reply = api.create(model="m", files={"m.gguf": model, "mmproj.gguf": projector})
    assert "updating GGUF projector metadata" not in reply.statuses
    (layer,) = [x for x in manifest_layers(api.emulator, "m") if x["mediaType"] == PROJECTOR]
    assert layer["digest"] == projector

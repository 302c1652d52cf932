"""Issue 15: where the emulator differed from Ollama v0.33.0-rc2, with cases taken from Ollama's
own tests (``server/routes_create_test.go``) and source where the test is cited."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from emulator_helpers import Api, manifest_layers

from dropzone.testing import builders
from dropzone.testing.ollama import Emulator
from dropzone.testing.seed import seed_model


@pytest.mark.parametrize(
    ("template", "error"),
    [
        # routes_create_test.go "template with undefined function"
        ("{{ Prompt }}", 'template error: template: :1: function "Prompt" not defined'),
        (
            "a\n{{ if Foo .Prompt }}{{ end }}",
            'template error: template: :2: function "Foo" not defined',
        ),
    ],
)
def test_a_template_calling_an_undefined_function_is_a_400(
    api: Api, template: str, error: str
) -> None:
    files = {"m.gguf": api.gguf()}
    reply = api.create(model="m", files=files, template=template, stream=False)
    assert (reply.status, reply.json()) == (400, {"error": error})
    reply = api.create(model="m", files=files, template=template)
    assert reply.lines[-1] == {"error": error}  # after "parsing GGUF": in the stream


@pytest.mark.parametrize(
    "template",
    [
        "{{ json .Messages }}{{ currentDate }} {{ yesterdayDate }}",
        '{{ range $i, $m := .Messages }}{{ if eq $m.Role "user" }}{{ len $m.Content }}{{ end }}'
        "{{ end }}",
        '{{- /* Prompt() */ -}}{{ printf "%s Prompt" .Prompt }}{{ .Response }}',
        "{{ if and .System (not .Tools) }}{{ .System }}{{ else if true }}x{{ end }}",
    ],
)
def test_templates_using_go_builtins_and_ollamas_functions_are_accepted(
    api: Api, template: str
) -> None:
    reply = api.create(model="m", files={"m.gguf": api.gguf()}, template=template, stream=False)
    assert reply.status == 200, reply.text


def test_the_config_blob_has_no_rootfs_since_v0_32_7(api: Api, emulator: Emulator) -> None:
    # ollama/ollama 5a173edb6 "manifests: remove OCI rootfs from the model config" (#17619)
    assert api.create(model="m", files={"m.gguf": api.gguf()}, stream=False).status == 200
    config = _config(emulator, "m")
    assert "rootfs" not in config
    assert list(config)[-2:] == ["architecture", "os"]


def test_an_older_server_still_writes_rootfs(tmp_path: Path) -> None:
    gguf = builders.build_gguf(tmp_path / "m.gguf")
    with Emulator(tmp_path / "old", version="0.32.6") as old:
        seed_model(old.url, "m", gguf)
        assert _config(old, "m")["rootfs"]["type"] == "layers"


def test_parameter_count_is_the_tensor_total_even_when_the_kv_says_otherwise(
    api: Api, emulator: Emulator
) -> None:
    # fs/ggml/gguf.go patches general.parameter_count with the tensors' element total.
    digest = api.gguf(n_tensors=3, tensor_elems=64, extra={"general.parameter_count": 7_000_000})
    assert api.create(model="m", files={"m.gguf": digest}, stream=False).status == 200
    assert _config(emulator, "m")["model_type"] == "192"


def test_a_gguf_with_no_tensors_is_not_called_truncated(api: Api, emulator: Emulator) -> None:
    # Without tensors nothing follows the metadata: a writer need not pad up to the alignment,
    # and Go's decoder seeks past the end without complaint.
    path = builders.build_gguf(api.work / "m.gguf", n_tensors=0, extra={"zz.last": "abc"})
    digest = api.upload(path.read_bytes().rstrip(b"\0"))
    reply = api.create(model="m", files={"m.gguf": digest}, stream=False)
    assert reply.status == 200, reply.text
    assert manifest_layers(emulator, "m")


def test_ps_answers_an_empty_model_list(api: Api) -> None:
    # PsHandler starts from an empty slice: {"models":[]} when nothing is loaded.
    reply = api.call("GET", "/api/ps")
    assert (reply.status, reply.json()) == (200, {"models": []})


def _config(emulator: Emulator, name: str) -> dict[str, object]:
    manifest = emulator.manifest(name)
    assert manifest is not None
    config = json.loads(emulator.blob_path(manifest["config"]["digest"]).read_text())
    assert isinstance(config, dict)
    return config

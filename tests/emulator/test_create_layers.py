"""Checklist §10 quantize, template, system, license, parameters, messages, info
(ollama-api.md §4.5, §4.10, §4.11, §9.4)."""

from __future__ import annotations

import json

import pytest
from emulator_helpers import Api, manifest_layers

from dropzone.testing import builders
from dropzone.testing.ollama import Emulator

T = "application/vnd.ollama.image."
ZEROS = "0" * 19


def blob_text(emulator: Emulator, name: str, media: str) -> list[str]:
    return [
        emulator.blob_path(str(layer["digest"])).read_text()
        for layer in manifest_layers(emulator, name)
        if layer["mediaType"] == T + media
    ]


@pytest.fixture
def base(api: Api) -> str:
    """A model ``base`` with template, system and params layers, made from an F16 GGUF."""
    reply = api.create(
        model="base",
        files={"b.gguf": api.gguf("b.gguf")},
        template="{{ .Prompt }}",
        system="You are base.",
        parameters={"temperature": 0.5, "stop": ["<a>", "<b>"]},
        stream=False,
    )
    assert reply.status == 200, reply.text
    return "base"


@pytest.mark.parametrize("value", ["q4_K_M", "Q4_K", "q8_0", "f32", "bf16", "Q4_K_S"])
def test_accepted_quantize_values_quantize_an_f16_model(
    api: Api, emulator: Emulator, base: str, value: str
) -> None:
    reply = api.create(model="q", quantize=value, **{"from": base})
    assert reply.status == 200
    lines = reply.lines
    quantizing = [line for line in lines if line.get("status", "").startswith("quantizing")]
    assert quantizing[0]["status"] == f"quantizing F16 model to {value.upper()}"
    assert quantizing[0]["digest"] == ZEROS and "completed" not in quantizing[0]
    assert quantizing[-1]["completed"] == quantizing[-1]["total"]
    assert "verifying conversion" in reply.statuses
    # An F32 result has general.file_type 0, which KV.FileType() reads as unknown (issue 15).
    expected = {"Q4_K": "Q4_K_M", "F32": "unknown"}.get(value.upper(), value.upper())
    assert api.show("q").json()["details"]["quantization_level"] == expected
    model = manifest_layers(emulator, "q")[0]
    assert "from" not in model  # a new file: no parent


def test_quantize_to_the_same_type_is_a_no_op_for_f16(api: Api, base: str) -> None:
    reply = api.create(model="q", quantize="f16", **{"from": base})
    assert not any(s.startswith("quantizing") for s in reply.statuses)
    assert reply.statuses[-1] == "success"


def test_unsupported_quantize_value_is_a_500_with_the_upper_cased_value(
    api: Api, base: str
) -> None:
    reply = api.create(model="q", quantize="q2_k", stream=False, **{"from": base})
    assert reply.status == 500
    assert reply.json() == {
        "error": "unsupported quantization type Q2_K - supported types are "
        "F32, F16, Q4_K_S, Q4_K_M, Q8_0"
    }
    reply = api.create(model="q", quantize="q2_k", **{"from": base})
    assert reply.status == 500  # first message of the stream: a real status


def test_quantizing_an_already_quantized_model_is_refused(api: Api) -> None:
    digest = api.gguf("q.gguf", file_type=builders.FILE_TYPE_Q4_K_M)
    for target in ("q8_0", "q4_K_M"):
        reply = api.create(model="m", files={"q.gguf": digest}, quantize=target)
        assert reply.status == 200  # after "parsing GGUF"
        assert reply.error == "quantization is only supported for F16, BF16 and F32 models"


def test_files_with_quantize_skip_the_validation_pass(api: Api) -> None:
    reply = api.create(model="m", files={"b.gguf": api.gguf("b.gguf")}, quantize="q8_0")
    assert reply.statuses[0] == "parsing GGUF"
    assert reply.statuses[1] == "quantizing F16 model to Q8_0"
    assert "validating GGUF model" not in reply.statuses


@pytest.mark.parametrize(
    ("template", "error"),
    [
        ("{{ .Prompt", "template error: template: :1: unclosed action"),
        ("{{ if .System }}x", "template error: template: :1: unexpected EOF"),
        ("a\n{{ end }}", "template error: template: :2: unexpected {{end}}"),
    ],
)
def test_unbalanced_template_is_a_400_template_error(
    api: Api, base: str, template: str, error: str
) -> None:
    reply = api.create(model="m", template=template, **{"from": base})
    assert (reply.status, reply.json()) == (400, {"error": error})


def test_valid_template_replaces_the_inherited_one(api: Api, emulator: Emulator, base: str) -> None:
    template = "{{ if .System }}{{ .System }}{{ end }}<user>{{ .Prompt }}"
    assert api.create(model="m", template=template, stream=False, **{"from": base}).status == 200
    assert blob_text(emulator, "m", "template") == [template]


def test_empty_system_and_template_inherit(api: Api, emulator: Emulator, base: str) -> None:
    api.create(model="m", system="", template="", stream=False, **{"from": base})
    assert blob_text(emulator, "m", "system") == ["You are base."]
    assert blob_text(emulator, "m", "template") == ["{{ .Prompt }}"]


def test_system_replaces_and_moves_after_template(api: Api, emulator: Emulator, base: str) -> None:
    reply = api.create(model="m", system="You are Mario.", **{"from": base})
    assert blob_text(emulator, "m", "system") == ["You are Mario."]
    media = [str(layer["mediaType"]).removeprefix(T) for layer in manifest_layers(emulator, "m")]
    assert media == ["model", "template", "system", "params"]
    system = manifest_layers(emulator, "m")[2]
    assert f"creating new layer {system['digest']}" in reply.statuses
    params = manifest_layers(emulator, "m")[3]
    assert f"using existing layer {params['digest']}" in reply.statuses


@pytest.mark.parametrize(
    ("license_value", "expected"),
    [("MIT", ["MIT"]), (["MIT", "", "Apache-2.0"], ["MIT", "Apache-2.0"])],
)
def test_license_strings_become_separate_appended_layers(
    api: Api, emulator: Emulator, base: str, license_value: object, expected: list[str]
) -> None:
    api.create(model="m", license=license_value, stream=False, **{"from": base})
    assert blob_text(emulator, "m", "license") == expected
    api.create(model="n", license="Extra", stream=False, **{"from": "m"})
    assert blob_text(emulator, "n", "license") == [*expected, "Extra"]
    assert api.show("n").json()["license"] == "\n".join([*expected, "Extra"])


def test_license_of_another_type_is_a_500(api: Api, base: str) -> None:
    reply = api.create(model="m", license=7, stream=False, **{"from": base})
    assert reply.status == 500
    assert reply.json() == {"error": "json: cannot unmarshal number into Go value of type []string"}


def test_parameters_merge_per_key_and_replace_lists(
    api: Api, emulator: Emulator, base: str
) -> None:
    params = {"stop": ["<c>"], "num_ctx": 4096, "bogus_key": "kept"}
    api.create(model="m", parameters=params, stream=False, **{"from": base})
    [text] = blob_text(emulator, "m", "params")
    assert (
        text == '{"bogus_key":"kept","num_ctx":4096,"stop":["\\u003cc\\u003e"],"temperature":0.5}\n'
    )
    assert json.loads(text)["stop"] == ["<c>"]


def test_parameters_are_not_validated(api: Api, base: str) -> None:
    reply = api.create(model="m", parameters={"temperature": "hot", "x": None}, **{"from": base})
    assert reply.statuses[-1] == "success"


def test_messages_lower_case_roles_and_replace_inherited(
    api: Api, emulator: Emulator, base: str
) -> None:
    messages = [{"role": "User", "content": "Hi <3"}, {"role": "ASSISTANT", "content": "Hello!"}]
    api.create(model="m", messages=messages, stream=False, **{"from": base})
    [text] = blob_text(emulator, "m", "messages")
    assert text == (
        '[{"role":"user","content":"Hi \\u003c3"},{"role":"assistant","content":"Hello!"}]\n'
    )
    api.create(
        model="n", messages=[{"role": "user", "content": "x"}], stream=False, **{"from": "m"}
    )
    assert json.loads(blob_text(emulator, "n", "messages")[0]) == [{"role": "user", "content": "x"}]
    api.create(model="o", messages=[], stream=False, **{"from": "m"})
    assert blob_text(emulator, "o", "messages") == [text]


@pytest.mark.parametrize(
    ("info", "error"),
    [
        ({"model_family": 3}, 'info field "model_family" must be a string'),
        ({"context_length": "big"}, 'info field "context_length" must be a number'),
        ({"embedding_length": -1}, 'info field "embedding_length" must be a non-negative integer'),
        ({"context_length": 1.5}, 'info field "context_length" must be a non-negative integer'),
    ],
)
def test_info_type_errors_are_400(api: Api, base: str, info: dict[str, object], error: str) -> None:
    reply = api.create(model="m", info=info, **{"from": base})
    assert (reply.status, reply.json()) == (400, {"error": error})


def test_info_overrides_config_values(api: Api, emulator: Emulator, base: str) -> None:
    info = {"model_family": "custom", "parameter_size": "7B", "context_length": 8192}
    api.create(model="m", info=info, stream=False, **{"from": base})
    details = api.show("m").json()["details"]
    assert (details["family"], details["parameter_size"]) == ("custom", "7B")
    manifest = emulator.manifest("m")
    assert manifest is not None
    config = json.loads(emulator.blob_path(manifest["config"]["digest"]).read_text())
    assert config["context_length"] == 8192

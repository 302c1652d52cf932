"""Chat-template auto-detection of ``/api/create`` (issue 15; ollama-api.md §4.4.3a, §4.7 B/C).

As Ollama v0.33.0-rc2 (``server/model.go`` ``detectChatTemplate``, ``template/template.go``
``Named``): a GGUF (model or adapter, not a draft) or a converted safetensors model whose
``tokenizer.chat_template`` is within Levenshtein distance 100 of an entry of
``template/index.json`` gets that entry's Go template as a template layer, with the status
``using autodetected template <name>``, and a params layer with the template's stop tokens.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest
from emulator_helpers import Api, digest_of, manifest_layers

from dropzone.testing import builders
from dropzone.testing.emulator.store import ADAPTER, DRAFT, MODEL, PARAMS, TEMPLATE

# Meta-Llama-3-8B-Instruct's tokenizer_config.json chat_template.
LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)
LLAMA3_GO = (
    "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n"
    "{{ .Content }}<|eot_id|>\n{{- end }}<|start_header_id|>assistant<|end_header_id|>\n\n"
)
# A ChatML template as Qwen-style models ship it, with a default system prompt of our own.
CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a careful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
UNLIKE_ANY = "{{ messages | tojson }}" * 40


def _index() -> list[dict[str, str]]:
    text = resources.files("dropzone.testing").joinpath("templates", "index.json").read_text()
    entries = json.loads(text)
    assert isinstance(entries, list)
    return entries


def _bundled() -> set[str]:
    folder = resources.files("dropzone.testing").joinpath("templates")
    return {p.name.removesuffix(".gotmpl") for p in folder.iterdir() if p.name.endswith(".gotmpl")}


def _blob(api: Api, layer: dict[str, Any]) -> bytes:
    return api.emulator.blob_path(str(layer["digest"])).read_bytes()


def test_a_llama3_gguf_gets_the_llama3_template_and_its_stop_tokens(api: Api) -> None:
    reply = api.create(model="m", files={"m.gguf": api.gguf(chat_template=LLAMA3)})
    assert reply.status == 200, reply.text
    statuses = reply.statuses
    tail = statuses[statuses.index("verifying conversion") + 1 :]
    assert [s.split(" sha256:")[0] for s in tail] == [
        "creating new layer",
        "using autodetected template llama3-instruct",
        "creating new layer",
        "writing manifest",
        "success",
    ]
    layers = manifest_layers(api.emulator, "m")
    assert [layer["mediaType"] for layer in layers] == [MODEL, TEMPLATE, PARAMS]
    assert _blob(api, layers[1]).decode() == LLAMA3_GO
    # json.NewEncoder: Go's HTML escaping and a trailing newline
    assert _blob(api, layers[2]) == (
        b'{"stop":["\\u003c|start_header_id|\\u003e","\\u003c|end_header_id|\\u003e",'
        b'"\\u003c|eot_id|\\u003e"]}\n'
    )
    assert "template" in api.show("m").json()


def test_a_close_variant_is_still_detected(api: Api) -> None:
    reply = api.create(model="m", files={"m.gguf": api.gguf(chat_template=CHATML)}, stream=False)
    assert reply.status == 200, reply.text
    layers = manifest_layers(api.emulator, "m")
    assert [layer["mediaType"] for layer in layers] == [MODEL, TEMPLATE, PARAMS]
    assert b"<|im_start|>" in _blob(api, layers[1])


def test_a_template_unlike_any_known_one_adds_nothing(api: Api) -> None:
    files = {"m.gguf": api.gguf(chat_template=UNLIKE_ANY)}
    reply = api.create(model="m", files=files)
    assert reply.status == 200, reply.text
    assert not any("autodetected" in s for s in reply.statuses)
    assert [layer["mediaType"] for layer in manifest_layers(api.emulator, "m")] == [MODEL]


def test_the_requests_template_and_stop_replace_the_detected_ones(api: Api) -> None:
    reply = api.create(
        model="m",
        files={"m.gguf": api.gguf(chat_template=LLAMA3)},
        template="{{ .Prompt }}",
        parameters={"stop": ["END"], "temperature": 0.5},
        stream=False,
    )
    assert reply.status == 200, reply.text
    layers = manifest_layers(api.emulator, "m")
    assert [layer["mediaType"] for layer in layers] == [MODEL, TEMPLATE, PARAMS]
    assert _blob(api, layers[1]) == b"{{ .Prompt }}"
    assert json.loads(_blob(api, layers[2])) == {"stop": ["END"], "temperature": 0.5}
    # the detected template's blob went with its layer (removeLayer)
    assert not api.emulator.has_blob(digest_of(LLAMA3_GO.encode()))


def test_a_draft_is_not_searched_for_a_template(api: Api) -> None:
    reply = api.create(
        model="m",
        files={"m.gguf": api.gguf()},
        draft_files={"d.gguf": api.gguf("d.gguf", chat_template=LLAMA3, seed=1)},
        stream=False,
    )
    assert reply.status == 200, reply.text
    media = [layer["mediaType"] for layer in manifest_layers(api.emulator, "m")]
    assert TEMPLATE not in media


def test_a_safetensors_model_is_detected_from_its_tokenizer_config(api: Api) -> None:
    folder = builders.build_safetensors_model(api.work / "st")
    config = {"add_bos_token": True, "chat_template": LLAMA3}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    reply = api.create(model="m", files=api.folder(folder))
    assert reply.status == 200, reply.text
    assert "using autodetected template llama3-instruct" in reply.statuses
    layers = manifest_layers(api.emulator, "m")
    assert [layer["mediaType"] for layer in layers] == [MODEL, TEMPLATE, PARAMS]


def test_a_named_chat_template_list_uses_the_default_entry(api: Api) -> None:
    folder = builders.build_safetensors_model(api.work / "st")
    listed = [{"name": "tool_use", "template": UNLIKE_ANY}, {"name": "default", "template": LLAMA3}]
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": listed}))
    reply = api.create(model="m", files=api.folder(folder), stream=False)
    assert reply.status == 200, reply.text
    assert _blob(api, manifest_layers(api.emulator, "m")[1]).decode() == LLAMA3_GO


@pytest.mark.parametrize("entry", _index(), ids=lambda e: e["name"])
def test_every_index_entry_names_itself(api: Api, entry: dict[str, str]) -> None:
    # template_test.go TestNamed: its cases (testdata/templates.jsonl) are the index's entries.
    files = {"m.gguf": api.gguf(chat_template=entry["template"])}
    reply = api.create(model="m", files=files, stream=False)
    if entry["name"] in _bundled():
        assert reply.status == 200, reply.text
        streamed = api.create(model="m", files=files)
        assert f"using autodetected template {entry['name']}" in streamed.statuses
    else:  # the choice is Ollama's, but the emulator lacks the text to store
        assert reply.status == 500
        assert reply.json()["error"] == (
            f"emulator: the chat template matches Ollama's {entry['name']!r} template, "
            "whose text the emulator does not bundle"
        )


def test_a_gguf_adapter_is_searched_and_layers_come_in_ollamas_order(api: Api) -> None:
    # CreateHandler appends the adapter layers (with their detected template) before the drafts.
    adapter = api.gguf("a.gguf", general_type="adapter", chat_template=LLAMA3, seed=2)
    reply = api.create(
        model="m",
        files={"m.gguf": api.gguf()},
        adapters={"a.gguf": adapter},
        draft_files={"d.gguf": api.gguf("d.gguf", seed=1)},
    )
    assert reply.status == 200, reply.text
    assert "using autodetected template llama3-instruct" in reply.statuses
    media = [layer["mediaType"] for layer in manifest_layers(api.emulator, "m")]
    assert media == [MODEL, ADAPTER, TEMPLATE, DRAFT, PARAMS]

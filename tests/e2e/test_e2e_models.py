"""Each kind of drop becomes the right model, as the real daemon makes it over HTTP: the name
the sidecar gives (or the one derived from the file), and the manifest layers it asks for."""

from __future__ import annotations

import json
from typing import Any

from e2e_env import Dropzone, digest_of

from dropzone.testing.builders import build_gguf, build_safetensors_model
from dropzone.testing.ollama import Emulator

IMAGE = "application/vnd.ollama.image."


def layers(emulator: Emulator, model: str) -> dict[str, list[dict[str, Any]]]:
    """The model's manifest layers by kind (``model``, ``system``, ``params``…)."""
    manifest = emulator.manifest(model)
    assert manifest is not None, f"{model} not on the server; it has {emulator.models()}"
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for layer in manifest["layers"]:
        by_kind.setdefault(layer["mediaType"].removeprefix(IMAGE), []).append(layer)
    return by_kind


def blob_text(emulator: Emulator, layer: dict[str, Any]) -> str:
    return emulator.blob_path(layer["digest"]).read_text()


def config_of(emulator: Emulator, model: str) -> dict[str, Any]:
    manifest = emulator.manifest(model)
    assert manifest is not None
    config: dict[str, Any] = json.loads(
        emulator.blob_path(manifest["config"]["digest"]).read_text()
    )
    return config


def test_gguf_with_toml_sidecar_becomes_the_named_model_with_every_layer_it_asks_for(
    dropzone: Dropzone, emulator: Emulator
) -> None:
    daemon = dropzone.run()
    gguf = build_gguf(dropzone.tmp / "Qwen3-8B.gguf")
    (dropzone.drop / "Qwen3-8B.toml").write_text(
        'model = "qwen3:8b"\n'
        'system = "You are terse."\n'
        'template = "{{ .System }} {{ .Prompt }}"\n'
        'license = ["MIT", "Apache-2.0"]\n'
        'messages = [{role = "user", content = "hi"}, {role = "assistant", content = "hello"}]\n'
        "[parameters]\ntemperature = 0.25\nstop = ['<|end|>']\n"
    )
    gguf.rename(dropzone.drop / gguf.name)

    daemon.wait_for("model.created", model="qwen3:8b")
    got = layers(emulator, "qwen3:8b")
    assert sorted(got) == ["license", "messages", "model", "params", "system", "template"]
    assert blob_text(emulator, got["system"][0]) == "You are terse."
    assert blob_text(emulator, got["template"][0]) == "{{ .System }} {{ .Prompt }}"
    assert [blob_text(emulator, layer) for layer in got["license"]] == ["MIT", "Apache-2.0"]
    assert json.loads(blob_text(emulator, got["params"][0])) == {
        "temperature": 0.25,
        "stop": ["<|end|>"],
    }
    assert json.loads(blob_text(emulator, got["messages"][0])) == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
    ]
    # The weights went up once, under the file's own digest.
    assert emulator.counters.blob_bodies_read(digest_of(dropzone.drop / gguf.name)) == 1
    assert emulator.counters.creates("qwen3:8b") == 1


def test_gguf_with_modelfile_sidecar_is_named_after_the_file_with_the_modelfile_layers(
    dropzone: Dropzone, emulator: Emulator
) -> None:
    (dropzone.drop / "Llama-Coder.Modelfile").write_text(
        'SYSTEM """Review code."""\n'
        "PARAMETER num_ctx 4096\n"
        'PARAMETER stop "<|eot|>"\n'
        "MESSAGE user Is x = 1 valid?\n"
        "MESSAGE assistant Yes.\n"
        "LICENSE BSD\n"
    )
    build_gguf(dropzone.drop / "Llama-Coder.gguf")
    daemon = dropzone.run()

    daemon.wait_for("model.created", model="llama-coder:latest")
    got = layers(emulator, "llama-coder:latest")
    assert sorted(got) == ["license", "messages", "model", "params", "system"]
    assert blob_text(emulator, got["system"][0]) == "Review code."
    assert json.loads(blob_text(emulator, got["params"][0])) == {
        "num_ctx": 4096,
        "stop": ["<|eot|>"],
    }
    assert json.loads(blob_text(emulator, got["messages"][0])) == [
        {"role": "user", "content": "Is x = 1 valid?"},
        {"role": "assistant", "content": "Yes."},
    ]
    assert blob_text(emulator, got["license"][0]) == "BSD"


def test_bare_gguf_becomes_a_model_named_after_the_file_with_the_weights_only(
    dropzone: Dropzone, emulator: Emulator
) -> None:
    daemon = dropzone.run()
    build_gguf(dropzone.tmp / "Z-Model.gguf").rename(dropzone.drop / "Z-Model.gguf")

    daemon.wait_for("model.created", model="z-model:latest")
    assert sorted(layers(emulator, "z-model:latest")) == ["model"]
    assert emulator.models() == ["z-model:latest"]
    done = daemon.wait_for("artifact.done", model="z-model:latest")
    assert done["result"] == "done"
    assert done["host"] == emulator.url
    assert done["path"] == str(dropzone.drop / "Z-Model.gguf")


def test_safetensors_folder_with_quantize_in_its_sidecar_becomes_a_quantized_model(
    dropzone: Dropzone, emulator: Emulator
) -> None:
    folder = build_safetensors_model(dropzone.tmp / "My-Finetune")
    (folder / "dropzone.toml").write_text(
        'model = "acme/finetune:v2"\nquantize = "q4_K_M"\nsystem = "You are ACME."\n'
    )
    folder.rename(dropzone.drop / "My-Finetune")
    daemon = dropzone.run()

    daemon.wait_for("model.created", model="acme/finetune:v2")
    got = layers(emulator, "acme/finetune:v2")
    assert sorted(got) == ["model", "system"]
    assert config_of(emulator, "acme/finetune:v2")["file_type"] == "Q4_K_M"
    # Every weight and tokenizer file of the folder went up as its own blob.
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        path = dropzone.drop / "My-Finetune" / name
        assert emulator.counters.blob_bodies_read(digest_of(path)) == 1, name

"""``show`` repairs an unknown quantization level from the model's GGUF (issue 15), as
``GetModelInfo`` in Ollama v0.33.0-rc2 (``server/routes.go``, ``isUnknownQuantization``):
a config whose ``file_type`` is empty or "unknown" (an older server's) shows the GGUF's own
``general.file_type`` name, when that one is known."""

from __future__ import annotations

import json

import pytest
from emulator_helpers import Api

from dropzone.recipes.names import parse_name
from dropzone.testing.emulator.store import CONFIG_MEDIA_TYPE


def with_config_file_type(api: Api, model: str, file_type: str | None) -> None:
    """Rewrite the stored config of ``model`` as an older server might have written it."""
    store = api.emulator.store
    stored = store.load(parse_name(model))
    assert stored is not None
    config = json.loads(store.blob_path(stored.config.digest).read_bytes())
    config.pop("file_type", None)
    if file_type is not None:
        config["file_type"] = file_type
    layer = store.new_layer(json.dumps(config).encode(), CONFIG_MEDIA_TYPE)
    store.write_manifest(stored.name, layer, list(stored.layers))


@pytest.mark.parametrize("recorded", [None, "", "unknown"])
def test_an_unknown_level_shows_the_ggufs_file_type(api: Api, recorded: str | None) -> None:
    assert api.create(model="m", files={"m.gguf": api.gguf()}, stream=False).status == 200
    with_config_file_type(api, "m", recorded)
    assert api.show("m").json()["details"]["quantization_level"] == "F16"


def test_a_known_level_is_shown_as_recorded(api: Api) -> None:
    assert api.create(model="m", files={"m.gguf": api.gguf()}, stream=False).status == 200
    with_config_file_type(api, "m", "Q4_K_M")
    assert api.show("m").json()["details"]["quantization_level"] == "Q4_K_M"


def test_a_gguf_without_a_file_type_stays_unknown(api: Api) -> None:
    files = {"m.gguf": api.gguf(file_type=None)}
    assert api.create(model="m", files=files, stream=False).status == 200
    assert api.show("m").json()["details"]["quantization_level"] == "unknown"

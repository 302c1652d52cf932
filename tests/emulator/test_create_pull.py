"""Issue 12: a create ``from`` a model the emulator lacks pulls it from its "registry" store
inside the create stream, as Ollama does (ollama-api.md §4.4.1), or fails with Ollama's text."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from dropzone.testing.builders import build_gguf
from dropzone.testing.ollama import Emulator, main
from dropzone.testing.seed import seed_model


def create(url: str, **body: Any) -> tuple[int, list[dict[str, Any]]]:
    with httpx.Client(base_url=url, timeout=30) as client:
        reply = client.post("/api/create", json=body)
        return reply.status_code, [json.loads(line) for line in reply.text.splitlines() if line]


def test_a_missing_base_known_to_the_registry_is_pulled_with_progress(tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    with Emulator(registry) as reg:
        seed_model(reg.url, "llama3.2", build_gguf(tmp_path / "l.gguf"))
    with Emulator(tmp_path / "store", registry=registry) as emulator:
        status, lines = create(emulator.url, model="mario", **{"from": "llama3.2"}, system="Hi")
        assert status == 200
        statuses = [line.get("status") for line in lines]
        assert statuses[0] == "pulling manifest"
        pulls = [line for line in lines if line.get("status", "").startswith("pulling ")][1:]
        assert pulls and all({"digest", "total"} <= set(p) for p in pulls)
        assert pulls[0]["status"] == "pulling " + pulls[0]["digest"].removeprefix("sha256:")[:12]
        assert "verifying sha256 digest" in statuses
        assert statuses.count("success") == 2 and statuses[-1] == "success"
        assert sorted(emulator.models()) == ["llama3.2:latest", "mario:latest"]
        for layer in emulator.manifest("llama3.2")["layers"]:  # type: ignore[index]
            data = emulator.blob_path(layer["digest"]).read_bytes()
            assert "sha256:" + hashlib.sha256(data).hexdigest() == layer["digest"]


def test_a_base_the_registry_does_not_know_fails_with_ollamas_text(tmp_path: Path) -> None:
    with Emulator(tmp_path / "store", registry=tmp_path / "empty") as emulator:
        status, lines = create(emulator.url, model="mario", **{"from": "nothere"})
        assert status == 200
        assert lines == [
            {"status": "pulling manifest"},
            {"error": "pull model manifest: file does not exist"},
        ]
        status, lines = create(emulator.url, model="mario", stream=False, **{"from": "nothere"})
        assert (status, lines) == (500, [{"error": "pull model manifest: file does not exist"}])


def test_registry_option_is_listed(capsys: Any) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "--registry" in capsys.readouterr().out

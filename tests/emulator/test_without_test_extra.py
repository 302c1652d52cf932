"""The emulator runs from a plain install: no numpy, gguf-py or safetensors (issue 15).

The emulator runs in a child process where those packages cannot be imported, and serves a
whole create of a GGUF (quantized, so it writes a new GGUF) and of a safetensors folder
(converted to GGUF). The inputs are built here, with the test extra, as the world makes them.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from emulator_helpers import emulator_process

from dropzone.testing import builders

HERE = Path(__file__).parent


@pytest.fixture
def bare_emulator(tmp_path: Path) -> Iterator[str]:
    """The emulator's URL, served by a child that cannot import the test extra."""
    store = str(tmp_path / "store")
    argv = [sys.executable, str(HERE / "no_test_extra.py"), "--port", "0", "--store", store]
    with emulator_process(argv) as url:
        yield url


def _upload(client: httpx.Client, path: Path) -> str:
    data = path.read_bytes()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert client.post(f"/api/blobs/{digest}", content=data).status_code in (200, 201)
    return digest


def _create(client: httpx.Client, **body: object) -> list[str]:
    reply = client.post("/api/create", json={**body, "stream": False})
    assert reply.status_code == 200, reply.text
    return [reply.json()["status"]]


def test_gguf_quantized_and_safetensors_converted_without_numpy_or_gguf(
    bare_emulator: str, tmp_path: Path
) -> None:
    gguf_file = builders.build_gguf(tmp_path / "m.gguf", tensor_elems=256)
    folder = builders.build_safetensors_model(tmp_path / "st")
    with httpx.Client(base_url=bare_emulator, timeout=60) as client:
        assert _create(client, model="plain", files={"m.gguf": _upload(client, gguf_file)})
        assert _create(
            client, model="small", files={"m.gguf": _upload(client, gguf_file)}, quantize="q8_0"
        )
        files = {p.name: _upload(client, p) for p in sorted(folder.iterdir()) if p.is_file()}
        assert _create(client, model="converted", files=files)
        shown = client.post("/api/show", json={"model": "small"}).json()
        assert shown["details"]["quantization_level"] == "Q8_0"
        names = {m["name"] for m in client.get("/api/tags").json()["models"]}
        assert names == {"plain:latest", "small:latest", "converted:latest"}

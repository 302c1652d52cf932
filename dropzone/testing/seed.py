"""Put a model into a running Ollama (or the emulator) as a test's starting point.

``seed_model`` uploads one GGUF as a blob and creates ``name`` from it over the real API, so a
test can say "the base model is there" without knowing the store's layout.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx


def seed_model(url: str, name: str, gguf: Path) -> None:
    """Create ``name`` on the server at ``url`` from the GGUF file ``gguf``."""
    data = gguf.read_bytes()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with httpx.Client(base_url=url, timeout=30.0) as client:
        client.post(f"/api/blobs/{digest}", content=data).raise_for_status()
        reply = client.post(
            "/api/create",
            json={"model": name, "files": {gguf.name: digest}, "stream": False},
        )
        reply.raise_for_status()

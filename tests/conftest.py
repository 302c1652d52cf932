"""Shared fixtures: ``emulator``, a started Ollama API emulator on a fresh store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dropzone.testing.ollama import Emulator


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    """An Ollama v0.33 emulator on a free loopback port, store in ``tmp_path/ollama``."""
    with Emulator(tmp_path / "ollama") as running:
        yield running

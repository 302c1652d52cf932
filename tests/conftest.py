"""Shared fixtures: ``emulator``, a started Ollama API emulator on a fresh store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from dropzone.testing.ollama import Emulator

# CI machines have two busy cores: a per-example deadline would turn load into flaky failures.
# A hang is still caught, by pytest-timeout's per-test limit.
settings.register_profile("dropzone", deadline=None, print_blob=True)
settings.load_profile("dropzone")


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    """An Ollama v0.33 emulator on a free loopback port, store in ``tmp_path/ollama``."""
    with Emulator(tmp_path / "ollama") as running:
        yield running

"""Shared fixtures: ``emulator``, a started Ollama API emulator on a fresh store; ``capture``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from hypothesis import settings
from structlog.testing import LogCapture

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


@pytest.fixture
def capture() -> Iterator[LogCapture]:
    """The events of the code under test, captured (structlog's ``LogCapture``)."""
    capturing = LogCapture()
    structlog.configure(processors=[structlog.processors.add_log_level, capturing])
    try:
        yield capturing
    finally:
        structlog.reset_defaults()

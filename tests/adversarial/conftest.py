"""The adversarial suite (issue 13): every test here is marked ``adversarial``, so
``pytest -m adversarial`` runs it alone (``.ci/run`` does, after the core); plain ``pytest -q``
leaves it out (tests/conftest.py). The real process is driven with the end-to-end suite's
``DropzoneProcess``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from e2e_env import Dropzone
from hostile_server import HostileServer

from dropzone.testing.ollama import Emulator


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/adversarial/" in str(item.fspath):
            item.add_marker(pytest.mark.adversarial)


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    with HostileServer() as server:
        yield server


@pytest.fixture
def dropzone(tmp_path: Path, emulator: Emulator) -> Iterator[Dropzone]:
    """The end-to-end suite's launcher: every process is stopped at teardown, and must answer
    SIGTERM within ``STOP_SECONDS`` with exit 0."""
    launcher = Dropzone(tmp_path, emulator)
    try:
        yield launcher
    finally:
        failures = launcher.shutdown()
        assert not failures, "\n".join(failures)

"""End-to-end fixtures: the real ``dropzone`` process against the Ollama emulator over HTTP.

``dropzone.run()`` starts ``python -m dropzone run`` on a drop folder and state folder in
``tmp_path``, configured only through ``DROPZONE_*`` variables (as systemd's EnvironmentFile
would), and waits for its first scan. Every process a test starts is stopped at teardown with
SIGTERM, and must exit 0 within a few seconds; a test that leaves one hanging fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_env import Dropzone, free_port

from dropzone.testing.ollama import Emulator


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def second_emulator(tmp_path: Path) -> Iterator[Emulator]:
    """Another Ollama host, on a fixed free port but NOT started: down until the test says."""
    other = Emulator(tmp_path / "ollama2", port=free_port())
    try:
        yield other
    finally:
        other.stop()


@pytest.fixture
def dropzone(tmp_path: Path, emulator: Emulator) -> Iterator[Dropzone]:
    launcher = Dropzone(tmp_path, emulator)
    try:
        yield launcher
    finally:
        failures = launcher.shutdown()
    assert not failures, "\n".join(failures)

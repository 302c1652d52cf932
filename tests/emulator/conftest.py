"""Fixtures for the emulator conformance tests (``emulator`` itself is in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from emulator_helpers import Api, RawConnection

from dropzone.testing.ollama import Emulator


@pytest.fixture
def client(emulator: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator.url, timeout=30, verify=False) as http:
        yield http


@pytest.fixture
def api(emulator: Emulator, client: httpx.Client, tmp_path: Path) -> Api:
    work = tmp_path / "artifacts"
    work.mkdir()
    return Api(emulator, client, work)


@pytest.fixture
def raw(emulator: Emulator) -> Iterator[RawConnection]:
    """A raw socket to the emulator, for what HTTP libraries hide (100-continue, framing)."""
    connection = RawConnection(emulator.port)
    yield connection
    connection.close()


@pytest.fixture
def old_api(tmp_path: Path) -> Iterator[Api]:
    """An ``Api`` on a second emulator playing a pre-0.30 server (no validation, no splits)."""
    work = tmp_path / "old-artifacts"
    work.mkdir()
    with (
        Emulator(tmp_path / "old-ollama", version="0.29.0") as old,
        httpx.Client(base_url=old.url, timeout=30, verify=False) as http,
    ):
        yield Api(old, http, work)

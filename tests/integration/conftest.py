"""Fixtures for tests that run the Daemon in this process against the emulator over real HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import Running
from structlog.testing import LogCapture

from dropzone.config.loading import load_settings
from dropzone.config.settings import Settings
from dropzone.service.daemon import Daemon
from dropzone.testing.ollama import Emulator


@pytest.fixture
def drop(tmp_path: Path) -> Path:
    folder = tmp_path / "drop"
    folder.mkdir()
    return folder


@pytest.fixture
def settings_for(tmp_path: Path, drop: Path, emulator: Emulator) -> Callable[..., Settings]:
    """Settings for a daemon on ``drop`` and the emulator, with ``overrides``."""

    def make(**overrides: object) -> Settings:
        return load_settings(
            config_path=None,
            env={},
            overrides={
                "drop_dir": drop,
                "state_dir": tmp_path / "state",
                "ollama_hosts": [emulator.url],
                "settle_seconds": 0.3,
                **overrides,
            },
            default_config_path=tmp_path / "absent.toml",
        )

    return make


@pytest.fixture
def start(settings_for: Callable[..., Settings], capture: LogCapture) -> Iterator[Any]:
    running: list[Running] = []

    def start_daemon(**overrides: object) -> Running:
        running.append(Running(Daemon(settings_for(**overrides), env={}), capture))
        running[-1].wait_for("scan.done")
        return running[-1]

    yield start_daemon
    # Shown by pytest only when the test failed: what the daemons said.
    print(*(dict(e) for e in capture.entries), sep="\n")
    for r in running:
        assert r.stop() == 0
    crashed = [e for e in capture.entries if e["event"] == "artifact.error"]
    assert not crashed

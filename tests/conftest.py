"""Shared fixtures: ``emulator``, a started Ollama API emulator on a fresh store; ``capture``."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
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


# The slow groups (every test in tests/e2e and tests/adversarial, the bench smoke tests, and
# the ``slow`` ones that wait seconds by design), which a plain ``pytest`` leaves out so that
# the core runs in about a minute; ``.ci/run`` runs each group after it (``pytest -m e2e`` …).
# Naming a test, a file or a folder, or a marker expression, runs what it names.
GROUPS = ("e2e", "adversarial", "bench", "slow")


@pytest.hookimpl(trylast=True)  # after the folder conftests have marked their tests
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.option.markexpr or config.args_source is not pytest.Config.ArgsSource.TESTPATHS:
        return
    core = [i for i in items if not any(i.get_closest_marker(g) for g in GROUPS)]
    if len(core) < len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in core])
        items[:] = core


def pytest_report_header(config: pytest.Config) -> str | None:
    if config.option.markexpr or config.args_source is not pytest.Config.ArgsSource.TESTPATHS:
        return None
    return f"the core only: {', '.join(GROUPS)} run with -m <group> (all of them: .ci/run)"


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


@pytest.fixture
def tmpfs() -> Iterator[Callable[[Path, str], Path]]:
    """Mount a tmpfs of a given size (``"4m"``) on an empty folder, to fill it (a full disk);
    unmounted after the test. Mounting one needs root: the test is skipped otherwise."""
    mounted: list[Path] = []

    def mount(folder: Path, size: str) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            why = done.stderr.decode(errors="replace").strip()
            pytest.skip(f"cannot mount a tmpfs here: {why}")
        mounted.append(folder)
        return folder

    try:
        yield mount
    finally:
        for folder in reversed(mounted):
            subprocess.run(["umount", "-l", str(folder)], check=False)

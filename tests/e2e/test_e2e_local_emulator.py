"""The README's first command on a machine with no Ollama: ``config/local.toml`` names the
bundled emulator (``emulator:./emulator``), which ``dropzone run`` starts in-process; a GGUF
copied into ./drop becomes a model there (issue 15)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from dropzone_process import DropzoneProcess, clean_environment

from dropzone.testing.builders import build_gguf

REPO = Path(__file__).resolve().parents[2]
# JSON events for the test to read, and a short settle period: the rest is local.toml's.
TEST_ENV = {"DROPZONE_LOG_FORMAT": "json", "DROPZONE_SETTLE_SECONDS": "0.5"}


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A working directory as a newcomer's checkout: config/local.toml, nothing else."""
    (tmp_path / "config").mkdir()
    shutil.copy(REPO / "config/local.toml", tmp_path / "config/local.toml")
    return tmp_path


@pytest.fixture
def processes(checkout: Path) -> Iterator[list[DropzoneProcess]]:
    started: list[DropzoneProcess] = []
    yield started
    for process in started:
        process.close()


def start(checkout: Path, processes: list[DropzoneProcess], **env: str) -> DropzoneProcess:
    process = DropzoneProcess(
        ["run", "--config", "config/local.toml"],
        clean_environment({**TEST_ENV, **env}),
        checkout / f"run-{len(processes)}.stderr",
        cwd=checkout,
    )
    processes.append(process)
    return process


def test_first_command_makes_a_model_with_no_ollama(
    checkout: Path, processes: list[DropzoneProcess]
) -> None:
    daemon = start(checkout, processes)
    url = daemon.wait_for("emulator.started")["url"]
    assert url.startswith("http://127.0.0.1:")
    daemon.wait_for("scan.done")
    shutil.copy(build_gguf(checkout / "elsewhere" / "tiny.gguf"), checkout / "drop" / "tiny.gguf")

    daemon.wait_for("model.created", model="tiny:latest", timeout=30)
    tags = httpx.get(f"{url}/api/tags", timeout=10).json()
    assert [m["name"] for m in tags["models"]] == ["tiny:latest"]
    status = subprocess.run(
        [sys.executable, "-m", "dropzone", "status", "--json", "--config", "config/local.toml"],
        cwd=checkout,
        env=clean_environment({}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert status.returncode == 0, status.stderr
    (row,) = json.loads(status.stdout)
    assert row["state"] == "done", row
    assert daemon.stop() == 0
    # The store outlives the daemon, under ./emulator as local.toml says.
    assert (checkout / "emulator/manifests/registry.ollama.ai/library/tiny/latest").is_file()


def test_the_emulator_is_refused_under_systemd(
    checkout: Path, processes: list[DropzoneProcess]
) -> None:
    daemon = start(checkout, processes, NOTIFY_SOCKET="/run/systemd/notify")
    assert daemon.wait_exit(timeout=30) == 2
    refusal = "\n".join(daemon.output())
    assert "local trials only" in refusal and "NOTIFY_SOCKET" in refusal
    assert not (checkout / "emulator").exists()

"""The real ``dropzone run`` against a host that drips its ``/api/version`` answer one byte at a
time, each byte well inside the per-read timeout (issue 13: greeting ran on the main thread,
host after host, before the first scan and READY=1, and never ended).

The invariants: the first scan comes, the other host gets its model, and SIGTERM is answered
within ``STOP_SECONDS`` with exit 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from dropzone_process import STOP_SECONDS, DropzoneProcess, clean_environment
from hostile_server import Chunk, HostileServer, drip_forever

from dropzone.testing.builders import build_gguf
from dropzone.testing.ollama import Emulator


def dripping(method: str, path: str, body: bytes) -> Iterable[Chunk]:
    return drip_forever(every=0.5)


@pytest.fixture
def process(tmp_path: Path) -> Iterator[list[DropzoneProcess]]:
    started: list[DropzoneProcess] = []
    yield started
    for p in started:
        p.close()


def start(tmp_path: Path, hosts: list[str], started: list[DropzoneProcess]) -> DropzoneProcess:
    (tmp_path / "drop").mkdir(exist_ok=True)
    config = tmp_path / "dropzone.toml"
    config.write_text("")
    env = {
        "DROPZONE_CONFIG": str(config),
        "DROPZONE_DROP_DIR": str(tmp_path / "drop"),
        "DROPZONE_STATE_DIR": str(tmp_path / "state"),
        "DROPZONE_OLLAMA_HOSTS": ",".join(hosts),
        "DROPZONE_SETTLE_SECONDS": "0.5",
        "DROPZONE_LOG_FORMAT": "json",
    }
    process = DropzoneProcess(["run"], clean_environment(env), tmp_path / "dropzone.stderr")
    started.append(process)
    return process


@pytest.mark.timeout(60)
def test_a_dripping_host_delays_neither_the_first_scan_nor_the_other_host_nor_stop(
    tmp_path: Path,
    hostile: HostileServer,
    emulator: Emulator,
    process: list[DropzoneProcess],
) -> None:
    hostile.routes["/api/version"] = dripping
    build_gguf(tmp_path / "drop" / "tiny.gguf")
    dropzone = start(tmp_path, [hostile.url, emulator.url], process)
    dropzone.wait_for("scan.done", timeout=20)
    dropzone.wait_for("model.created", host=emulator.url, timeout=20)
    assert dropzone.find("ollama.unreachable", host=hostile.url)
    assert dropzone.stop() == 0  # within STOP_SECONDS, or stop() fails
    assert STOP_SECONDS <= 5


@pytest.mark.timeout(60)
def test_sigterm_during_the_greeting_of_a_dripping_host_is_answered(
    tmp_path: Path, hostile: HostileServer, process: list[DropzoneProcess]
) -> None:
    hostile.routes["/api/version"] = dripping
    dropzone = start(tmp_path, [hostile.url], process)
    hostile.wait_for_requests(1)  # the greeting is under way
    dropzone.wait_for("daemon.started")
    assert dropzone.stop() == 0

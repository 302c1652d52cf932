"""The daemon started exactly as systemd starts it: the unit's ExecStart command line (the
console script and ``--config``), the shipped configuration file edited as the install guide
says, ``$STATE_DIRECTORY`` as ``StateDirectory=`` sets it, ``OLLAMA_HOST`` from the environment
file, and ``NOTIFY_SOCKET``."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from dropzone_process import DropzoneProcess, clean_environment
from test_e2e_lifecycle import NotifySocket

from dropzone.testing.builders import build_gguf
from dropzone.testing.ollama import Emulator
from dropzone.testing.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]


def exec_start() -> list[str]:
    for line in (REPO / "systemd" / "dropzone.service").read_text().splitlines():
        if line.startswith("ExecStart="):
            return shlex.split(line.removeprefix("ExecStart="))
    raise AssertionError("no ExecStart in the unit")


def test_the_units_command_line_runs_the_service(tmp_path: Path, emulator: Emulator) -> None:
    command = exec_start()
    assert command[0] == "/opt/dropzone/.venv/bin/dropzone"
    assert command[1:3] == ["run", "--config"]
    # The install guide copies config/dropzone.toml to /etc/dropzone and sets drop_dir there.
    config = tmp_path / "dropzone.toml"
    shipped = (REPO / "config" / "dropzone.toml").read_text()
    assert 'drop_dir = "/srv/dropzone"' in shipped
    drop = tmp_path / "srv-dropzone"
    config.write_text(shipped.replace('drop_dir = "/srv/dropzone"', f'drop_dir = "{drop}"'))
    build_gguf(drop / "Unit-Test.gguf")
    script = Path(sys.executable).parent / "dropzone"  # the console script pip installed
    notify = NotifySocket()
    env = clean_environment(
        {
            "STATE_DIRECTORY": str(tmp_path / "var-lib-dropzone"),
            "OLLAMA_HOST": emulator.url,
            "NOTIFY_SOCKET": notify.name,
            "DROPZONE_SETTLE_SECONDS": "0.5",
        }
    )
    daemon = DropzoneProcess(
        [*command[1:3], str(config)], env, tmp_path / "stderr.log", program=[str(script)]
    )
    try:
        wait_until(lambda: notify.with_key("READY"), timeout=15, what="READY=1")
        daemon.wait_for("model.created", model="unit-test:latest")
        assert (tmp_path / "var-lib-dropzone" / "state.sqlite3").exists()
        assert daemon.stop() == 0
        wait_until(lambda: notify.with_key("STOPPING"), timeout=5, what="STOPPING=1")
    finally:
        daemon.close()
        notify.close()

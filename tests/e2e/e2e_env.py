"""What the end-to-end tests share: ``Dropzone`` starts the real ``dropzone`` processes of one
test, configured only through ``DROPZONE_*`` variables. Imported by name (``e2e_env``), not as
``conftest``: several test folders have a conftest, and which one ``import conftest`` finds
depends on the order pytest collects them in."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path

from dropzone_process import DropzoneProcess, clean_environment

from dropzone.testing.ollama import Emulator

SETTLE_SECONDS = "0.5"


def digest_of(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def free_port() -> int:
    """A loopback port nobody listens on now (for a host that is down, then comes up)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Dropzone:
    """Starts ``dropzone`` processes for one test; all share the drop and state folders."""

    def __init__(self, tmp_path: Path, emulator: Emulator) -> None:
        self.tmp = tmp_path
        self.drop = tmp_path / "drop"
        self.state = tmp_path / "state"
        self.drop.mkdir()
        self.emulator = emulator
        # An empty configuration file: a stray /etc/dropzone/dropzone.toml must not leak in.
        self.config = tmp_path / "dropzone.toml"
        self.config.write_text("")
        self.processes: list[DropzoneProcess] = []

    def env(self, hosts: Sequence[str] | None = None, **settings: str) -> dict[str, str]:
        values = {
            "DROPZONE_CONFIG": str(self.config),
            "DROPZONE_DROP_DIR": str(self.drop),
            "DROPZONE_STATE_DIR": str(self.state),
            "DROPZONE_OLLAMA_HOSTS": ",".join(hosts or [self.emulator.url]),
            "DROPZONE_SETTLE_SECONDS": SETTLE_SECONDS,
            "DROPZONE_LOG_FORMAT": "json",
        }
        values.update(settings)
        return values

    def start(
        self, command: str, env: Mapping[str, str], args: Sequence[str] = ()
    ) -> DropzoneProcess:
        stderr = self.tmp / f"dropzone-{len(self.processes)}.stderr"
        process = DropzoneProcess([command, *args], clean_environment(env), stderr)
        self.processes.append(process)
        return process

    def run(
        self,
        *,
        hosts: Sequence[str] | None = None,
        extra_env: Mapping[str, str] | None = None,
        wait: bool = True,
        **settings: str,
    ) -> DropzoneProcess:
        """``dropzone run``; with ``wait``, returns once its first full scan is done."""
        env = {**self.env(hosts, **settings), **(extra_env or {})}
        process = self.start("run", env)
        if wait:
            process.wait_for("scan.done")
        return process

    def scan(
        self, *, hosts: Sequence[str] | None = None, timeout: float = 30.0, **settings: str
    ) -> tuple[int, DropzoneProcess]:
        """``dropzone scan``: its exit status and the process (for its events)."""
        process = self.start("scan", self.env(hosts, **settings))
        return process.wait_exit(timeout), process

    def shutdown(self) -> list[str]:
        """Stop everything still running; what went wrong, for the teardown to report."""
        failures = []
        for process in self.processes:
            if process.running:
                code = process.stop()
                if code != 0:
                    failures.append(f"dropzone {process.args[0]} exited {code}")
            crashed = process.find("artifact.error")
            if crashed:
                failures.append(f"an artifact job crashed: {crashed}\n{process.transcript()}")
            process.close()
        return failures

"""One daemon per state store (design §10.4, issue 10 item 5): while ``dropzone run`` holds
state_dir/dropzone.lock, a second ``run`` or a ``scan`` exits 2 at once naming its PID, so two
processes never hash, upload and clean up the same files; ``status`` needs no lock."""

from __future__ import annotations

from dropzone_process import DropzoneProcess
from e2e_env import Dropzone

from dropzone.testing.ollama import Emulator


def problems(process: DropzoneProcess) -> list[str]:
    return [line for line in process.transcript().splitlines() if line.startswith("dropzone: ")]


def assert_refused_naming(process: DropzoneProcess, pid: int, dropzone: Dropzone) -> None:
    found = problems(process)
    assert len(found) == 1, process.transcript()
    assert str(dropzone.state / "dropzone.lock") in found[0]
    assert f"pid {pid}" in found[0]
    assert "systemctl stop dropzone" in found[0]
    assert not process.events, "refused before logging anything, let alone working"


def test_a_scan_or_second_run_beside_the_daemon_exits_2_naming_its_pid(
    dropzone: Dropzone, emulator: Emulator
) -> None:
    daemon = dropzone.run()
    pid = daemon.proc.pid

    code, scan = dropzone.scan(timeout=15)
    assert code == 2, scan.transcript()
    assert_refused_naming(scan, pid, dropzone)

    second = dropzone.run(wait=False)
    assert second.wait_exit(15) == 2, second.transcript()
    assert_refused_naming(second, pid, dropzone)

    # status reads the store beside the running daemon: it takes no lock.
    status = dropzone.start("status", dropzone.env())
    assert status.wait_exit(15) == 0, status.transcript()
    assert daemon.running

    assert daemon.stop() == 0
    code, scan = dropzone.scan()
    assert code == 0, scan.transcript()
    assert scan.find("scan.done")

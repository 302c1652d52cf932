"""``dropzone retry``: a refusal an operator has fixed is tried again by the running daemon."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from dropzone_process import clean_environment
from e2e_env import Dropzone

from dropzone.testing.builders import build_gguf
from dropzone.testing.ollama import Emulator

RETRY_SECONDS = 30.0  # a deadline for the command, not a wait


def retry(dropzone: Dropzone, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``dropzone retry ARGS`` with the daemon's environment, as an operator would run it."""
    return subprocess.run(
        [sys.executable, "-m", "dropzone", "retry", *args],
        env=clean_environment(dropzone.env()),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=RETRY_SECONDS,
        check=False,
    )


def test_a_refused_create_is_retried_by_the_running_daemon_after_dropzone_retry(
    dropzone: Dropzone, emulator: Emulator
) -> None:
    emulator.faults.fail_next(1, status=400, path_prefix="/api/create")  # permanent
    build_gguf(dropzone.tmp / "Refused.gguf", seed=5).rename(dropzone.drop / "Refused.gguf")
    daemon = dropzone.run(wait=False)
    daemon.wait_for("model.failed", model="refused:latest")
    since = daemon.rescan()  # a refusal stays refused: nothing is sent again by itself
    assert daemon.find("artifact.ready", since=since) == []
    assert emulator.manifest("refused") is None

    # A path relative to the working directory, as an operator types it.
    done = retry(dropzone, "drop/Refused.gguf", cwd=dropzone.tmp)
    assert done.returncode == 0, done.stderr
    assert "Refused.gguf" in done.stdout
    assert emulator.url in done.stdout
    assert "daemon" in done.stdout and "SIGHUP" in done.stdout
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert [e["event"] for e in events] == ["artifact.retry"]
    assert events[0]["path"] == str(dropzone.drop / "Refused.gguf")

    daemon.wait_for("model.created", since=since, model="refused:latest")
    assert emulator.manifest("refused") is not None

    again = retry(dropzone, cwd=dropzone.tmp)  # all artifacts: nothing left to retry
    assert again.returncode == 0, again.stderr
    assert "nothing to retry" in again.stdout


def test_retry_without_a_daemon_clears_the_refusal_for_the_next_start(
    dropzone: Dropzone, emulator: Emulator
) -> None:
    emulator.faults.fail_next(1, status=400, path_prefix="/api/create")
    build_gguf(dropzone.tmp / "Later.gguf", seed=6).rename(dropzone.drop / "Later.gguf")
    daemon = dropzone.run(wait=False)
    daemon.wait_for("model.failed", model="later:latest")
    assert daemon.stop() == 0

    done = retry(dropzone, str(dropzone.drop / "Later.gguf"), cwd=dropzone.drop)
    assert done.returncode == 0, done.stderr
    assert "Later.gguf" in done.stdout
    assert "no daemon" in done.stdout

    dropzone.run(wait=False).wait_for("model.created", model="later:latest")

"""``dropzone status`` shows every artifact the daemon knows (issue #11): pending files with
their reason, refused ones with the fix, hosts waiting for a retry, and a model whose sidecar
has since become invalid — written by the real daemon, not filled in by the test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dropzone.cli import main
from dropzone.testing.builders import build_gguf
from dropzone.testing.ollama import Emulator
from dropzone.testing.waiting import wait_until


def _status(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> dict[str, dict[str, Any]]:
    config = tmp_path / "status.toml"
    config.write_text(f'drop_dir = "{tmp_path / "drop"}"\nstate_dir = "{tmp_path / "state"}"\n')
    capsys.readouterr()
    assert main(["status", "--json", "--config", str(config)]) == 0
    return {r["path"]: r for r in json.loads(capsys.readouterr().out)}


def test_status_shows_pending_refused_and_newly_invalid_artifacts(
    start: Any, drop: Path, tmp_path: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    data = build_gguf(tmp_path / "Half.gguf").read_bytes()
    (drop / "Half.gguf").write_bytes(data[: len(data) // 2])
    (drop / "Junk.gguf").write_bytes(b"not a gguf file at all" * 10)
    build_gguf(drop / "Good.gguf")
    (drop / "Good.toml").write_text('model = "good"\n')
    daemon = start()
    daemon.wait_for("model.created", model="good")
    daemon.wait_for("artifact.invalid", path=str(drop / "Junk.gguf"))
    (drop / "Good.toml").write_text('model = "good"\nparameters = "not a table"\n')
    daemon.wait_for("sidecar.invalid", path=str(drop / "Good.gguf"))

    rows = wait_until(
        lambda: (r := _status(capsys, tmp_path)) and "Half.gguf" in r and r,
        what="a status row for the pending file",
    )
    assert rows["Half.gguf"]["state"] == "pending"
    assert "incomplete" in rows["Half.gguf"]["note"]
    assert rows["Junk.gguf"]["state"] == "refused"
    assert "fix" in rows["Junk.gguf"]["note"]
    good = rows["Good.gguf"]
    assert good["state"] == "refused" and "parameters" in good["note"]


def test_status_shows_a_host_waiting_for_its_retry(
    start: Any, drop: Path, tmp_path: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    build_gguf(drop / "Later.gguf")
    emulator.stop()
    daemon = start()
    daemon.wait_for("retry.scheduled")
    row = _status(capsys, tmp_path)["Later.gguf"]
    assert row["state"] == "waiting"
    assert row["next_retry_in"] is not None and row["last_error"]

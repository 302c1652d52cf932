"""``dropzone doctor`` on a host whose models folder is on this machine (issue 17): the method
``auto`` would use and why, write access to the blobs folder, the group the store needs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from read_only import read_only

from dropzone.cli import main
from dropzone.testing.ollama import Emulator


def _doctor(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, host: str, on_success: str = "keep"
) -> tuple[int, dict[str, Any]]:
    (tmp_path / "drop").mkdir(exist_ok=True)
    config = tmp_path / "dropzone.toml"
    config.write_text(
        f'drop_dir = "{tmp_path / "drop"}"\nstate_dir = "{tmp_path / "state"}"\n'
        f'on_success = "{on_success}"\nollama_hosts = [{host}]\n'
    )
    code = main(["doctor", "--json", "--config", str(config)])
    findings = json.loads(capsys.readouterr().out)
    (local,) = [f for f in findings if f["check"].startswith("local import")]
    return code, local


def test_doctor_reports_the_method_and_why(
    tmp_path: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    host = f'{{ url = "{emulator.url}", models_dir = "{emulator.root}" }}'
    code, local = _doctor(capsys, tmp_path, host, on_success="delete")
    assert code == 0 and local["status"] == "ok"
    detail = local["detail"]
    assert detail.startswith("auto: ")
    assert "same file system" in detail and "link" in detail and "copy" in detail
    assert "writable" in detail and "blobs group" in detail


def test_doctor_warns_when_the_blobs_folder_is_not_writable(
    tmp_path: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    host = f'{{ url = "{emulator.url}", models_dir = "{emulator.root}" }}'
    with read_only(emulator.root / "blobs"):
        _, local = _doctor(capsys, tmp_path, host)
    assert local["status"] == "warning"
    assert "not writable" in local["detail"] and "HTTP" in local["detail"]
    assert "ollama" in local["fix"] and "ReadWritePaths" in local["fix"]

"""``dropzone doctor`` against the emulator over real HTTP, on real folders, with deliberate
misconfigurations; plus its pure verdicts (versions, inotify limits, free space)."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dropzone.cli import main
from dropzone.commands._diagnosis import (
    Status,
    check_inotify,
    space_finding,
    version_finding,
)
from dropzone.fs import info as fsinfo
from dropzone.fs.info import FileInfo, FolderSurvey, InotifyLimits
from dropzone.store.state import MIGRATIONS, StateStore
from dropzone.testing.builders import build_gguf, build_split_gguf
from dropzone.testing.ollama import Emulator

Findings = list[dict[str, Any]]


@pytest.fixture(autouse=True)
def _no_outside_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("DROPZONE_") or name in ("OLLAMA_HOST", "STATE_DIRECTORY"):
            monkeypatch.delenv(name)


def write_config(tmp_path: Path, **keys: Any) -> str:
    values: dict[str, Any] = {
        "drop_dir": str(tmp_path / "drop"),
        "state_dir": str(tmp_path / "state"),
        **keys,
    }
    path = tmp_path / "dropzone.toml"
    path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    return str(path)


@pytest.fixture
def drop(tmp_path: Path) -> Path:
    folder = tmp_path / "drop"
    folder.mkdir()
    return folder


def doctor(capsys: pytest.CaptureFixture[str], config: str) -> tuple[int, Findings]:
    code = main(["doctor", "--json", "--config", config])
    return code, json.loads(capsys.readouterr().out)


def finding(findings: Findings, check: str) -> dict[str, Any]:
    matches = [f for f in findings if f["check"] == check]
    assert len(matches) == 1, (check, findings)
    return matches[0]


def problems(findings: Findings) -> list[str]:
    return [f["check"] for f in findings if not f["ok"]]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_a_healthy_setup_passes(
    tmp_path: Path, drop: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    (drop / "sub").mkdir()
    build_gguf(drop / "sub" / "m.gguf")
    config = write_config(tmp_path, ollama_hosts=[emulator.url], on_success="move")
    code, findings = doctor(capsys, config)
    assert problems(findings) == []
    assert code == 0
    assert finding(findings, f"ollama {emulator.url}")["detail"] == "version 0.33.0"
    assert "readable and writable" in finding(findings, "drop folder")["detail"]
    assert finding(findings, "file system")["detail"]
    assert "2 needed" in finding(findings, "inotify watches")["detail"]  # drop and drop/sub
    assert "rename on the same file system" in finding(findings, "free space")["detail"]
    assert "will create it" in finding(findings, "state store")["detail"]
    assert set(findings[0]) == {"check", "ok", "status", "detail", "fix"}
    assert list(drop.iterdir()) == [drop / "sub"]  # the probe files are gone


def test_native_events_are_probed_for_real(
    tmp_path: Path, drop: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    _, findings = doctor(capsys, write_config(tmp_path, ollama_hosts=[emulator.url]))
    # Local disks deliver inotify events; a CI runner on an overlay may not: then a warning.
    native = finding(findings, "native events")
    assert native["status"] in ("ok", "warning")
    if native["status"] == "warning":
        assert native["fix"] == "set poll_interval = 2 to make polling explicit"
    else:
        assert "arrived" in native["detail"]


def test_polling_configured_skips_the_probe_and_the_limits(
    tmp_path: Path, drop: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, ollama_hosts=[emulator.url], poll_interval=3)
    code, findings = doctor(capsys, config)
    assert code == 0
    assert "polling every 3 s" in finding(findings, "native events")["detail"]
    assert finding(findings, "inotify")["detail"] == "not used: polling"


def test_an_existing_current_state_store_is_ok(
    tmp_path: Path, drop: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    with StateStore.open(tmp_path / "state") as store:
        store.upsert_artifact("m.gguf", kind="gguf", fingerprint="f")
    code, findings = doctor(capsys, write_config(tmp_path, ollama_hosts=[emulator.url]))
    assert code == 0
    detail = finding(findings, "state store")["detail"]
    assert f"schema version {len(MIGRATIONS)} (current), 1 artifact(s)" in detail


def test_a_stopped_host_and_a_closed_port_are_problems_with_a_fix(
    tmp_path: Path, drop: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    down_url = emulator.url
    emulator.stop()
    closed = f"http://127.0.0.1:{closed_port()}"
    with Emulator(tmp_path / "other") as up:
        config = write_config(tmp_path, ollama_hosts=[down_url, closed, up.url])
        code, findings = doctor(capsys, config)
    assert code == 1
    assert problems(findings) == [f"ollama {down_url}", f"ollama {closed}"]
    for url in (down_url, closed):
        host = finding(findings, f"ollama {url}")
        assert host["detail"].startswith("unreachable: ")
        assert "start Ollama" in host["fix"]


def test_https_to_a_plain_http_server_is_a_problem_naming_the_scheme(
    tmp_path: Path, drop: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    url = emulator.url.replace("http://", "https://")
    code, findings = doctor(capsys, write_config(tmp_path, ollama_hosts=[url]))
    assert code == 1
    host = finding(findings, f"ollama {url}")
    assert "SSL" in host["detail"]
    assert "check the scheme" in host["fix"]


def test_text_output_shows_each_problem_with_its_fix(
    tmp_path: Path, drop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    code = main(["doctor", "--config", write_config(tmp_path, ollama_hosts=[url])])
    out = capsys.readouterr().out.splitlines()
    assert code == 1
    first = next(i for i, line in enumerate(out) if line.startswith("problem"))
    assert f"ollama {url}" in out[first]
    assert out[first + 1].lstrip().startswith("fix: start Ollama")
    assert out[-1].startswith("1 problem, ")


def test_a_server_older_than_0_30_is_a_warning(
    tmp_path: Path, drop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Emulator(tmp_path / "ollama", version="0.29.1") as old:
        code, findings = doctor(capsys, write_config(tmp_path, ollama_hosts=[old.url]))
        host = finding(findings, f"ollama {old.url}")
    assert code == 0
    assert host["status"] == "warning"
    assert "no split GGUF support" in host["detail"]
    assert "0.30.0 or newer" in host["fix"]


def test_split_shards_on_a_server_older_than_0_30_are_a_problem(
    tmp_path: Path, drop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build_split_gguf(drop, "big", 2)
    with Emulator(tmp_path / "ollama", version="0.29.1") as old:
        code, findings = doctor(capsys, write_config(tmp_path, ollama_hosts=[old.url]))
        host = finding(findings, f"ollama {old.url}")
    assert code == 1
    assert "split GGUF needs Ollama 0.30.0" in host["detail"]
    assert "big-00001-of-00002.gguf and 1 more" in host["detail"]


@pytest.mark.parametrize("kind", ["missing", "a file"])
def test_a_drop_folder_that_is_not_a_folder_is_a_problem(
    kind: str, tmp_path: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    if kind == "a file":
        (tmp_path / "drop").write_text("oops")
    code, findings = doctor(capsys, write_config(tmp_path, ollama_hosts=[emulator.url]))
    assert code == 1
    assert problems(findings) == ["drop folder"]
    drop_finding = finding(findings, "drop folder")
    if kind == "missing":
        assert drop_finding["detail"].endswith("does not exist")
        assert f"mkdir -p {tmp_path / 'drop'}" in drop_finding["fix"]
    else:
        assert drop_finding["detail"].endswith("is not a directory")
    # Nothing that needs the folder ran on it.
    assert not any(f["check"] == "native events" for f in findings)


def _doctor_on_read_only_drop(drop: Path, config: str) -> tuple[int, Findings]:
    """Run doctor where creating files in ``drop`` fails, as an operator would meet it."""
    if os.geteuid() != 0:
        drop.chmod(0o555)
        try:
            result = subprocess.run(
                [sys.executable, "-m", "dropzone", "doctor", "--json", "--config", config],
                capture_output=True,
                text=True,
                check=False,
            )
        finally:
            drop.chmod(0o755)
    else:
        # root ignores permission bits: make the folder a read-only bind mount instead, in a
        # private mount namespace that vanishes with the process.
        script = (
            'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" || exit 99\nshift; exec "$@"'
        )
        unshare = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]
        command = [sys.executable, "-m", "dropzone", "doctor", "--json", "--config", config]
        result = subprocess.run(
            [*unshare, str(drop), *command],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode == 99 or "unshare:" in result.stderr:
            pytest.skip(f"running as root without a way to mount read-only: {result.stderr}")
    return result.returncode, json.loads(result.stdout)


def test_a_read_only_drop_folder_with_on_success_move_is_a_problem(
    tmp_path: Path, drop: Path, emulator: Emulator
) -> None:
    config = write_config(tmp_path, ollama_hosts=[emulator.url], on_success="move")
    code, findings = _doctor_on_read_only_drop(drop, config)
    assert code == 1
    assert problems(findings) == ["drop folder"]
    drop_finding = finding(findings, "drop folder")
    assert "cannot create files in" in drop_finding["detail"]
    assert "on_success = 'move'" in drop_finding["detail"]
    assert 'on_success = "keep"' in drop_finding["fix"]
    assert finding(findings, "native events")["detail"].startswith("not probed")
    if os.geteuid() == 0:  # the bind mount is the longest mount point prefix of the folder
        assert f"mounted at {drop}" in finding(findings, "file system")["detail"]


def test_a_read_only_drop_folder_is_enough_to_keep_files(
    tmp_path: Path, drop: Path, emulator: Emulator
) -> None:
    config = write_config(tmp_path, ollama_hosts=[emulator.url], on_success="keep")
    code, findings = _doctor_on_read_only_drop(drop, config)
    assert code == 0
    assert "enough for on_success = 'keep'" in finding(findings, "drop folder")["detail"]


def test_a_file_where_the_state_dir_should_be_is_a_problem(
    tmp_path: Path, drop: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "state").write_text("not a folder")
    code, findings = doctor(capsys, write_config(tmp_path, ollama_hosts=[emulator.url]))
    assert code == 1
    assert problems(findings) == ["state store"]
    state = finding(findings, "state store")
    assert "is not a directory" in state["detail"]
    assert "point state_dir at a directory" in state["fix"]


def test_a_state_dir_below_a_file_is_a_problem(
    tmp_path: Path, drop: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "blocker").write_text("")
    config = write_config(
        tmp_path, ollama_hosts=[emulator.url], state_dir=str(tmp_path / "blocker" / "state")
    )
    code, findings = doctor(capsys, config)
    assert code == 1
    assert "cannot be created" in finding(findings, "state store")["detail"]


def test_a_state_store_from_a_newer_dropzone_is_a_problem(
    tmp_path: Path, drop: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    StateStore.open(tmp_path / "state").close()
    conn = sqlite3.connect(tmp_path / "state" / "state.sqlite3")
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    code, findings = doctor(capsys, write_config(tmp_path, ollama_hosts=[emulator.url]))
    assert code == 1
    state = finding(findings, "state store")
    assert "schema version 99, written by a newer dropzone" in state["detail"]
    assert "upgrade dropzone" in state["fix"]


def test_a_damaged_state_store_is_a_problem(
    tmp_path: Path, drop: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "state.sqlite3").write_bytes(b"this is not SQLite" * 100)
    code, findings = doctor(capsys, write_config(tmp_path, ollama_hosts=[emulator.url]))
    assert code == 1
    assert "is unusable" in finding(findings, "state store")["detail"]


def test_bad_configuration_exits_2_with_one_line_per_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('poll_interval = -1\non_success = "shred"\n')
    assert main(["doctor", "--config", str(config)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2
    assert all(line.startswith("dropzone: ") for line in err)


# -- pure verdicts --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "shards", "status"),
    [
        ("0.33.0", [], Status.OK),
        ("0.33.0", ["a-00001-of-00002.gguf"], Status.OK),
        ("0.30.0", ["a-00001-of-00002.gguf"], Status.OK),
        ("0.29.9", [], Status.WARNING),
        ("0.29.9", ["a-00001-of-00002.gguf"], Status.PROBLEM),
        ("0.0.0", ["a-00001-of-00002.gguf"], Status.OK),  # a source build is current
        ("weird", [], Status.OK),
    ],
)
def test_version_verdicts(version: str, shards: list[str], status: Status) -> None:
    assert version_finding("h", version, shards).status is status


def _survey(folders: int) -> FolderSurvey:
    return FolderSurvey(dev=1, folders=folders, files=(), unreadable=0)


@pytest.mark.parametrize(
    ("folders", "watches", "status"),
    [
        (10, 8192, Status.OK),
        (5000, 8192, Status.WARNING),  # over half the per-user limit
        (8191, 8192, Status.WARNING),
        (8192, 8192, Status.PROBLEM),  # the drop folder itself needs a watch too
        (10, None, Status.WARNING),  # unknown under ProcSubset=pid
    ],
)
def test_watch_limit_verdicts(folders: int, watches: int | None, status: Status) -> None:
    found = list(check_inotify(0, _survey(folders), InotifyLimits(watches, 128, None)))
    assert found[0].check == "inotify watches"
    assert found[0].status is status
    if status is Status.PROBLEM:
        assert "fs.inotify.max_user_watches=524288" in found[0].fix


@pytest.mark.parametrize(
    ("instances", "status"), [(128, Status.OK), (4, Status.WARNING), (None, Status.WARNING)]
)
def test_instance_limit_verdicts(instances: int | None, status: Status) -> None:
    found = list(check_inotify(0, _survey(1), InotifyLimits(8192, instances, "x")))
    assert found[1].check == "inotify instances"
    assert found[1].status is status


def test_moves_on_one_file_system_need_no_space() -> None:
    files = [FileInfo("big.gguf", 10**12, dev=7)]
    assert space_finding(free=0, target_dev=7, files=files).status is Status.OK


def test_a_file_on_another_file_system_needs_its_size_free() -> None:
    files = [FileInfo("mnt/big.gguf", 1000, dev=8), FileInfo("small.gguf", 10, dev=8)]
    short = space_finding(free=999, target_dev=7, files=files)
    assert short.status is Status.PROBLEM
    assert "mnt/big.gguf" in short.detail
    assert space_finding(free=1000, target_dev=7, files=files).status is Status.OK


def test_the_bundled_emulator_host_is_not_probed_but_named_with_its_store(
    tmp_path: Path, drop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Started by "dropzone run" only (issue 15): there is no server to reach before that.
    store = tmp_path / "emulator"
    config = write_config(tmp_path, ollama_hosts=[f"emulator:{store}"])
    _, findings = doctor(capsys, config)
    host = finding(findings, f"ollama emulator:{store}")
    assert host["status"] == "ok"
    assert str(store) in host["detail"]


def test_an_nfs_drop_folder_is_reported_polled_as_the_daemon_will(
    tmp_path: Path,
    drop: Path,
    emulator: Emulator,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The mount table says NFS (a test has no NFS server): doctor decides as the daemon does.
    table = tmp_path / "mountinfo"
    table.write_text(
        "22 1 8:1 / / rw - ext4 /dev/vda1 rw\n"
        f"40 22 0:52 / {drop} rw - nfs4 nas:/export rw\n"
    )
    monkeypatch.setattr(fsinfo, "MOUNTINFO", table)
    _, findings = doctor(capsys, write_config(tmp_path, ollama_hosts=[emulator.url]))
    assert finding(findings, "file system")["status"] == "ok"
    assert "polled (watch_mode = auto)" in finding(findings, "file system")["detail"]
    assert finding(findings, "native events")["detail"] == "not used: polling every 2 s"
    assert finding(findings, "inotify")["detail"] == "not used: polling"

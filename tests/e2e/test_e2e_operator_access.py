"""``status`` and ``doctor`` run by an operator: a real non-root member of the service's group,
against a store the real daemon wrote, in the shipped layout (issue 15).

The layout is the one ``systemd/dropzone.service`` makes: the state folder is
``StateDirectoryMode=0750`` owned by the service user and its group, the daemon runs with that
group and ``UMask=0027``, so the database and its ``-wal``/``-shm`` files are ``0640``. Here the
daemon runs as root with the test group as its group (``setpriv --regid``), which gives the
files the same owner group and modes. The operator is a user made for the test, whose only
group is that one; it can read the folder but never write it.
"""

from __future__ import annotations

import grp
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from dropzone_process import DropzoneProcess, clean_environment

import dropzone
from dropzone.testing.builders import build_gguf
from dropzone.testing.ollama import Emulator

TOOLS = ("useradd", "userdel", "groupadd", "groupdel", "runuser", "setpriv")
REPO = Path(dropzone.__file__).resolve().parent.parent


@dataclass
class Operator:
    user: str
    group: str
    gid: int
    python: list[str]  # an interpreter this user may run, with dropzone importable
    env: dict[str, str]

    def dropzone(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["runuser", "-u", self.user, "--", *self.python, "-m", "dropzone", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def _interpreter_for(user: str, env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """This interpreter if the user may run it; else the system's python3 of the same version
    with this environment's packages on its path (a pyenv under /root is closed to others)."""
    site = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    candidates = [
        ([sys.executable], dict(env)),
        (["/usr/bin/python3"], {**env, "PYTHONPATH": f"{REPO}{os.pathsep}{site}"}),
    ]
    want = f"{sys.version_info.major}.{sys.version_info.minor}"
    probe = "import sys, dropzone; print('%d.%d' % sys.version_info[:2])"
    for python, python_env in candidates:
        done = subprocess.run(
            ["runuser", "-u", user, "--", *python, "-c", probe],
            env=python_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode == 0 and done.stdout.strip() == want:
            return python, python_env
    pytest.skip(f"no Python {want} with dropzone that the user {user} may run")


@pytest.fixture
def operator() -> Iterator[Operator]:
    if os.geteuid() != 0:
        pytest.skip("needs root: the test creates a user and a group")
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} to act as another user")
    suffix = secrets.token_hex(3)
    name, group = "dzop" + suffix, "dzgrp" + suffix  # userdel would remove a group named alike
    subprocess.run(["groupadd", group], check=True)
    try:
        subprocess.run(
            [
                "useradd",
                "--no-create-home",
                "--no-user-group",
                "--gid",
                group,
                "--shell",
                "/usr/sbin/nologin",
                name,
            ],
            check=True,
        )
        try:
            env = clean_environment({"HOME": "/", "LC_ALL": "C.UTF-8"})
            env.pop("PYTHONPATH", None)
            python, python_env = _interpreter_for(name, env)
            yield Operator(name, group, grp.getgrnam(group).gr_gid, python, python_env)
        finally:
            subprocess.run(["userdel", name], check=True)
    finally:
        subprocess.run(["groupdel", group], check=True)


@pytest.fixture
def layout(operator: Operator) -> Iterator[Path]:
    """A folder anyone may enter (``tmp_path`` is root's own): config, drop and state."""
    base = Path(tempfile.mkdtemp(prefix="dropzone-operator-"))
    try:
        base.chmod(0o755)
        (base / "drop").mkdir(mode=0o755)
        state = base / "state"
        state.mkdir()
        os.chown(state, 0, operator.gid)
        state.chmod(0o750)
        yield base
    finally:
        shutil.rmtree(base)


def _daemon(base: Path, operator: Operator, emulator: Emulator) -> DropzoneProcess:
    env = clean_environment(
        {
            "DROPZONE_CONFIG": str(base / "dropzone.toml"),
            "DROPZONE_OLLAMA_HOSTS": emulator.url,
            "DROPZONE_SETTLE_SECONDS": "0.2",
            "DROPZONE_LOG_FORMAT": "json",
        }
    )
    # As systemd starts it: Group= the service group, UMask=0027.
    program = [
        "setpriv",
        f"--regid={operator.gid}",
        "--clear-groups",
        sys.executable,
        "-c",
        "import os, sys; os.umask(0o027); from dropzone.cli import main; sys.exit(main())",
    ]
    return DropzoneProcess(["run"], env, base / "daemon.stderr", program=program)


def _rows(done: subprocess.CompletedProcess[str]) -> list[dict[str, object]]:
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    rows: list[dict[str, object]] = json.loads(done.stdout)
    return rows


def _state_finding(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert "Traceback" not in done.stderr, done.stderr
    findings = json.loads(done.stdout)
    return next(f for f in findings if f["check"] == "state store")


def test_an_operator_in_the_group_reads_status_and_doctor_while_the_daemon_runs_and_after(
    operator: Operator, layout: Path, emulator: Emulator
) -> None:
    config = layout / "dropzone.toml"
    config.write_text(f'drop_dir = "{layout / "drop"}"\nstate_dir = "{layout / "state"}"\n')
    config.chmod(0o644)
    old = time.time() - 3600
    gguf = build_gguf(layout / "drop" / "Tiny.gguf")
    os.utime(gguf, (old, old))

    daemon = _daemon(layout, operator, emulator)
    try:
        daemon.wait_for("artifact.done", model="tiny:latest", timeout=30)
        for name in os.listdir(layout / "state"):
            mode = (layout / "state" / name).stat().st_mode & 0o777
            assert mode & 0o040, f"{name} is not group-readable: {oct(mode)}"

        # While the daemon runs: -wal and -shm exist, readable by the group, not writable.
        rows = _rows(operator.dropzone("status", "--json", "--config", str(config)))
        assert [(r["path"], r["state"]) for r in rows] == [("Tiny.gguf", "done")]
        doctor = operator.dropzone("doctor", "--json", "--config", str(config))
        assert _state_finding(doctor)["status"] != "problem", doctor.stdout
    finally:
        daemon.send(signal.SIGTERM)
        assert daemon.wait_exit(10) == 0, daemon.transcript()
        daemon.close()

    # Stopped cleanly: SQLite removed -wal and -shm, and the operator cannot create them.
    assert not [n for n in os.listdir(layout / "state") if n.endswith(("-wal", "-shm"))]
    rows = _rows(operator.dropzone("status", "--json", "--config", str(config)))
    assert [(r["path"], r["state"]) for r in rows] == [("Tiny.gguf", "done")]
    table = operator.dropzone("status", "--config", str(config))
    assert table.returncode == 0 and "Tiny.gguf" in table.stdout, table.stdout + table.stderr
    doctor = operator.dropzone("doctor", "--json", "--config", str(config))
    assert _state_finding(doctor)["status"] != "problem", doctor.stdout


def test_a_state_folder_the_operator_cannot_enter_is_one_message_with_the_fix(
    operator: Operator, layout: Path, emulator: Emulator
) -> None:
    config = layout / "dropzone.toml"
    config.write_text(f'drop_dir = "{layout / "drop"}"\nstate_dir = "{layout / "state"}"\n')
    config.chmod(0o644)
    daemon = _daemon(layout, operator, emulator)
    try:
        daemon.wait_for("scan.done", timeout=30)
    finally:
        daemon.send(signal.SIGTERM)
        assert daemon.wait_exit(10) == 0, daemon.transcript()
        daemon.close()
    (layout / "state").chmod(0o700)  # the layout shipped before issue 15

    status = operator.dropzone("status", "--config", str(config))
    assert "Traceback" not in status.stderr, status.stderr
    assert status.returncode == 2, status.stdout + status.stderr
    lines = status.stderr.splitlines()
    assert len(lines) == 1, status.stderr
    assert operator.user in lines[0] and "StateDirectoryMode=0750" in lines[0], lines[0]

    doctor = operator.dropzone("doctor", "--json", "--config", str(config))
    finding = _state_finding(doctor)
    assert doctor.returncode == 1
    assert finding["status"] == "problem"
    assert "StateDirectoryMode=0750" in finding["fix"], finding

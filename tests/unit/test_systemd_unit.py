"""The systemd integration in systemd/: the unit verifies, its sandbox scores "OK", the
sysusers/tmpfiles snippets make the shared drop folder, and Python runs under its seccomp rules.

systemd-analyze must be installed (Debian package ``systemd``; .ci/run installs it): these
tests fail rather than skip without it, so CI cannot pass while checking nothing.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "systemd"
UNIT = SYSTEMD / "dropzone.service"
SYSUSERS = SYSTEMD / "dropzone.sysusers"
TMPFILES = SYSTEMD / "dropzone.tmpfiles"
ENV_EXAMPLE = SYSTEMD / "dropzone.env.example"
CONFIG = ROOT / "config" / "dropzone.toml"

INSTALLED_EXECUTABLE = "/opt/dropzone/.venv/bin/dropzone"
MAX_EXPOSURE = 2.0  # systemd-analyze calls <= 2.0 "OK"; the README records the measured score


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail(
            "systemd-analyze is missing: apt-get install systemd (Debian), as .ci/run does",
            pytrace=False,
        )
    return path


def unit_settings(text: str) -> dict[tuple[str, str], list[str]]:
    """(section, key) -> every value assigned, in order (systemd keys may repeat)."""
    settings: dict[tuple[str, str], list[str]] = defaultdict(list)
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        settings[section, key.strip()].append(value.strip())
    return settings


def service(key: str) -> list[str]:
    return unit_settings(UNIT.read_text())["Service", key]


def verify(unit: Path) -> list[str]:
    """Problems systemd-analyze verify finds in ``unit``: its exit status is 0 even for unknown
    keys or unparsable values, so the warnings it prints about the unit count as failures."""
    result = subprocess.run(
        [systemd_analyze(), "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    problems = [
        line for line in result.stderr.splitlines() if str(unit.parent) in line or unit.name in line
    ]
    if result.returncode != 0:
        problems.append(f"exit status {result.returncode}: {result.stderr.strip()}")
    return problems


def installable_copy(tmp_path: Path) -> Path:
    """The unit with its ExecStart= pointing at this checkout's console script instead of
    /opt/dropzone, which does not exist here; verify checks that executables exist."""
    here = Path(sys.executable).with_name("dropzone")
    assert here.is_file(), f"{here} missing: install the project into the venv (pip install -e .)"
    text = UNIT.read_text()
    assert text.count(INSTALLED_EXECUTABLE) == 1
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(INSTALLED_EXECUTABLE, str(here)))
    return copy


# --- systemd-analyze ------------------------------------------------------------------------


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    assert verify(installable_copy(tmp_path)) == []


def test_verify_reports_what_systemd_would_ignore(tmp_path: Path) -> None:
    # The check above is only worth something if a unit systemd half-ignores fails it.
    copy = installable_copy(tmp_path)
    copy.write_text(copy.read_text().replace("ProtectSystem=strict", "ProtectSystem=strikt"))
    assert any("protect system" in problem.lower() for problem in verify(copy))


def test_unit_exposure_score_is_ok() -> None:
    result = subprocess.run(
        [systemd_analyze(), "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", result.stdout)
    assert found, result.stdout + result.stderr
    score = float(found.group(1))
    print(f"systemd-analyze security exposure: {score} {found.group(2)}")
    assert score <= MAX_EXPOSURE, result.stdout


# --- what the unit promises ----------------------------------------------------------------


def test_unit_is_a_notify_service_with_a_watchdog_that_restarts_on_failure() -> None:
    assert service("Type") == ["notify"]
    assert service("NotifyAccess") == ["main"]
    assert len(service("WatchdogSec")) == 1
    assert service("Restart") == ["on-failure"]
    command = f"{INSTALLED_EXECUTABLE} run --config /etc/dropzone/dropzone.toml"
    assert service("ExecStart") == [command]
    assert service("ExecReload") == ["/bin/kill -HUP $MAINPID"]
    assert service("KillMode") == ["mixed"]
    assert service("KillSignal") == ["SIGTERM"]
    assert len(service("TimeoutStopSec")) == 1


def test_unit_runs_as_the_sysusers_user_and_writes_only_state_and_drop_folder() -> None:
    sysusers = [line.split() for line in SYSUSERS.read_text().splitlines() if line[:2] == "u "]
    assert service("User") == [sysusers[0][1]] == ["dropzone"]
    assert service("Group") == ["dropzone"]
    assert service("StateDirectory") == ["dropzone"]
    assert service("ReadWritePaths") == ["/srv/dropzone"]
    assert service("ProtectSystem") == ["strict"]
    assert service("DynamicUser") == []
    for writable in ("CacheDirectory", "LogsDirectory", "RuntimeDirectory", "BindPaths"):
        assert service(writable) == [], writable


# What systemd-analyze security may find open, each for a reason the unit states under "Not
# set, on purpose" or beside the key. Every other check of its list must pass: a protection
# removed, misspelt or overridden shows up as a new name here, whatever the key's spelling.
ACCEPTED_GAPS = {
    "RootDirectory=/RootImage=": "the venv and Python live on the host's root",
    "RestrictAddressFamilies=~AF_UNIX": "the notify socket and journald",
    "RestrictAddressFamilies=~AF_(INET|INET6)": "Ollama hosts are reached over the network",
    "PrivateNetwork=": "Ollama hosts may be anywhere",
    "IPAddressDeny=": "their addresses come from the configuration",
    "PrivateUsers=": "dropped files would all appear owned by nobody",
    "DeviceAllow=": "PrivateDevices= keeps /dev/rtc readable",
    "UMask=": "0027: the group reads the state store (dropzone status as an operator)",
}


def security_checks(unit: Path) -> list[dict[str, object]]:
    result = subprocess.run(
        [systemd_analyze(), "security", "--offline=true", "--no-pager", "--json=short", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    checks: list[dict[str, object]] = json.loads(result.stdout)
    return checks


def open_gaps(unit: Path) -> set[str]:
    """The checks systemd-analyze counts against the unit (a non-zero exposure)."""
    return {str(c["name"]) for c in security_checks(unit) if c["exposure"]}


def test_the_sandbox_leaves_open_only_what_the_unit_explains() -> None:
    assert open_gaps(UNIT) == set(ACCEPTED_GAPS)


def test_a_protection_taken_out_of_the_unit_is_noticed(tmp_path: Path) -> None:
    # The check above is only worth something if systemd's own reading of the unit changes
    # when a protection goes: take two out (one of them misspelt, as a typo would).
    weakened = tmp_path / UNIT.name
    text = UNIT.read_text().replace("ProtectKernelModules=yes\n", "")
    weakened.write_text(text.replace("ProtectHome=yes", "ProtectHome=yse"))
    assert open_gaps(weakened) - set(ACCEPTED_GAPS) == {
        "ProtectKernelModules=",
        "ProtectHome=",
    }


def test_bad_configuration_ends_with_a_status_the_unit_does_not_restart_on(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "dropzone.toml"
    bad.write_text("settle_seconds = -1\n")
    done = subprocess.run(
        [sys.executable, "-m", "dropzone", "run", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0, done.stdout
    assert service("RestartPreventExitStatus") == [str(done.returncode)], done.stderr


def test_secrets_come_from_the_environment_file_never_from_the_unit() -> None:
    assert service("EnvironmentFile") == ["-/etc/dropzone/dropzone.env"]
    assert all(not value.startswith("DROPZONE_") for value in service("Environment"))
    values = [v for vs in unit_settings(UNIT.read_text()).values() for v in vs]
    assert not [v for v in values if re.search(r"bearer|token|authorization", v, re.I)]


def test_drop_folder_agrees_across_unit_tmpfiles_and_configuration() -> None:
    created = {
        line.split()[1]: line.split()
        for line in TMPFILES.read_text().splitlines()
        if line[:2] == "d "
    }
    drop_dir = tomllib.loads(CONFIG.read_text())["drop_dir"]
    assert service("ReadWritePaths") == [drop_dir]
    assert created[drop_dir][2:5] == ["2770", "dropzone", "dropzone"]
    config_dir = str(Path(service("ExecStart")[0].split("--config ")[1]).parent)
    assert config_dir in created


def test_environment_file_example_sets_only_known_variables() -> None:
    assigned = [
        line.split("=", 1)[0].removeprefix("#").strip()
        for line in ENV_EXAMPLE.read_text().splitlines()
        if re.match(r"#?\s*[A-Z_]+=", line)
    ]
    assert assigned
    assert all(name == "OLLAMA_HOST" or name.startswith("DROPZONE_") for name in assigned)


# --- sysusers.d and tmpfiles.d, applied to a scratch root -----------------------------------


@pytest.fixture
def scratch_root(tmp_path: Path) -> Path:
    """A root with the dropzone user (systemd-sysusers) and folders (systemd-tmpfiles)."""
    if os.geteuid() != 0:
        pytest.skip("systemd-tmpfiles needs root to chown (CI runs as root)")
    systemd_analyze()  # the same package provides both tools; fail clearly if it is missing
    (tmp_path / "etc").mkdir()
    for command in (
        ["systemd-sysusers", f"--root={tmp_path}", str(SYSUSERS)],
        ["systemd-tmpfiles", f"--root={tmp_path}", "--create", str(TMPFILES)],
    ):
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
    return tmp_path


def passwd_ids(root: Path, name: str) -> tuple[int, int]:
    for line in (root / "etc" / "passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return int(fields[2]), int(fields[3])
    raise AssertionError(f"no user {name} in {root}/etc/passwd")


def test_tmpfiles_makes_a_group_writable_setgid_drop_folder(scratch_root: Path) -> None:
    uid, gid = passwd_ids(scratch_root, "dropzone")
    assert 0 < uid < 1000  # a system user
    drop = (scratch_root / "srv" / "dropzone").stat()
    assert (drop.st_uid, drop.st_gid) == (uid, gid)
    assert stat.S_IMODE(drop.st_mode) == 0o2770
    config = (scratch_root / "etc" / "dropzone").stat()
    assert (config.st_uid, config.st_gid, stat.S_IMODE(config.st_mode)) == (0, gid, 0o750)


def test_tmpfiles_makes_the_environment_file_root_only(scratch_root: Path) -> None:
    env = scratch_root / "etc" / "dropzone" / "dropzone.env"
    env.write_text("DROPZONE_OLLAMA_HOSTS=secret\n")
    env.chmod(0o644)
    subprocess.run(
        ["systemd-tmpfiles", f"--root={scratch_root}", "--create", str(TMPFILES)],
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert stat.S_IMODE(env.stat().st_mode) == 0o600


def test_folders_operators_create_in_the_drop_folder_stay_group_writable(
    scratch_root: Path,
) -> None:
    drop = scratch_root / "srv" / "dropzone"
    try:
        os.getxattr(drop, "system.posix_acl_default")
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            pytest.skip("this file system has no POSIX ACLs (tmpfiles skips the a+ line too)")
        raise
    previous = os.umask(0o022)  # an operator's usual umask, which would drop group write
    try:
        (drop / "my-finetune").mkdir()
        (drop / "my-finetune" / "config.json").write_text("{}")
    finally:
        os.umask(previous)
    for created in (drop / "my-finetune", drop / "my-finetune" / "config.json"):
        info = created.stat()
        assert info.st_mode & stat.S_IWGRP, created
        assert info.st_gid == drop.stat().st_gid, created  # setgid: the group follows the folder


# --- MemoryDenyWriteExecute= ----------------------------------------------------------------

# The seccomp rule systemd 252 (Debian 12) installs for MemoryDenyWriteExecute=yes, built by
# hand: EPERM for mmap(PROT_WRITE|PROT_EXEC), mprotect/pkey_mprotect(PROT_EXEC) and
# shmat(SHM_EXEC). It is installed in a child Python, which then execs the probe below.
_ARCHES = {  # machine: (AUDIT_ARCH, mmap, mprotect, pkey_mprotect, shmat)
    "x86_64": (0xC000003E, 9, 10, 329, 30),
    "aarch64": (0xC00000B7, 222, 226, 288, 196),
}

_INSTALL_FILTER = r"""
import ctypes, os, struct, sys
arch, mmap_nr, mprotect_nr, pkey_nr, shmat_nr = map(int, sys.argv[1:6])
PROT_WRITE, PROT_EXEC, SHM_EXEC = 0x2, 0x4, 0o100000
ALLOW, DENY = 0x7FFF0000, 0x00050000 | 1  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO | EPERM
def ld(offset): return (0x20, 0, 0, offset)  # BPF_LD|BPF_W|BPF_ABS: seccomp_data field
def jeq(k, jt, jf): return (0x15, jt, jf, k)
def band(k): return (0x54, 0, 0, k)
def ret(k): return (0x06, 0, 0, k)
def deny_if_bits(nrs, arg, bits):  # if nr in nrs and args[arg] & bits == bits: EPERM
    out = [ld(0)]
    for i, nr in enumerate(nrs):
        out.append(jeq(nr, len(nrs) - 1 - i, 4 if i == len(nrs) - 1 else 0))
    return out + [ld(16 + 8 * arg), band(bits), jeq(bits, 0, 1), ret(DENY)]
prog = [ld(4), jeq(arch, 1, 0), ret(ALLOW)]
prog += deny_if_bits([mmap_nr], 2, PROT_WRITE | PROT_EXEC)
prog += deny_if_bits([mprotect_nr, pkey_nr], 2, PROT_EXEC)
prog += deny_if_bits([shmat_nr], 2, SHM_EXEC)
prog.append(ret(ALLOW))
raw = b"".join(struct.pack("HBBI", *insn) for insn in prog)
buf = ctypes.create_string_buffer(raw, len(raw))
class Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
fprog = Fprog(len(prog), ctypes.addressof(buf))
libc = ctypes.CDLL(None, use_errno=True)
ulong = ctypes.c_ulong
libc.prctl.argtypes = [ctypes.c_int, ulong, ctypes.c_void_p, ulong, ulong]
if libc.prctl(38, 1, None, 0, 0) or libc.prctl(22, 2, ctypes.addressof(fprog), 0, 0):
    sys.exit("seccomp: " + os.strerror(ctypes.get_errno()))
os.execv(sys.executable, [sys.executable, *sys.argv[6:]])
"""

# What the daemon does that could need writable+executable memory: import its dependencies
# and every dropzone module, call back from C through ctypes (libffi closures), open SQLite
# in WAL mode, watch a folder with inotify, hash, speak HTTP (and load TLS) through httpx.
_PROBE = r"""
import ctypes, hashlib, http.server, importlib, mmap, pkgutil, sqlite3, ssl, sys, threading
from pathlib import Path
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC).close()
except PermissionError:
    print("seccomp on")
import httpx, pydantic, pydantic_settings, structlog, watchdog.observers, yaml
from watchdog.events import FileSystemEventHandler
import dropzone
for module in pkgutil.walk_packages(dropzone.__path__, "dropzone."):
    if not module.name.startswith(("dropzone.testing", "dropzone.__main__")):
        try:
            importlib.import_module(module.name)
            print("imported", module.name)
        except Exception as exc:  # judged by comparison with a run without the filter
            print("not imported", module.name, type(exc).__name__)
assert ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(lambda x: x + 1)(41) == 42
folder = Path(sys.argv[1])
db = sqlite3.connect(folder / "state.sqlite")
db.execute("PRAGMA journal_mode=WAL")
db.execute("CREATE TABLE t (x)")
db.commit()
db.close()
seen = threading.Event()
class Handler(FileSystemEventHandler):
    def on_any_event(self, event): seen.set()
observer = watchdog.observers.Observer()
observer.schedule(Handler(), str(folder), recursive=True)
observer.start()
(folder / "model.gguf").write_bytes(b"GGUF" * 1024)
assert seen.wait(10), "no file event"
observer.stop()
observer.join()
hashlib.sha256((folder / "model.gguf").read_bytes()).hexdigest()
class Version(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")
    def log_message(self, *args): pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Version)
threading.Thread(target=server.serve_forever, daemon=True).start()
with httpx.Client() as client:
    assert client.get(f"http://127.0.0.1:{server.server_port}/api/version").json() == {}
server.shutdown()
server.server_close()
ssl.create_default_context()
print("probe ok")
"""


@pytest.mark.slow
def test_python_and_dropzone_run_under_memory_deny_write_execute(tmp_path: Path) -> None:
    machine = os.uname().machine
    if machine not in _ARCHES:
        pytest.skip(f"no seccomp syscall table for {machine} in this test")
    probe = tmp_path / "probe.py"
    probe.write_text(_PROBE)
    outputs = []
    for with_filter in (False, True):
        watched = tmp_path / f"watched-{with_filter}"
        watched.mkdir()
        command = [sys.executable, str(probe), str(watched)]
        if with_filter:
            command[1:1] = ["-c", _INSTALL_FILTER, *map(str, _ARCHES[machine])]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, f"filter={with_filter}: {result.stdout}{result.stderr}"
        outputs.append(result.stdout)
    unfiltered, filtered = outputs
    assert filtered.startswith("seccomp on\n")  # the filter is real: W+X mmap was refused
    # A dropzone module that does not import (a teammate's work in progress) fails elsewhere;
    # here only a difference the filter makes counts.
    assert filtered.removeprefix("seccomp on\n") == unfiltered
    assert unfiltered.endswith("probe ok\n")


def test_the_write_execute_filter_refuses_a_writable_executable_mapping(tmp_path: Path) -> None:
    # The probe above checks this too; here the filter's effect is the whole test, so a
    # filter that silently does nothing cannot make the probe look good.
    machine = os.uname().machine
    if machine not in _ARCHES:
        pytest.skip(f"no seccomp syscall table for {machine} in this test")
    probe = tmp_path / "wx.py"
    probe.write_text(
        "import mmap\n"
        "try:\n"
        "    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
        "    print('allowed')\n"
        "except PermissionError:\n"
        "    print('refused')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", _INSTALL_FILTER, *map(str, _ARCHES[machine]), str(probe)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.stdout.strip() == "refused", result.stderr


def test_the_state_folder_is_readable_by_the_group_so_operators_can_run_status() -> None:
    # Issue 15: with 0700, "dropzone status" as a member of the group dropzone failed. The
    # store's files get 0640 from UMask=0027, and SQLite gives -wal and -shm the same mode.
    assert service("StateDirectoryMode") == ["0750"]
    assert service("UMask") == ["0027"]
    assert "StateDirectoryMode=0750" in (SYSTEMD / "README.md").read_text()

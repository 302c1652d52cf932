"""``dropzone doctor``: check what the daemon depends on, and say how to fix what is wrong.

Each check yields findings (ok / warning / problem, a detail and, unless ok, a fix). Exit 1 if
any finding is a problem. Checks act for real where only that tells the truth: an HTTP request
to each host, a file created and removed in the drop folder, an inotify probe.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import sqlite3
import stat
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from dropzone.commands import _common
from dropzone.commands._diagnosis import (
    SUGGESTED_POLL,
    Finding,
    Status,
    check_inotify,
    fs_type_finding,
    render,
    space_finding,
    version_finding,
)
from dropzone.config.hosts import OllamaHost
from dropzone.config.settings import Settings
from dropzone.errors import (
    ConfigError,
    OllamaError,
    RequestError,
    RequestTimeoutError,
    UnreachableError,
)
from dropzone.fs import info as fsinfo
from dropzone.imports.placement_report import local_import_report
from dropzone.ollama.client import OllamaClient, Timeouts, make_http_client
from dropzone.scan._gguf_files import SHARD_RE
from dropzone.scan.ignore import IgnoreRules
from dropzone.service.watch_mode import decide
from dropzone.service.watcher import native_events_work
from dropzone.store.readonly import access_problem, connect_readonly, current_user
from dropzone.store.state import DB_NAME, MIGRATIONS, StateStore

PROBE_SECONDS = 2.0
HOST_TIMEOUTS = Timeouts(connect=3.0, quick=5.0)
IMPORTED = ".imported"
_VERIFY_FIX = (
    "set this host's verify to the CA bundle (file or directory) that signed the server's"
    " certificate"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON list of findings")


def execute(args: argparse.Namespace) -> int:
    settings = _common.load(args)
    if isinstance(settings, int):
        return settings
    findings = list(diagnose(settings))
    if args.json:
        print(json.dumps([f.as_json() for f in findings], indent=2))
    else:
        print(render(findings))
    return 1 if any(f.status is Status.PROBLEM for f in findings) else 0


def diagnose(settings: Settings) -> Iterator[Finding]:
    drop = settings.drop_dir
    access = DropAccess()
    drop_findings = list(check_drop_folder(settings, access))
    survey = _survey(drop) if access.listable else None
    files = _visible_files(settings, survey)
    shards = sorted(f.rel_path for f in files if SHARD_RE.match(f.rel_path.rsplit("/", 1)[-1]))
    for host in settings.ollama_hosts:
        yield check_host(host, shards)
        if host.models_dir is not None:
            yield check_local_import(host, settings)
    yield from drop_findings
    if survey is not None:
        yield from check_events(settings, access.writable)
        polled = _polled_every(settings, fsinfo.file_system_of(settings.drop_dir))
        yield from check_inotify(polled, survey, fsinfo.read_inotify_limits())
        if settings.on_success == "move":
            yield check_space(drop, survey, files)
    yield check_state(settings.state_dir)


# -- Ollama hosts ---------------------------------------------------------------------------


def check_host(host: OllamaHost, shards: Sequence[str]) -> Finding:
    name = f"ollama {host.url}"
    if host.emulator_store is not None:
        # Nothing to reach: "dropzone run" starts it in-process, for local trials only.
        detail = f"the bundled emulator, started by dropzone run; models in {host.emulator_store}"
        return Finding(name, Status.OK, detail)
    try:
        with make_http_client(verify=host.verify) as http:
            version = OllamaClient(
                host.url, http, headers=host.header_values(), timeouts=HOST_TIMEOUTS
            ).version()
    except ConfigError as e:
        return Finding(name, Status.PROBLEM, "; ".join(e.problems), _VERIFY_FIX)
    except (UnreachableError, RequestTimeoutError) as e:
        return Finding(name, Status.PROBLEM, f"unreachable: {e.message}", _unreachable_fix(e))
    except RequestError as e:
        if e.status in (401, 403):
            fix = "set this host's headers (e.g. the reverse proxy's Authorization token)"
        else:
            fix = "check that the URL points at an Ollama server (GET /api/version)"
        return Finding(name, Status.PROBLEM, f"refused GET /api/version: {e.message}", fix)
    except OllamaError as e:
        return Finding(
            name, Status.PROBLEM, f"failed GET /api/version: {e.message}", "check the server's log"
        )
    return version_finding(name, version, shards)


def check_local_import(host: OllamaHost, settings: Settings) -> Finding:
    """Placing blobs in the host's store on this machine (issue 17): which method, and why."""
    assert host.models_dir is not None
    fine, detail, fix = local_import_report(
        host.url, host.models_dir, host.local_import_mode, settings.on_success, settings.drop_dir
    )
    status = Status.OK if fine else Status.WARNING
    return Finding(f"local import {host.url}", status, detail, fix)


def _unreachable_fix(error: OllamaError) -> str:
    if "CERTIFICATE_VERIFY_FAILED" in error.message:
        return _VERIFY_FIX
    if "SSL" in error.message:  # e.g. WRONG_VERSION_NUMBER: https:// to a plain HTTP server
        return "check the scheme: http:// for a plain Ollama server, https:// only behind TLS"
    return (
        "start Ollama there (systemctl start ollama) or correct ollama_hosts; a server"
        " listening on 127.0.0.1 only is not reachable from other machines"
        " (set OLLAMA_HOST=0.0.0.0 for the server)"
    )


# -- the drop folder ------------------------------------------------------------------------


@dataclass
class DropAccess:
    """What ``check_drop_folder`` found out, for the checks that need the folder."""

    listable: bool = False
    writable: bool = False


def check_drop_folder(settings: Settings, access: DropAccess) -> Iterator[Finding]:
    """Yield the drop folder's findings and fill in ``access``."""
    drop, name = settings.drop_dir, "drop folder"
    as_user = f"(this check ran as {_user()})"
    if not drop.exists():
        yield Finding(
            name,
            Status.PROBLEM,
            f"{drop} does not exist",
            f"create it (mkdir -p {drop}) writable by the dropzone user, or correct drop_dir",
        )
        return
    if not drop.is_dir():
        yield Finding(name, Status.PROBLEM, f"{drop} is not a directory", "point drop_dir at one")
        return
    try:
        with os.scandir(drop) as it:
            next(it, None)
    except OSError as e:
        yield Finding(
            name,
            Status.PROBLEM,
            f"cannot list {drop}: {e.strerror}",
            f"give the dropzone user read and execute permission on it {as_user}",
        )
        return
    cannot = _can_create_in(drop)
    access.listable, access.writable = True, cannot is None
    needs_write = settings.on_success in ("delete", "move")
    if cannot is None:
        yield Finding(name, Status.OK, f"{drop}: readable and writable")
    elif needs_write:
        yield Finding(
            name,
            Status.PROBLEM,
            f"cannot create files in {drop} ({cannot}), on_success = {settings.on_success!r}"
            " needs to",
            f"make it writable by the dropzone user (ReadWritePaths= in the unit) {as_user},"
            ' or set on_success = "keep"',
        )
    else:
        yield Finding(
            name,
            Status.OK,
            f"{drop}: readable; not writable ({cannot}), enough for on_success = 'keep'",
        )
    imported = drop / IMPORTED
    if settings.on_success == "move" and imported.exists() and not imported.is_dir():
        yield Finding(
            name,
            Status.PROBLEM,
            f"{imported} exists and is not a directory: on_success = 'move' moves files there",
            "remove or rename that file",
        )


def _can_create_in(folder: Path) -> str | None:
    """None if a file can really be created and removed in ``folder``, else why not.

    ``os.access`` alone misses read-only mounts, ACLs and LSMs; a real create does not.
    """
    probe = folder / f".dropzone-doctor-{uuid.uuid4().hex}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        return e.strerror or str(e)
    os.close(fd)
    probe.unlink()
    return None


def _survey(drop: Path) -> fsinfo.FolderSurvey | None:
    try:
        return fsinfo.survey(drop)
    except OSError:
        return None


def _visible_files(settings: Settings, survey: fsinfo.FolderSurvey | None) -> list[fsinfo.FileInfo]:
    if survey is None:
        return []
    rules = IgnoreRules(settings.ignore_patterns)
    return [f for f in survey.files if not rules.is_ignored(f.rel_path)]


# -- file system and events -----------------------------------------------------------------


def _polled_every(settings: Settings, mount: fsinfo.Mount | None) -> float:
    """Seconds between the daemon's polls when configuration or the file-system type make it
    poll (as ``watch_mode.decide`` does), else 0: the probe decides the rest."""
    plan = decide(
        settings.watch_mode, settings.poll_interval, mount.fs_type if mount else None, lambda: True
    )
    return plan.poll_interval if plan.mode == "polling" else 0.0


def check_events(settings: Settings, writable: bool) -> Iterator[Finding]:
    drop = settings.drop_dir
    mount = fsinfo.file_system_of(drop)
    yield fs_type_finding(mount, settings.poll_interval, settings.watch_mode)
    name = "native events"
    poll = _polled_every(settings, mount)
    if poll > 0:
        yield Finding(name, Status.OK, f"not used: polling every {poll:g} s")
        return
    if settings.watch_mode == "native":
        yield Finding(name, Status.OK, "not probed: watch_mode = native")
        return
    if not writable:
        yield Finding(
            name,
            Status.WARNING,
            f"not probed: cannot create a probe file in {drop}",
            f"set poll_interval = {SUGGESTED_POLL}, or make the folder writable",
        )
        return
    try:
        works = native_events_work(drop, PROBE_SECONDS)
    except OSError as e:
        yield Finding(
            name,
            Status.PROBLEM,
            f"cannot watch {drop}: {e.strerror or e}",
            "raise fs.inotify.max_user_instances / max_user_watches (sysctl), or set"
            f" poll_interval = {SUGGESTED_POLL}",
        )
        return
    if works:
        yield Finding(name, Status.OK, "an inotify event arrived for a probe file")
    else:
        yield Finding(
            name,
            Status.WARNING,
            f"no inotify event arrived within {PROBE_SECONDS:g} s for a probe file; the daemon"
            f" will fall back to polling every {SUGGESTED_POLL} s",
            f"set poll_interval = {SUGGESTED_POLL} to make polling explicit",
        )


# -- free space -------------------------------------------------------------------------------


def check_space(
    drop: Path, survey: fsinfo.FolderSurvey, files: Sequence[fsinfo.FileInfo]
) -> Finding:
    """on_success = move: a move to ``.imported/`` on the same file system is a rename and
    takes no space; only files on another file system (a mount inside the drop folder, or
    ``.imported`` itself a mount) are copied, and need their size free at the target."""
    imported = drop / IMPORTED
    target = imported if imported.is_dir() else drop
    try:
        free = fsinfo.free_bytes(target)
        target_dev = target.stat().st_dev
    except OSError as e:
        return Finding("free space", Status.WARNING, f"cannot stat {target}: {e.strerror}")
    return space_finding(free, target_dev, files)


def check_state(state_dir: Path) -> Finding:
    name, db = "state store", state_dir / DB_NAME
    as_user = f"(this check ran as {_user()})"
    unreadable = access_problem(state_dir, DB_NAME)
    if unreadable is not None:
        what, _, fix = unreadable.removeprefix("state_dir: ").partition("; fix: ")
        return Finding(name, Status.PROBLEM, what, fix)
    if state_dir.exists() and not state_dir.is_dir():
        return Finding(
            name,
            Status.PROBLEM,
            f"state_dir {state_dir} is not a directory",
            "remove or rename that file, or point state_dir at a directory",
        )
    if not db.exists():
        parent = fsinfo.existing_ancestor(state_dir)
        cannot = _can_create_in(parent) if parent.is_dir() else f"{parent} is not a directory"
        if cannot is None:
            return Finding(name, Status.OK, f"{db} does not exist yet; the daemon will create it")
        return Finding(
            name,
            Status.PROBLEM,
            f"{db} does not exist and cannot be created in {parent} ({cannot})",
            f"create {state_dir} writable by the dropzone user {as_user}"
            " (StateDirectory=dropzone in the unit does this)",
        )
    current = len(MIGRATIONS)
    try:
        version = _schema_version(db)
        if version == current:
            with StateStore.open(state_dir, readonly=True) as store:
                artifacts = len(store.artifacts())
    except (sqlite3.Error, ConfigError) as e:
        text = "; ".join(e.problems) if isinstance(e, ConfigError) else str(e)
        what, _, fix = text.partition("; fix: ")
        return Finding(
            name,
            Status.PROBLEM,
            f"{db} is unusable: {what}",
            fix or "move the damaged file away; the daemon starts a new one",
        )
    if version > current:
        return Finding(
            name,
            Status.PROBLEM,
            f"{db} has schema version {version}, written by a newer dropzone (this one knows"
            f" up to {current})",
            "upgrade dropzone, or point state_dir at another directory",
        )
    if not (os.access(db, os.W_OK) and os.access(state_dir, os.W_OK | os.X_OK)):
        owner = _owner_writes(db, state_dir)
        if owner is not None:
            # An operator in the service's group: reading is all status and doctor need.
            return Finding(
                name,
                Status.OK,
                f"{db}: schema version {version}, {artifacts} artifact(s); read-only for"
                f" {current_user()}, written by its owner {owner}",
            )
        return Finding(
            name,
            Status.PROBLEM,
            f"{db} is readable but not writable",
            f"make {state_dir} and its files writable by the dropzone user {as_user}",
        )
    if version < current:
        return Finding(
            name,
            Status.WARNING,
            f"{db} has schema version {version}; the daemon upgrades it to {current} at start",
            "start the daemon once",
        )
    return Finding(
        name, Status.OK, f"{db}: schema version {version} (current), {artifacts} artifact(s)"
    )


def _owner_writes(db: Path, state_dir: Path) -> str | None:
    """The name of the user who owns ``db`` and ``state_dir`` and may write both, when that is
    not this user; ``None`` otherwise."""
    try:
        db_st, dir_st = db.stat(), state_dir.stat()
    except OSError:
        return None
    if db_st.st_uid != dir_st.st_uid or db_st.st_uid == os.geteuid():
        return None
    if not (db_st.st_mode & stat.S_IWUSR and dir_st.st_mode & stat.S_IWUSR):
        return None
    try:
        return pwd.getpwuid(db_st.st_uid).pw_name
    except KeyError:
        return f"uid {db_st.st_uid}"


def _schema_version(db: Path) -> int:
    conn = connect_readonly(db)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def _user() -> str:
    uid = os.geteuid()
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"

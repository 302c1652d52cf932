"""``dropzone retry [PATH…]``: clear refusals and backoff, so the daemon tries again at once.

A refusal is recorded against the exact create request, so nothing the folder shows (a
``touch``, a restart) makes the daemon send the same request again; this command does. Every
``waiting`` or ``refused`` (artifact, host) row of the named artifacts (all artifacts without a
PATH) becomes ``pending`` with no attempts and no request fingerprint.

It takes no lock: the store is shared with a running daemon through WAL, as ``status`` shares
it. When a daemon holds ``state_dir/dropzone.lock`` it is sent SIGHUP, whose full rescan judges
every artifact from the store again. Exit 0, also when there was nothing to retry.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import os
import re
import signal
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

import structlog

from dropzone.commands import _common
from dropzone.errors import ConfigError
from dropzone.fs.bytenames import shown
from dropzone.logs import configure_logging
from dropzone.recipes.sidecar import sidecar_format
from dropzone.store.lock import LOCK_NAME
from dropzone.store.state import DB_NAME, HostRow, StateStore

log = structlog.get_logger("dropzone.retry")

_SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
_PID_BYTES = 32


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", help="override state_dir")
    parser.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="an artifact (or one of its files, or its sidecar) in the drop folder; all if none",
    )


def execute(args: argparse.Namespace) -> int:
    settings = _common.load(args, overrides=_common.flag_overrides(args))
    if isinstance(settings, int):
        return settings
    # Events on stderr: stdout is the list of what was cleared, for people.
    configure_logging(fmt=settings.log_format, level=settings.log_level, stream=sys.stderr)
    drop_dir = Path(settings.drop_dir)
    state_dir = Path(settings.state_dir)
    if not (state_dir / DB_NAME).exists():
        print(f"nothing to retry: no state store yet at {state_dir / DB_NAME}")
        return 0
    try:
        with StateStore.open(state_dir) as store:
            keys = {a.path for a in store.artifacts()} | {r.path for r in store.rows()}
            chosen: list[str] | None = None
            if args.paths:
                chosen = []
                for given in args.paths:
                    found = artifact_keys(given, drop_dir, keys)
                    if not found:
                        print(
                            f"dropzone retry: no artifact known at {shown(given)}",
                            file=sys.stderr,
                        )
                    chosen += [k for k in found if k not in chosen]
            cleared = store.clear_failures(chosen) if chosen is None or chosen else []
    except ConfigError as e:
        _common.report_config_error(e)
        return _common.EXIT_CONFIG
    if not cleared:
        print("nothing to retry")
        return 0
    for path, rows in _by_path(cleared):
        where = str(_absolute(path, drop_dir))
        log.info("artifact.retry", path=where, hosts=[r.host for r in rows])
        for r in rows:
            was = "refused" if r.next_retry_at is None else "waiting for a retry"
            error = " ".join((r.last_error or "").split())
            print(
                f"{_display(path, drop_dir)}  {r.host}  was {was}" + (f": {error}" if error else "")
            )
    print(_wake_daemon(state_dir))
    return 0


def artifact_keys(given: str, drop_dir: Path, keys: Iterable[str]) -> list[str]:
    """The stored artifact keys ``given`` (absolute, or relative to the working directory)
    names: the artifact itself, a file inside a folder artifact, its sidecar, another shard
    of a split GGUF, or a folder holding artifacts (each of them)."""
    known = sorted(keys)
    rel = _relative(given, drop_dir)
    if rel is None:
        return []
    absolute = str(drop_dir / rel) if rel != "." else str(drop_dir)
    if rel == ".":
        return known
    exact = [k for k in known if k in (rel, absolute)]
    if exact:
        return exact
    inside = [k for k in known if rel.startswith(k + "/")]
    if inside:
        return inside[-1:]  # the innermost
    p = PurePosixPath(rel)
    if sidecar_format(Path(rel)) is not None:
        base = p.name[: -len(p.suffix)] if p.suffix else p.name
        beside = [
            k
            for k in known
            if PurePosixPath(k).parent == p.parent
            and k != rel
            and (PurePosixPath(k).name == base or PurePosixPath(k).name.startswith(base + "."))
        ]
        if beside:
            return beside
    first = _SHARD.sub(r"-00001-of-\2.gguf", rel)
    if first != rel and first in known:
        return [first]
    return [k for k in known if k.startswith(rel + "/")]


def _relative(given: str, drop_dir: Path) -> str | None:
    """``given`` relative to ``drop_dir`` (as the daemon keys artifacts), or None if outside."""
    plain = Path(os.path.abspath(given))
    for path, root in (
        (plain, drop_dir),
        (plain, drop_dir.resolve()),
        (plain.resolve(), drop_dir.resolve()),
    ):
        if path.is_relative_to(root):
            return path.relative_to(root).as_posix() or "."
    return None


def _by_path(rows: Sequence[HostRow]) -> list[tuple[str, list[HostRow]]]:
    grouped: dict[str, list[HostRow]] = {}
    for r in rows:
        grouped.setdefault(r.path, []).append(r)
    return list(grouped.items())


def _absolute(key: str, drop_dir: Path) -> Path:
    path = Path(key)
    return path if path.is_absolute() else drop_dir / path


def _display(key: str, drop_dir: Path) -> str:
    path = Path(key)
    if path.is_absolute() and path.is_relative_to(drop_dir):
        return shown(path.relative_to(drop_dir).as_posix())
    return shown(key)


def _wake_daemon(state_dir: Path) -> str:
    """SIGHUP to the daemon holding the store's lock, if one does; what happened, for people."""
    path = state_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return "no daemon is running: the next `dropzone run` or `dropzone scan` retries"
    try:
        try:
            # Shared and non-blocking: taken means nobody holds it (released at once below).
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return f"cannot tell whether a daemon runs ({path}: {e.strerror or e})"
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return "no daemon is running: the next `dropzone run` or `dropzone scan` retries"
        text = os.pread(fd, _PID_BYTES, 0).decode("ascii", "replace").strip()
    finally:
        os.close(fd)
    if not text.isdigit():
        return "a daemon is starting: its first scan retries"
    pid = int(text)
    if not _handles_sighup(pid):
        # Starting (its first scan is still to come) or a one-off `dropzone scan`: SIGHUP
        # would end it.
        return f"the dropzone holding the store (pid {pid}) retries at its next scan"
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        return "no daemon is running: the next `dropzone run` or `dropzone scan` retries"
    except PermissionError:
        return (
            f"cannot signal the daemon (pid {pid}): run `systemctl reload dropzone`, or this"
            " command as the dropzone user; otherwise it retries at its next full rescan"
        )
    return f"sent SIGHUP to the daemon (pid {pid}): it retries now"


def _handles_sighup(pid: int) -> bool:
    """Whether ``pid`` catches SIGHUP (Linux: ``SigCgt`` in /proc); True where unknown."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGHUP - 1)))
    return True

"""Reading the state store without writing anything: ``dropzone status`` and ``doctor``, run by
an operator who is a member of the service's group but may not write its state folder.

What SQLite needs for that (checked with SQLite 3.40 as a non-root group member, issue 15):

- A WAL database opened with ``mode=ro`` needs its ``-shm`` file. While the daemon runs, the
  ``-wal`` and ``-shm`` files exist with the database file's own mode and group (SQLite copies
  them from it), so whoever may read the database may read those too; SQLite (3.22 and later)
  reads a ``-shm`` it cannot write. The shipped layout gives the group that read access:
  ``StateDirectoryMode=0750`` and ``UMask=0027`` in ``systemd/dropzone.service`` (files 0640).
- When the daemon closed the store cleanly, its last connection removed ``-wal`` and ``-shm``.
  A reader that cannot create ``-shm`` in the folder then gets ``SQLITE_READONLY_DIRECTORY``.
  With no ``-wal`` file the database file alone holds every committed change, so it is opened
  again with ``immutable=1``: no locks, no ``-shm``. Never first: ``immutable`` ignores the WAL,
  and while the daemon runs that would show an old state.
- ``immutable=1`` takes no lock, so a daemon that starts during the read could change the
  file under it; a status is a snapshot, and SQLite reports such a read as an error, never as
  a change to the store.
"""

from __future__ import annotations

import grp
import os
import pwd
import sqlite3
import stat
from pathlib import Path

from dropzone.errors import ConfigError

_UNCREATABLE_SHM = "SQLITE_READONLY_DIRECTORY"


def connect_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection to the database at ``path``, checked by one read.

    Raises ``ConfigError`` (one problem, with the fix) when this user may not read it, and
    ``sqlite3.Error`` for a file SQLite cannot use for other reasons.
    """
    problem = access_problem(path.parent, path.name)
    if problem is not None:
        raise ConfigError([problem])
    uri = path.absolute().as_uri()
    try:
        return _checked(f"{uri}?mode=ro")
    except sqlite3.OperationalError as e:
        wal = path.with_name(path.name + "-wal")
        if getattr(e, "sqlite_errorname", None) != _UNCREATABLE_SHM or _nonempty(wal):
            problem = access_problem(path.parent, path.name)
            if problem is not None:
                raise ConfigError([problem]) from e
            raise
    return _checked(f"{uri}?immutable=1")


def access_problem(state_dir: Path, db_name: str) -> str | None:
    """Why this user cannot read the store in ``state_dir``, with the fix; ``None`` if it can
    (or if there is no store, or ``state_dir`` is no folder: callers say that in their own
    words)."""
    try:
        st = os.stat(state_dir)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        return _message(state_dir, f"cannot reach {state_dir}: {e.strerror}", None)
    if not stat.S_ISDIR(st.st_mode):
        return None  # not a folder: a problem of its own, told by the caller
    if not os.access(state_dir, os.X_OK):
        return _message(state_dir, f"{state_dir} is mode {st.st_mode & 0o777:04o}", st.st_gid)
    db = state_dir / db_name
    for path in (db, db.with_name(db_name + "-wal"), db.with_name(db_name + "-shm")):
        try:
            mode = os.stat(path).st_mode & 0o777
        except FileNotFoundError:
            continue
        except OSError as e:
            return _message(state_dir, f"cannot stat {path}: {e.strerror}", st.st_gid)
        if not os.access(path, os.R_OK):
            return _message(state_dir, f"{path} is mode {mode:04o}", st.st_gid)
    return None


def current_user() -> str:
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _message(state_dir: Path, why: str, gid: int | None) -> str:
    group = _group_name(gid) if gid is not None else "dropzone"
    user = current_user()
    return (
        f"state_dir: {user} may not read the state store ({why}); fix: let the group {group}"
        f" read {state_dir} (StateDirectoryMode=0750 and UMask=0027 in dropzone.service, as"
        f" shipped; then systemctl restart dropzone) and add {user} to that group"
        f" (usermod -aG {group} {user}, then log in again), or run this as the service user"
    )


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return f"gid {gid}"


def _nonempty(path: Path) -> bool:
    try:
        return os.stat(path).st_size > 0
    except FileNotFoundError:
        return False


def _checked(uri: str) -> sqlite3.Connection:
    conn = sqlite3.connect(
        uri, uri=True, isolation_level=None, check_same_thread=False, timeout=10.0
    )
    try:
        # Opening is lazy: the first read is where a missing -shm or permission shows.
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error:
        conn.close()
        raise
    return conn

"""The state store: SQLite (WAL) in ``state_dir/state.sqlite3``.

It holds the digest cache, one row per artifact (with a fingerprint of its files and sidecar)
and one row per (artifact, host) with where that import stands. Every write is committed before
the call returns, so a kill at any moment leaves the last completed step on disk.

Threads: one connection behind a re-entrant lock, not one connection per thread. SQLite runs
one writer at a time anyway, and each statement here takes microseconds next to the hashing and
uploading between them; a single connection never meets SQLITE_BUSY from its own threads, lets
``batch()`` span many calls, and is closed once (per-thread connections would each need closing
from their own thread). Other processes (``dropzone status``) read concurrently thanks to WAL.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum, StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar

from dropzone.errors import ConfigError
from dropzone.fs.bytenames import from_column, shown, to_column
from dropzone.fs.identity import FileKey
from dropzone.store.readonly import connect_readonly

DB_NAME = "state.sqlite3"
_T = TypeVar("_T")

# One entry per schema version: statements run in one transaction, then user_version = index+1.
# Never edit a released entry; append a new one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE digests (
            dev INTEGER NOT NULL, ino INTEGER NOT NULL, size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL, digest TEXT NOT NULL, recorded_at REAL NOT NULL,
            PRIMARY KEY (dev, ino, size, mtime_ns)
        ) WITHOUT ROWID""",
        """CREATE TABLE artifacts (
            path TEXT PRIMARY KEY, kind TEXT NOT NULL, fingerprint TEXT NOT NULL,
            model TEXT, digests TEXT NOT NULL DEFAULT '{}', note TEXT,
            last_seen REAL NOT NULL
        )""",
        """CREATE TABLE artifact_hosts (
            path TEXT NOT NULL, host TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN
                ('pending', 'hashing', 'uploading', 'creating', 'done', 'failed')),
            model TEXT, request_fingerprint TEXT,
            attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, next_retry_at REAL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (path, host)
        )""",
    ),
    (
        # The digest cache gains ctime_ns (see FileKey). Old entries cannot be told apart from
        # a same-size rewrite with its mtime set back, so they go: each file is hashed once more.
        "DROP TABLE digests",
        """CREATE TABLE digests (
            dev INTEGER NOT NULL, ino INTEGER NOT NULL, size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, digest TEXT NOT NULL,
            recorded_at REAL NOT NULL,
            PRIMARY KEY (dev, ino, size, mtime_ns, ctime_ns)
        ) WITHOUT ROWID""",
        # Facts about this store's drop folder (its identity), one value per key.
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ),
    (
        # What the server said of the model just before a create was sent ('' when it had
        # none): after a restart in "creating", a model that changed since is the one we asked
        # for, and the create is not sent again.
        "ALTER TABLE artifact_hosts ADD COLUMN model_before TEXT",
    ),
    (
        # "waiting" and "refused" are states of their own, no longer read off "failed" and
        # next_retry_at (issue 11). SQLite cannot change a CHECK in place: the table is rebuilt.
        """CREATE TABLE artifact_hosts_v4 (
            path TEXT NOT NULL, host TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN
                ('pending', 'ready', 'hashing', 'uploading', 'creating', 'done', 'waiting',
                 'refused', 'failed')),
            model TEXT, request_fingerprint TEXT,
            attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, next_retry_at REAL,
            updated_at REAL NOT NULL, model_before TEXT,
            PRIMARY KEY (path, host)
        )""",
        """INSERT INTO artifact_hosts_v4 SELECT path, host,
            CASE WHEN state != 'failed' THEN state
                 WHEN next_retry_at IS NOT NULL THEN 'waiting' ELSE 'refused' END,
            model, request_fingerprint, attempts, last_error, next_retry_at, updated_at,
            model_before FROM artifact_hosts""",
        "DROP TABLE artifact_hosts",
        "ALTER TABLE artifact_hosts_v4 RENAME TO artifact_hosts",
    ),
)


class HostState(StrEnum):
    PENDING = "pending"
    READY = "ready"
    HASHING = "hashing"
    UPLOADING = "uploading"
    CREATING = "creating"
    DONE = "done"
    WAITING = "waiting"  # a transient failure: tried again at next_retry_at (or at host.up)
    REFUSED = "refused"  # this exact request fails for good: until the files or sidecar change
    # Written by no release since schema 4; a row a newer writer may leave. Read like the old
    # schema did: with a retry time it waits, without it is refused (``settled_state``).
    FAILED = "failed"


# The states after a failure: the ones ``dropzone retry`` clears.
FAILURE_STATES: Final = (HostState.WAITING, HostState.REFUSED, HostState.FAILED)


def settled_state(state: HostState, next_retry_at: float | None) -> HostState:
    """A row's state as status, metrics and the plan name it: a ``failed`` row is waiting
    or refused by its retry time."""
    if state is HostState.FAILED:
        return HostState.WAITING if next_retry_at is not None else HostState.REFUSED
    return state


class _Keep(Enum):
    KEEP = "keep"


KEEP: Final = _Keep.KEEP
"""``set_host_state`` default: leave the column as it is."""


@dataclass(frozen=True)
class HostRow:
    path: str
    host: str
    state: HostState
    model: str | None
    request_fingerprint: str | None
    attempts: int
    last_error: str | None
    next_retry_at: float | None  # seconds since the epoch
    updated_at: float
    model_before: str | None = None  # the model's stamp on the server before the create


@dataclass(frozen=True)
class ArtifactRow:
    path: str
    kind: str
    fingerprint: str
    model: str | None
    digests: Mapping[str, str]  # file key (as in the create request) → "sha256:<hex>"
    note: str | None  # why it is pending or refused, for ``dropzone status``
    last_seen: float


def _sha256_json(value: object) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # surrogatepass: a name that is not UTF-8 (issue 13) or a lone surrogate must not crash,
    # and must not collide with other text (surrogateescape would map 'caf\udcc3\udca9' and
    # 'café' to the same bytes). Valid text encodes as before: no fingerprint changes.
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def request_fingerprint(request: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of a create body; ``stream`` does not change the result."""
    return _sha256_json({k: v for k, v in request.items() if k != "stream"})


def artifact_fingerprint(files: Mapping[str, FileKey], sidecar_digest: str | None) -> str:
    """Changes whenever any file's identity, size or mtime or the sidecar's content changes."""
    return _sha256_json(
        {
            "files": {k: list(_key_values(f)) for k, f in files.items()},
            "sidecar": sidecar_digest,
        }
    )


class StateStore:
    """See the module docstring. Create with ``StateStore.open(state_dir)``."""

    def __init__(self, conn: sqlite3.Connection, path: Path, clock: Callable[[], float]) -> None:
        self._conn = conn
        self.path = path
        self._clock = clock
        self._lock = threading.RLock()
        self._depth = 0  # nesting of batch()/_tx() on the thread holding the lock

    @classmethod
    def open(
        cls,
        state_dir: Path,
        *,
        clock: Callable[[], float] = time.time,
        readonly: bool = False,
    ) -> StateStore:
        """Open (creating and migrating unless ``readonly``) the store in ``state_dir``.

        Raises ``ConfigError`` when the directory or database cannot be used, or the database
        was written by a newer dropzone.
        """
        path = state_dir / DB_NAME
        try:
            if readonly:
                # Also for a group member who may not write state_dir (readonly_store says how).
                conn = connect_readonly(path)
            else:
                state_dir.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(
                    path, isolation_level=None, check_same_thread=False, timeout=10.0
                )
        except (OSError, sqlite3.Error) as e:
            raise ConfigError(
                [
                    f"state_dir: cannot open the state store ({path}: {e}); "
                    "fix: create the directory and make it writable by the dropzone user"
                ]
            ) from e
        try:
            if not readonly:
                mode = _enter_wal(conn)
                if mode != "wal":
                    raise sqlite3.OperationalError(f"journal_mode is {mode!r}, WAL unavailable")
                # FULL: a commit survives power loss too; commits are few (one per step).
                conn.execute("PRAGMA synchronous = FULL")
            _migrate(conn, path, readonly=readonly)
        except sqlite3.Error as e:
            conn.close()
            raise ConfigError(
                [
                    f"state_dir: the state store {path} is unusable ({e}); "
                    "fix: put state_dir on a local file system, or move the damaged file away"
                ]
            ) from e
        except ConfigError:
            conn.close()
            raise
        return cls(conn, path, clock)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def schema_version(self) -> int:
        with self._lock:
            return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group many writes into one transaction (a rescan of 10,000 files: one commit).

        Other threads wait for the batch to end; an exception rolls the whole batch back.
        """
        with self._tx():
            yield

    # -- digest cache ---------------------------------------------------------------------

    def get_digest(self, key: FileKey) -> str | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT digest FROM digests WHERE dev=? AND ino=? AND size=? AND mtime_ns=?"
                " AND ctime_ns=?",
                _key_values(key),
            ).fetchone()
        return None if row is None else str(row[0])

    def put_digest(self, key: FileKey, digest: str) -> None:
        with self._tx():
            self._conn.execute(
                "INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?, ?, ?, ?)",
                (*_key_values(key), digest, self._clock()),
            )

    def forget_digest(self, key: FileKey) -> None:
        """Drop one cached digest (the server saw other bytes: the file must be hashed again)."""
        with self._tx():
            self._conn.execute(
                "DELETE FROM digests WHERE dev=? AND ino=? AND size=? AND mtime_ns=?"
                " AND ctime_ns=?",
                _key_values(key),
            )

    def prune_digests(self, keep: Iterable[FileKey]) -> int:
        """Drop every cached digest except those for ``keep``; return how many went."""
        with self._tx():
            self._conn.execute("CREATE TEMP TABLE IF NOT EXISTS keep_keys (k TEXT PRIMARY KEY)")
            self._conn.execute("DELETE FROM keep_keys")
            self._conn.executemany(
                "INSERT OR IGNORE INTO keep_keys VALUES (?)",
                ((":".join(map(str, _key_values(k))),) for k in keep),
            )
            cur = self._conn.execute(
                "DELETE FROM digests WHERE dev || ':' || ino || ':' || size || ':' || mtime_ns"
                " || ':' || ctime_ns NOT IN (SELECT k FROM keep_keys)"
            )
            return cur.rowcount

    # -- facts about the drop folder -----------------------------------------------------

    def meta(self, key: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, values: Mapping[str, str]) -> None:
        with self._tx():
            self._conn.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", values.items()
            )

    # -- artifacts ------------------------------------------------------------------------

    def upsert_artifact(
        self,
        path: str | Path,
        *,
        kind: str,
        fingerprint: str,
        model: str | None = None,
        digests: Mapping[str, str] | None = None,
        note: str | None = None,
    ) -> None:
        """Record an artifact as seen now (``last_seen``), replacing what was known of it."""
        with self._tx():
            self._conn.execute(
                "INSERT INTO artifacts (path, kind, fingerprint, model, digests, note, last_seen)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET"
                " kind=excluded.kind, fingerprint=excluded.fingerprint, model=excluded.model,"
                " digests=excluded.digests, note=excluded.note, last_seen=excluded.last_seen",
                (
                    _key(path),
                    str(kind),
                    fingerprint,
                    model,
                    json.dumps(dict(digests or {}), sort_keys=True),
                    _text(note),
                    self._clock(),
                ),
            )

    def artifact(self, path: str | Path) -> ArtifactRow | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT path, kind, fingerprint, model, digests, note, last_seen"
                " FROM artifacts WHERE path=?",
                (_key(path),),
            ).fetchone()
        return None if row is None else _artifact_row(row)

    def knows_artifacts(self) -> bool:
        """True once any artifact was imported (pending or refused ones do not count)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT 1 FROM artifact_hosts WHERE state=? LIMIT 1", (str(HostState.DONE),)
            ).fetchone()
        return row is not None

    def note_artifact(self, path: str | Path, *, kind: str, note: str | None) -> None:
        """Say why an artifact is pending or refused (``dropzone status``); one that was
        never hashed gets a row of its own, without fingerprint or digests."""
        with self._tx():
            self._conn.execute(
                "INSERT INTO artifacts (path, kind, fingerprint, model, digests, note, last_seen)"
                " VALUES (?, ?, '', NULL, '{}', ?, ?) ON CONFLICT (path) DO UPDATE SET"
                " note=excluded.note, last_seen=excluded.last_seen",
                (_key(path), kind, None if note is None else shown(note), self._clock()),
            )

    def artifacts(self) -> list[ArtifactRow]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT path, kind, fingerprint, model, digests, note, last_seen"
                " FROM artifacts ORDER BY path"
            ).fetchall()
        return [_artifact_row(r) for r in rows]

    def forget_artifact(self, path: str | Path) -> None:
        """Remove the artifact and all its host rows."""
        with self._tx():
            self._conn.execute("DELETE FROM artifact_hosts WHERE path=?", (_key(path),))
            self._conn.execute("DELETE FROM artifacts WHERE path=?", (_key(path),))

    # -- per (artifact, host) -------------------------------------------------------------

    def forget_host(self, path: str | Path, host: str) -> None:
        """Remove one (artifact, host) row."""
        with self._tx():
            self._conn.execute(
                "DELETE FROM artifact_hosts WHERE path=? AND host=?", (_key(path), host)
            )

    def set_host_state(
        self,
        path: str | Path,
        host: str,
        state: HostState,
        *,
        model: str | _Keep | None = KEEP,
        request_fingerprint: str | _Keep | None = KEEP,
        attempts: int | _Keep = KEEP,
        error: str | None = None,
        next_retry_at: float | None = None,
        model_before: str | _Keep | None = KEEP,
    ) -> HostRow:
        """Record a transition and commit it. Columns passed as ``KEEP`` keep their value;
        ``error`` and ``next_retry_at`` describe the latest failure, so they are cleared unless
        given."""
        with self._tx():
            old = self.host_state(path, host)
            row = HostRow(
                path=str(path),
                host=host,
                state=HostState(state),
                model=_pick(model, old.model if old else None),
                request_fingerprint=_pick(
                    request_fingerprint, old.request_fingerprint if old else None
                ),
                attempts=_pick(attempts, old.attempts if old else 0),
                last_error=_text(error),
                next_retry_at=next_retry_at,
                updated_at=self._clock(),
                model_before=_pick(model_before, old.model_before if old else None),
            )
            self._conn.execute(
                "INSERT OR REPLACE INTO artifact_hosts (path, host, state, model,"
                " request_fingerprint, attempts, last_error, next_retry_at, updated_at,"
                " model_before) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    _key(row.path),
                    row.host,
                    str(row.state),
                    row.model,
                    row.request_fingerprint,
                    row.attempts,
                    row.last_error,
                    row.next_retry_at,
                    row.updated_at,
                    row.model_before,
                ),
            )
        return row

    def clear_failures(self, paths: Iterable[str | Path] | None = None) -> list[HostRow]:
        """``dropzone retry``: every waiting or refused row (``FAILURE_STATES``) of
        ``paths`` (all artifacts when None) becomes ``pending`` with no attempts, no error, no
        retry time and no request fingerprint, so the plan says GO for any request. Returns the
        rows as they were, ordered by path then host."""
        with self._tx():
            if paths is None:
                failed = self._conn.execute(
                    _SELECT_HOSTS + f" WHERE state IN {_FAILURES} ORDER BY path, host"
                ).fetchall()
            else:
                failed = []
                for path in dict.fromkeys(str(p) for p in paths):
                    failed += self._conn.execute(
                        _SELECT_HOSTS + f" WHERE path=? AND state IN {_FAILURES} ORDER BY host",
                        (_key(path),),
                    ).fetchall()
            self._conn.executemany(
                "UPDATE artifact_hosts SET state=?, request_fingerprint=NULL, attempts=0,"
                " last_error=NULL, next_retry_at=NULL, updated_at=? WHERE path=? AND host=?",
                [(str(HostState.PENDING), self._clock(), r[0], r[1]) for r in failed],
            )
        rows = [_host_row(r) for r in failed]
        return rows if paths is None else sorted(rows, key=lambda r: (r.path, r.host))

    def release_waiting(self, host: str) -> list[str]:
        """``host`` answers again: its rows waiting for a retry may go now. Returns their
        artifact paths."""
        with self._tx():
            rows = self._conn.execute(
                "SELECT path FROM artifact_hosts WHERE host=? AND state IN ('waiting', 'failed')"
                " AND next_retry_at IS NOT NULL",
                (host,),
            ).fetchall()
            self._conn.execute(
                "UPDATE artifact_hosts SET next_retry_at=? WHERE host=?"
                " AND state IN ('waiting', 'failed')"
                " AND next_retry_at IS NOT NULL AND next_retry_at > ?",
                (self._clock(), host, self._clock()),
            )
        return [from_column(r[0]) for r in rows]

    def host_state(self, path: str | Path, host: str) -> HostRow | None:
        with self._lock:
            row = self._conn.execute(
                _SELECT_HOSTS + " WHERE path=? AND host=?",
                (_key(path), host),
            ).fetchone()
        return None if row is None else _host_row(row)

    def rows(self, *, path: str | Path | None = None) -> list[HostRow]:
        """Every (artifact, host) row, ordered by path then host; only ``path``'s if given."""
        with self._lock:
            if path is None:
                rows = self._conn.execute(_SELECT_HOSTS + " ORDER BY path, host").fetchall()
            else:
                rows = self._conn.execute(
                    _SELECT_HOSTS + " WHERE path=? ORDER BY host", (_key(path),)
                ).fetchall()
        return [_host_row(r) for r in rows]

    def summary(
        self,
    ) -> tuple[list[tuple[str, str, bool, int, float]], list[tuple[str, str, float]]]:
        """For a metrics scrape (issue 16), without building a row per artifact:
        (host, state, has a retry time, count, latest updated_at) per group, and
        (path, host, updated_at) of each row still to do (not done, not refused)."""
        with self._lock:
            groups = self._conn.execute(
                "SELECT host, state, next_retry_at IS NOT NULL, count(*), max(updated_at)"
                " FROM artifact_hosts GROUP BY 1, 2, 3"
            ).fetchall()
            backlog = self._conn.execute(
                "SELECT path, host, updated_at FROM artifact_hosts"
                " WHERE state NOT IN ('done', 'refused')"
                " AND NOT (state = 'failed' AND next_retry_at IS NULL)"
            ).fetchall()
        return (
            [(h, st, bool(r), int(n), float(u)) for h, st, r, n, u in groups],
            [(str(path), h, float(u)) for path, h, u in backlog],
        )

    # -- internals ------------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[None]:
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")
            finally:
                self._depth = 0


_FAILURES = "(" + ", ".join(f"'{s}'" for s in FAILURE_STATES) + ")"
_SELECT_HOSTS = (
    "SELECT path, host, state, model, request_fingerprint, attempts, last_error,"
    " next_retry_at, updated_at, model_before FROM artifact_hosts"
)


def _enter_wal(conn: sqlite3.Connection, deadline_seconds: float = 10.0) -> str:
    """Switch to WAL. A new database opened by two processes at once: the switch needs an
    exclusive lock, and SQLite does not call its busy handler for it ("database is locked"
    at once, about 1 start in 15), so wait here, within the same bound as the busy timeout."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def _key_values(key: FileKey) -> tuple[int, int, int, int, int]:
    return (key.dev, key.ino, key.size, key.mtime_ns, key.ctime_ns)


def _pick(value: _T | _Keep, old: _T) -> _T:
    return old if isinstance(value, _Keep) else value


def _key(path: str | Path) -> str | bytes:
    """An artifact path as an SQLite parameter: a name that is not UTF-8 is stored as its
    bytes (``fsnames.to_column`` says why), every other one as text, as it always was."""
    return to_column(str(path))


def _text(message: str | None) -> str | None:
    """A note or error for people: a name in it that is not UTF-8 is shown escaped."""
    return None if message is None else shown(message)


def _artifact_row(r: tuple[Any, ...]) -> ArtifactRow:
    return ArtifactRow(from_column(r[0]), r[1], r[2], r[3], json.loads(r[4]), r[5], r[6])


def _host_row(r: tuple[Any, ...]) -> HostRow:
    return HostRow(
        from_column(r[0]), r[1], HostState(r[2]), r[3], r[4], r[5], r[6], r[7], r[8], r[9]
    )


def _migrate(conn: sqlite3.Connection, path: Path, *, readonly: bool) -> None:
    known = len(MIGRATIONS)
    for _ in range(known + 1):
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > known:
            raise ConfigError(
                [
                    f"state_dir: {path} has schema version {version}, this dropzone knows up to "
                    f"{known}; fix: upgrade dropzone, or point state_dir at another directory"
                ]
            )
        if version == known:
            return
        if readonly:
            raise ConfigError(
                [
                    f"state_dir: {path} has schema version {version}, expected {known}; "
                    "fix: start the daemon once so it upgrades the store"
                ]
            )
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have migrated while we waited for the write lock.
            if int(conn.execute("PRAGMA user_version").fetchone()[0]) == version:
                for statement in MIGRATIONS[version]:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {version + 1}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

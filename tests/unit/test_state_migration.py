"""Migration 4: "waiting" and "refused" become persisted states, from a store the old schema
wrote (its own SQL: migrations 1-3, then the INSERT the old ``set_host_state`` ran)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from dropzone.store.state import DB_NAME, MIGRATIONS, HostState, StateStore

HOST = "http://127.0.0.1:11434"
NOW = 1_700_000_000.0

# The row insert of schema version 3 (``set_host_state`` before migration 4).
OLD_INSERT = (
    "INSERT OR REPLACE INTO artifact_hosts (path, host, state, model,"
    " request_fingerprint, attempts, last_error, next_retry_at, updated_at,"
    " model_before) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def old_store(state_dir: Path, rows: list[tuple[object, ...]]) -> None:
    """A version-3 store as the previous release left it."""
    state_dir.mkdir(parents=True)
    with closing(sqlite3.connect(state_dir / DB_NAME, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        for version, statements in enumerate(MIGRATIONS[:3]):
            for statement in statements:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
        conn.executemany(OLD_INSERT, rows)


def test_old_failed_rows_become_waiting_or_refused(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    old_store(
        state_dir,
        [
            ("a.gguf", HOST, "failed", "a:latest", "fa", 3, "503", NOW + 60, NOW, None),
            ("b.gguf", HOST, "failed", "b:latest", "fb", 1, "bad template", None, NOW, None),
            ("c.gguf", HOST, "done", "c:latest", "fc", 0, None, None, NOW, ""),
            ("d.gguf", HOST, "creating", "d:latest", "fd", 0, None, None, NOW, "x"),
        ],
    )
    with StateStore.open(state_dir) as store:
        assert store.schema_version() == len(MIGRATIONS) == 4
        rows = {r.path: r for r in store.rows()}
    assert {p: r.state for p, r in rows.items()} == {
        "a.gguf": HostState.WAITING,
        "b.gguf": HostState.REFUSED,
        "c.gguf": HostState.DONE,
        "d.gguf": HostState.CREATING,
    }
    a, b, d = rows["a.gguf"], rows["b.gguf"], rows["d.gguf"]
    assert (a.attempts, a.last_error, a.next_retry_at, a.request_fingerprint) == (
        3,
        "503",
        NOW + 60,
        "fa",
    )
    assert (b.last_error, b.next_retry_at) == ("bad template", None)
    assert d.model_before == "x"


@pytest.mark.parametrize("state", ["ready", "waiting", "refused", "pending", "failed"])
def test_the_new_schema_accepts_every_state_of_the_machine(tmp_path: Path, state: str) -> None:
    with StateStore.open(tmp_path / "state") as store:
        row = store.set_host_state("x.gguf", HOST, HostState(state))
        assert store.host_state("x.gguf", HOST) == row


def test_the_new_schema_still_refuses_an_unknown_state(tmp_path: Path) -> None:
    with StateStore.open(tmp_path / "state"):
        pass
    with (
        closing(sqlite3.connect(tmp_path / "state" / DB_NAME)) as conn,
        pytest.raises(sqlite3.IntegrityError),
    ):
        conn.execute(OLD_INSERT, ("x", HOST, "stuck", None, None, 0, None, None, NOW, None))


def test_retry_and_host_up_act_on_the_new_states(tmp_path: Path) -> None:
    old_store(
        tmp_path / "state",
        [
            ("a.gguf", HOST, "failed", "a:latest", "fa", 3, "503", NOW + 60, NOW, None),
            ("b.gguf", HOST, "failed", "b:latest", "fb", 1, "bad template", None, NOW, None),
        ],
    )
    with StateStore.open(tmp_path / "state", clock=lambda: NOW) as store:
        assert store.release_waiting(HOST) == ["a.gguf"]
        waiting = store.host_state("a.gguf", HOST)
        assert waiting is not None and waiting.next_retry_at == NOW
        cleared = store.clear_failures()
        assert [(r.path, r.state) for r in cleared] == [
            ("a.gguf", HostState.WAITING),
            ("b.gguf", HostState.REFUSED),
        ]
        assert {r.state for r in store.rows()} == {HostState.PENDING}

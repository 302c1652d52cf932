"""The SQLite state store on real files: durability, threads, batches, schema versions."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from dropzone.errors import ConfigError
from dropzone.fs.identity import FileKey
from dropzone.imports.steps import Recorded, Step, next_step
from dropzone.store.state import (
    DB_NAME,
    MIGRATIONS,
    HostState,
    StateStore,
    artifact_fingerprint,
    request_fingerprint,
)

HOST = "http://127.0.0.1:11434"
GGUF = "/srv/dropzone/qwen3-8b.gguf"


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore.open(tmp_path / "state") as s:
        yield s


def peek(state_dir: Path, sql: str) -> list[tuple[object, ...]]:
    """What another process sees right now."""
    with closing(sqlite3.connect(state_dir / DB_NAME)) as conn:
        return conn.execute(sql).fetchall()


def test_open_creates_a_wal_database_at_the_current_schema_version(tmp_path: Path) -> None:
    with StateStore.open(tmp_path / "new" / "state") as store:
        assert store.path == tmp_path / "new" / "state" / DB_NAME
        assert store.schema_version() == len(MIGRATIONS)
    assert peek(tmp_path / "new" / "state", "PRAGMA journal_mode") == [("wal",)]


def test_each_transition_is_visible_to_another_process_before_the_call_returns(
    tmp_path: Path,
) -> None:
    with StateStore.open(tmp_path) as store:
        store.set_host_state(GGUF, HOST, HostState.UPLOADING, model="qwen3:8b")
        assert peek(tmp_path, "SELECT state, model FROM artifact_hosts") == [
            ("uploading", "qwen3:8b")
        ]


def test_reopening_after_close_shows_everything_committed(tmp_path: Path) -> None:
    key = FileKey(dev=1, ino=2, size=3, mtime_ns=4, ctime_ns=5)
    with StateStore.open(tmp_path) as store:
        store.put_digest(key, "sha256:" + "a" * 64)
        store.upsert_artifact(
            GGUF, kind="gguf", fingerprint="fp1", model="qwen3:8b", digests={"m.gguf": "d"}
        )
        store.set_host_state(
            GGUF, HOST, HostState.DONE, model="qwen3:8b", request_fingerprint="rf", attempts=2
        )
    with StateStore.open(tmp_path) as store:
        assert store.get_digest(key) == "sha256:" + "a" * 64
        artifact = store.artifact(GGUF)
        assert artifact is not None
        assert (artifact.kind, artifact.fingerprint, artifact.model) == ("gguf", "fp1", "qwen3:8b")
        assert artifact.digests == {"m.gguf": "d"}
        row = store.host_state(GGUF, HOST)
        assert row is not None
        assert (row.state, row.request_fingerprint, row.attempts) == (HostState.DONE, "rf", 2)


def test_unknown_rows_are_none(store: StateStore) -> None:
    assert store.get_digest(FileKey(9, 9, 9, 9, 1)) is None
    assert store.artifact("/nope") is None
    assert store.host_state("/nope", HOST) is None


def test_set_host_state_keeps_unspecified_columns_and_clears_the_last_failure(
    tmp_path: Path,
) -> None:
    clock = Clock()
    with StateStore.open(tmp_path, clock=clock) as store:
        store.set_host_state(GGUF, HOST, HostState.HASHING, model="m:latest", attempts=0)
        clock.now += 5
        failed = store.set_host_state(
            GGUF,
            HOST,
            HostState.FAILED,
            error="connection refused",
            next_retry_at=99.0,
            attempts=1,
        )
        assert (failed.model, failed.last_error, failed.next_retry_at) == (
            "m:latest",
            "connection refused",
            99.0,
        )
        assert failed.updated_at == clock.now
        retry = store.set_host_state(GGUF, HOST, HostState.UPLOADING)
        assert (retry.model, retry.attempts) == ("m:latest", 1)
        assert (retry.last_error, retry.next_retry_at) == (None, None)
        assert store.host_state(GGUF, HOST) == retry
        cleared = store.set_host_state(GGUF, HOST, HostState.PENDING, model=None)
        assert cleared.model is None


def test_an_unknown_state_is_refused(store: StateStore) -> None:
    with pytest.raises(ValueError, match="bogus"):
        store.set_host_state(GGUF, HOST, "bogus")  # type: ignore[arg-type]


def test_rows_are_ordered_by_path_then_host_and_filter_by_path(store: StateStore) -> None:
    for path in ("/d/b.gguf", "/d/a.gguf"):
        for host in ("http://h2:11434", "http://h1:11434"):
            store.set_host_state(path, host, HostState.PENDING)
    assert [(r.path, r.host) for r in store.rows()] == [
        ("/d/a.gguf", "http://h1:11434"),
        ("/d/a.gguf", "http://h2:11434"),
        ("/d/b.gguf", "http://h1:11434"),
        ("/d/b.gguf", "http://h2:11434"),
    ]
    assert [r.host for r in store.rows(path=Path("/d/b.gguf"))] == [
        "http://h1:11434",
        "http://h2:11434",
    ]


def test_forget_artifact_removes_it_and_its_host_rows(store: StateStore) -> None:
    store.upsert_artifact(GGUF, kind="gguf", fingerprint="fp")
    store.set_host_state(GGUF, HOST, HostState.DONE)
    store.upsert_artifact("/other", kind="gguf", fingerprint="fp")
    store.set_host_state("/other", HOST, HostState.DONE)
    store.forget_artifact(GGUF)
    assert store.artifact(GGUF) is None
    assert [r.path for r in store.rows()] == ["/other"]
    assert [a.path for a in store.artifacts()] == ["/other"]


def test_upsert_artifact_replaces_and_stamps_last_seen(tmp_path: Path) -> None:
    clock = Clock()
    with StateStore.open(tmp_path, clock=clock) as store:
        store.upsert_artifact(GGUF, kind="gguf", fingerprint="fp1", note="pending: 1 of 2 bytes")
        clock.now += 60
        store.upsert_artifact(GGUF, kind="gguf", fingerprint="fp2", model="x:latest")
        artifact = store.artifact(GGUF)
    assert artifact is not None
    assert (artifact.fingerprint, artifact.model, artifact.note) == ("fp2", "x:latest", None)
    assert artifact.last_seen == clock.now


def test_a_batch_commits_many_rows_in_one_transaction(tmp_path: Path) -> None:
    with StateStore.open(tmp_path) as store:
        with store.batch():
            for i in range(10_000):
                store.upsert_artifact(f"/d/{i:05}.gguf", kind="gguf", fingerprint="fp")
                store.set_host_state(f"/d/{i:05}.gguf", HOST, HostState.PENDING)
            # Nothing is visible to others until the batch ends: it is one transaction.
            assert peek(tmp_path, "SELECT count(*) FROM artifacts") == [(0,)]
        assert peek(tmp_path, "SELECT count(*) FROM artifacts") == [(10_000,)]
        assert len(store.rows()) == 10_000


def test_a_failing_batch_leaves_nothing_behind(store: StateStore) -> None:
    store.upsert_artifact("/before", kind="gguf", fingerprint="fp")
    with pytest.raises(RuntimeError), store.batch():
        store.upsert_artifact(GGUF, kind="gguf", fingerprint="fp")
        store.forget_artifact("/before")
        raise RuntimeError("scan crashed")
    assert [a.path for a in store.artifacts()] == ["/before"]
    store.upsert_artifact(GGUF, kind="gguf", fingerprint="fp")  # the store is usable again
    assert store.artifact(GGUF) is not None


def test_threads_can_write_and_read_concurrently(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def worker(n: int) -> None:
        try:
            start.wait(10)
            for i in range(50):
                path = f"/d/{n}-{i}.gguf"
                store.upsert_artifact(path, kind="gguf", fingerprint=str(i))
                for state in (HostState.HASHING, HostState.UPLOADING, HostState.DONE):
                    store.set_host_state(path, HOST, state, attempts=i)
                store.put_digest(FileKey(n, i, 1, 1, 1), f"sha256:{n}-{i}")
                assert store.host_state(path, HOST) is not None
                store.rows(path=path)
        except BaseException as e:
            errors.append(e)

    with StateStore.open(tmp_path) as store:
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
    with StateStore.open(tmp_path) as store:
        rows = store.rows()
        assert len(rows) == 400
        assert {r.state for r in rows} == {HostState.DONE}
        assert store.get_digest(FileKey(7, 49, 1, 1, 1)) == "sha256:7-49"


def test_two_processes_opening_a_new_store_at_once_both_succeed(tmp_path: Path) -> None:
    start = threading.Barrier(2)
    versions: list[int] = []
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            start.wait(10)
            with StateStore.open(tmp_path) as s:
                versions.append(s.schema_version())
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=open_it) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert versions == [len(MIGRATIONS)] * 2


def test_a_store_written_by_a_newer_dropzone_is_refused_clearly(tmp_path: Path) -> None:
    with closing(sqlite3.connect(tmp_path / DB_NAME)) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(ConfigError) as info:
        StateStore.open(tmp_path)
    (problem,) = info.value.problems
    assert f"schema version {len(MIGRATIONS) + 1}" in problem
    assert "fix: upgrade dropzone" in problem


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    (tmp_path / DB_NAME).write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(ConfigError, match="unusable"):
        StateStore.open(tmp_path)


def test_a_state_dir_that_cannot_be_created_is_refused(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where the directory should be")
    with pytest.raises(ConfigError, match="state_dir: cannot open"):
        StateStore.open(tmp_path / "blocker" / "state")


def test_readonly_open_reads_an_existing_store_and_refuses_a_missing_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        StateStore.open(tmp_path / "absent", readonly=True)
    with StateStore.open(tmp_path) as store:
        store.set_host_state(GGUF, HOST, HostState.DONE)
        with StateStore.open(tmp_path, readonly=True) as reader:
            assert [r.state for r in reader.rows()] == [HostState.DONE]
            with pytest.raises(sqlite3.OperationalError, match="readonly"):
                reader.set_host_state(GGUF, HOST, HostState.FAILED)


def test_prune_digests_keeps_only_the_given_keys(store: StateStore) -> None:
    keys = [FileKey(1, i, 10, 20, 1) for i in range(5)]
    for k in keys:
        store.put_digest(k, f"d{k.ino}")
    assert store.prune_digests(keys[:2]) == 3
    assert [store.get_digest(k) for k in keys] == ["d0", "d1", None, None, None]
    assert store.prune_digests([]) == 2


def test_request_fingerprint_ignores_key_order_and_stream() -> None:
    a = {"model": "m:latest", "files": {"m.gguf": "sha256:1"}, "parameters": {"a": 1, "b": 2}}
    b = {
        "parameters": {"b": 2, "a": 1},
        "stream": True,
        "files": {"m.gguf": "sha256:1"},
        "model": "m:latest",
    }
    assert request_fingerprint(a) == request_fingerprint(b)
    assert request_fingerprint(a).startswith("sha256:") and len(request_fingerprint(a)) == 71
    assert request_fingerprint(a) != request_fingerprint({**a, "system": "be brief"})


def test_artifact_fingerprint_changes_with_any_file_stat_or_the_sidecar() -> None:
    files = {"m.gguf": FileKey(1, 2, 3, 4, 1)}
    base = artifact_fingerprint(files, "sha256:s")
    assert base == artifact_fingerprint(dict(files), "sha256:s")
    assert base != artifact_fingerprint({"m.gguf": FileKey(1, 2, 3, 5, 1)}, "sha256:s")
    assert base != artifact_fingerprint({"m.gguf": FileKey(1, 9, 3, 4, 1)}, "sha256:s")
    assert base != artifact_fingerprint(files, "sha256:t")
    assert base != artifact_fingerprint(files, None)


def test_a_forgotten_digest_is_no_longer_cached(tmp_path: Path) -> None:
    store = StateStore.open(tmp_path)
    key = FileKey(1, 2, 3, 4, 1)
    store.put_digest(key, "sha256:" + "a" * 64)
    store.forget_digest(key)
    assert store.get_digest(key) is None
    store.close()


# --- names that are not UTF-8 (issue 13) ---------------------------------------------------

# A folder whose name holds the byte 0xE9 (Latin-1 "é"), as Python hands it over: a surrogate
# escape. It crashed every write of its rows, and with it the daemon, at each restart.
UNDECODABLE = os.fsdecode(b"/srv/dropzone/caf\xe9-model")
LOOKALIKE = "/srv/dropzone/caf\\xe9-model"  # how it is shown, but as text: another name


def test_a_path_that_is_not_utf8_is_stored_and_read_back_without_loss(tmp_path: Path) -> None:
    with StateStore.open(tmp_path) as store:
        store.upsert_artifact(UNDECODABLE, kind="safetensors", fingerprint="f1", note="pending")
        store.set_host_state(UNDECODABLE, HOST, HostState.FAILED, error=f"{UNDECODABLE}: gone")
    with StateStore.open(tmp_path, readonly=True) as store:  # as after a restart
        artifact = store.artifact(UNDECODABLE)
        assert artifact is not None and artifact.path == UNDECODABLE
        assert [a.path for a in store.artifacts()] == [UNDECODABLE]
        (row,) = store.rows(path=UNDECODABLE)
        assert (row.path, row.state) == (UNDECODABLE, HostState.FAILED)
        assert row.last_error == f"{LOOKALIKE}: gone"  # a message: shown, not kept as bytes
        assert store.host_state(UNDECODABLE, HOST) == row


def test_a_path_that_is_not_utf8_never_meets_its_escaped_lookalike(tmp_path: Path) -> None:
    with StateStore.open(tmp_path) as store:
        store.upsert_artifact(UNDECODABLE, kind="safetensors", fingerprint="bytes")
        store.upsert_artifact(LOOKALIKE, kind="safetensors", fingerprint="text")
        store.set_host_state(LOOKALIKE, HOST, HostState.DONE)
        assert store.host_state(UNDECODABLE, HOST) is None
        store.forget_artifact(UNDECODABLE)
        assert store.artifact(UNDECODABLE) is None
        found = store.artifact(LOOKALIKE)
        assert found is not None and found.fingerprint == "text"


def test_utf8_paths_stay_text_rows_so_existing_stores_keep_working(tmp_path: Path) -> None:
    with StateStore.open(tmp_path) as store:
        store.upsert_artifact("/srv/dropzone/café.gguf", kind="gguf", fingerprint="f")
        store.upsert_artifact(UNDECODABLE, kind="safetensors", fingerprint="f")
    assert sorted(peek(tmp_path, "SELECT typeof(path), path FROM artifacts"), key=str) == [
        ("blob", os.fsencode(UNDECODABLE)),
        ("text", "/srv/dropzone/café.gguf"),
    ]


def test_request_fingerprint_of_undecodable_or_lone_surrogate_text_is_stable() -> None:
    undecodable = {"model": "m", "files": {os.fsdecode(b"mod\xe8le.gguf"): "sha256:1"}}
    lookalike = {"model": "m", "files": {"mod\\xe8le.gguf": "sha256:1"}}
    assert request_fingerprint(undecodable) == request_fingerprint(dict(undecodable))
    assert request_fingerprint(undecodable) != request_fingerprint(lookalike)
    assert request_fingerprint({"system": "\ud800"}) != request_fingerprint({"system": "?"})
    assert artifact_fingerprint({os.fsdecode(b"\xff.gguf"): FileKey(1, 2, 3, 4, 5)}, None)
    # Text that is valid keeps its fingerprint: a request done before this change is not redone.
    text = {"model": "m", "system": "café"}
    canonical = json.dumps(text, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert request_fingerprint(text) == "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def test_clear_failures_makes_refusals_and_backoff_go_again_and_leaves_other_rows(
    tmp_path: Path,
) -> None:
    clock = Clock()
    other = "http://10.0.0.2:11434"
    with StateStore.open(tmp_path, clock=clock) as store:
        store.set_host_state(
            GGUF, HOST, HostState.FAILED, request_fingerprint="sha256:r", attempts=1, error="no"
        )
        store.set_host_state(
            GGUF,
            other,
            HostState.FAILED,
            request_fingerprint="sha256:r",
            attempts=3,
            error="down",
            next_retry_at=clock.now + 60,
        )
        store.set_host_state("b.gguf", HOST, HostState.FAILED, request_fingerprint="x", error="no")
        store.set_host_state("c.gguf", HOST, HostState.DONE, request_fingerprint="sha256:d")
        clock.now += 5

        cleared = store.clear_failures([GGUF])
        assert [(r.path, r.host, r.last_error) for r in cleared] == [
            (GGUF, other, "down"),
            (GGUF, HOST, "no"),
        ]
        for host in (HOST, other):
            row = store.host_state(GGUF, host)
            assert row is not None
            assert row.state is HostState.PENDING
            assert (row.request_fingerprint, row.attempts) == (None, 0)
            assert (row.last_error, row.next_retry_at, row.updated_at) == (None, None, clock.now)
            # The plan goes again at once, whatever the request is now.
            recorded = Recorded(str(row.state), row.request_fingerprint, row.next_retry_at)
            assert next_step(recorded, "sha256:r", clock.now) is Step.GO
        still = store.host_state("b.gguf", HOST)
        assert still is not None and still.state is HostState.FAILED

        assert [r.path for r in store.clear_failures()] == ["b.gguf"]  # all paths
        done = store.host_state("c.gguf", HOST)
        assert done is not None and done.state is HostState.DONE  # never touched
        assert store.clear_failures() == []

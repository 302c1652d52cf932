"""``dropzone status`` over a real state store, read-only, also while a writer holds it."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from dropzone.cli import main
from dropzone.commands.status import next_retry, short_digests
from dropzone.store.state import HostState, StateStore

DIGEST_A = "sha256:" + "a1" * 32
DIGEST_B = "sha256:" + "b2" * 32
HOST_1 = "http://gpu1:11434"
HOST_2 = "http://gpu2:11434"


@pytest.fixture(autouse=True)
def _no_outside_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("DROPZONE_") or name in ("OLLAMA_HOST", "STATE_DIRECTORY"):
            monkeypatch.delenv(name)


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = tmp_path / "dropzone.toml"
    path.write_text(f'drop_dir = "{tmp_path / "drop"}"\nstate_dir = "{tmp_path / "state"}"\n')
    return str(path)


def fill(store: StateStore, drop: Path, retry_at: float) -> None:
    store.upsert_artifact(
        "qwen.gguf",
        kind="gguf",
        fingerprint="f1",
        model="qwen:latest",
        digests={"qwen.gguf": DIGEST_A},
    )
    store.set_host_state("qwen.gguf", HOST_1, HostState.DONE, model="qwen:latest", attempts=0)
    store.set_host_state(
        "qwen.gguf",
        HOST_2,
        HostState.FAILED,
        model="qwen:latest",
        attempts=3,
        error="connection refused",
        next_retry_at=retry_at,
    )
    # An absolute path inside the drop folder is shown relative to it.
    store.upsert_artifact(
        drop / "tiny",
        kind="safetensors",
        fingerprint="f2",
        model="tiny:latest",
        digests={"tiny/model.safetensors": DIGEST_B, "tiny/config.json": DIGEST_A},
    )
    store.set_host_state(drop / "tiny", HOST_1, HostState.UPLOADING, model="tiny:latest")
    store.upsert_artifact(
        "half.gguf", kind="gguf", fingerprint="f3", note="pending: 1024 of 4096 bytes present"
    )


def status_json(capsys: pytest.CaptureFixture[str], config: str) -> list[dict[str, Any]]:
    assert main(["status", "--json", "--config", config]) == 0
    rows: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
    return rows


def test_json_has_one_row_per_artifact_and_host(
    tmp_path: Path, config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    retry_at = time.time() + 600
    with StateStore.open(tmp_path / "state") as store:
        fill(store, tmp_path / "drop", retry_at)
    rows = status_json(capsys, config)
    assert [(r["path"], r["host"], r["state"]) for r in rows] == [
        ("half.gguf", None, "pending"),
        ("qwen.gguf", HOST_1, "done"),
        ("qwen.gguf", HOST_2, "waiting"),
        ("tiny", HOST_1, "uploading"),
    ]
    failed = rows[2]
    assert failed["model"] == "qwen:latest"
    assert failed["attempts"] == 3
    assert failed["last_error"] == "connection refused"
    assert failed["digests"] == {"qwen.gguf": DIGEST_A}
    assert 590 <= failed["next_retry_in"] <= 600
    assert failed["next_retry_at"].endswith("+00:00")
    assert rows[0]["note"] == "pending: 1024 of 4096 bytes present"
    assert rows[0]["kind"] == "gguf"
    assert rows[3]["digests"] == {"tiny/model.safetensors": DIGEST_B, "tiny/config.json": DIGEST_A}


def test_status_reads_while_a_writer_holds_a_transaction_open(
    tmp_path: Path, config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The daemon keeps its connection open and writes in batches; WAL lets status read the
    # last committed state meanwhile, without waiting for the writer.
    with StateStore.open(tmp_path / "state") as daemon:
        fill(daemon, tmp_path / "drop", time.time() + 60)
        with daemon.batch():
            daemon.set_host_state("qwen.gguf", HOST_2, HostState.UPLOADING)
            # Read while the transaction stays open: a reader that had to wait for the writer
            # would sit out the busy timeout and fail with "database is locked".
            rows = status_json(capsys, config)
        assert [r["state"] for r in rows if r["host"] == HOST_2] == ["waiting"]
        rows = status_json(capsys, config)
        assert [r["state"] for r in rows if r["host"] == HOST_2] == ["uploading"]


def test_the_table_aligns_columns_and_shortens_digests(
    tmp_path: Path, config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with StateStore.open(tmp_path / "state") as store:
        fill(store, tmp_path / "drop", time.time() + 600)
    assert main(["status", "--config", config]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["PATH", "HOST", "STATE"]
    state_column = lines[0].index("STATE")
    assert [line[state_column:].split()[0] for line in lines[1:]] == [
        "pending",
        "done",
        "waiting",
        "uploading",
    ]
    assert "a1a1a1a1a1a1" in lines[2]
    assert DIGEST_A not in "\n".join(lines)
    assert "(in 6" in lines[3] or "(in 5" in lines[3]  # about 600 s from now
    assert lines[1].endswith("pending: 1024 of 4096 bytes present")
    assert lines[3].endswith("connection refused")


def test_a_missing_state_store_is_reported_with_exit_0(
    tmp_path: Path, config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--json", "--config", config]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == []
    assert "no state store yet" in captured.err
    assert not (tmp_path / "state").exists()  # status never creates anything
    assert main(["status", "--config", config]) == 0
    assert "no state store yet" in capsys.readouterr().out


def test_an_empty_state_store_says_so(
    tmp_path: Path, config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    StateStore.open(tmp_path / "state").close()
    assert main(["status", "--config", config]) == 0
    assert "no artifacts recorded yet" in capsys.readouterr().out
    assert status_json(capsys, config) == []


def test_a_state_store_from_a_newer_dropzone_is_a_configuration_error(
    tmp_path: Path, config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    StateStore.open(tmp_path / "state").close()
    conn = sqlite3.connect(tmp_path / "state" / "state.sqlite3")
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    assert main(["status", "--config", config]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dropzone: state_dir: ")
    assert "schema version 99" in err


def test_short_digests_show_the_first_file_and_how_many_more() -> None:
    assert short_digests({}) == "-"
    assert short_digests({"a": DIGEST_A}) == "a1a1a1a1a1a1"
    assert short_digests({"b": DIGEST_B, "a": DIGEST_A, "c": DIGEST_B}) == "a1a1a1a1a1a1 +2"


def test_next_retry_is_local_time_with_the_seconds_left() -> None:
    now = time.time()
    assert next_retry(None, now) == "-"
    assert next_retry(now + 42.2, now).endswith("(in 42 s)")
    assert next_retry(now - 5, now).endswith("(due)")
    later = next_retry(now + 3 * 86400, now)
    assert later.split()[0].count("-") == 2  # another day: the date is shown

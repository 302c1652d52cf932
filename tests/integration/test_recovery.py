"""Recovery an operator can use (issue #11): a host that comes back is noticed at once
(``host.up``), a refusal that needs a fix on the server side waits long and says so, and
touching a refused artifact retries it."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from dropzone.testing.builders import build_gguf
from dropzone.testing.ollama import Emulator
from dropzone.testing.waiting import wait_until


@pytest.mark.slow
def test_a_host_that_comes_back_is_noticed_without_waiting_for_the_backoff(
    start: Any, drop: Path, emulator: Emulator
) -> None:
    build_gguf(drop / "Back.gguf")
    emulator.stop()
    daemon = start()
    daemon.wait_for("host.down", host=emulator.url)
    # A file dropped during the outage waits for the host with the rest, without trying it.
    build_gguf(drop / "During.gguf", seed=3)
    daemon.wait_for("artifact.detected", path=str(drop / "During.gguf"))
    emulator.start()
    daemon.wait_for("host.up", host=emulator.url, timeout=10)
    daemon.wait_for("model.created", model="back:latest", timeout=10)
    daemon.wait_for("model.created", model="during:latest", timeout=10)
    # One retry was scheduled (the first failure); the probe, not the backoff, resumed.
    assert [e["path"] for e in daemon.find("retry.scheduled")] == [str(drop / "Back.gguf")]
    assert not daemon.find("ollama.unreachable", path=str(drop / "During.gguf"))


def test_a_proxy_body_limit_is_a_server_side_refusal_with_a_long_backoff(
    start: Any, drop: Path, emulator: Emulator
) -> None:
    build_gguf(drop / "Big.gguf")
    emulator.faults.fail_next(1, status=413, path_prefix="/api/blobs/", method="POST")
    daemon = start()
    refused = daemon.wait_for("artifact.refused", host=emulator.url)
    assert refused["status"] == 413 and "proxy" in refused["fix"]
    row = daemon.daemon.state.host_state("Big.gguf", emulator.url)
    assert row is not None and row.next_retry_at is not None
    assert row.next_retry_at - time.time() >= 600


def test_touching_a_refused_artifact_retries_it(
    start: Any, drop: Path, emulator: Emulator
) -> None:
    gguf = build_gguf(drop / "Touched.gguf")
    emulator.faults.fail_next(1, status=400, path_prefix="/api/create")
    daemon = start()
    daemon.wait_for("artifact.done", model="touched:latest", result="failed")
    os.utime(gguf)  # touch
    daemon.wait_for("artifact.retry", timeout=15)
    daemon.wait_for("model.created", model="touched:latest", timeout=15)


@pytest.mark.slow
def test_work_held_for_a_down_host_is_visible_in_the_store_written_once(
    start: Any, drop: Path, emulator: Emulator
) -> None:
    # An operator (status, metrics) sees every artifact waiting for the host, not only the one
    # that tried first; the row is written once, not at every look.
    build_gguf(drop / "First.gguf")
    emulator.stop()
    daemon = start()
    daemon.wait_for("host.down", host=emulator.url)
    build_gguf(drop / "During.gguf", seed=3)
    store = daemon.daemon.state

    def held() -> Any:
        return store.host_state("During.gguf", emulator.url)

    wait_until(lambda: held() is not None, timeout=10)
    row = held()
    assert str(row.state) == "ready"
    assert "down" in (row.last_error or "")
    written = row.updated_at
    looks = len(daemon.find("scan.done"))
    daemon.daemon.request_rescan()
    daemon.wait_for("scan.done", count=looks + 1)
    assert held().updated_at == written
    emulator.start()
    daemon.wait_for("model.created", model="during:latest", timeout=40)
    assert str(held().state) == "done"

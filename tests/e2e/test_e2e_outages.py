"""An Ollama outage, server errors, a cut connection or a killed daemon lose nothing and
repeat nothing: the model is created exactly once, from a blob with the right digest."""

from __future__ import annotations

import signal
from collections.abc import Callable
from datetime import datetime

import pytest
from e2e_env import Dropzone, digest_of

from dropzone.testing.builders import build_gguf
from dropzone.testing.ollama import Emulator


def seconds_between(earlier: dict[str, object], later: dict[str, object]) -> float:
    start = datetime.fromisoformat(str(earlier["timestamp"]))
    return (datetime.fromisoformat(str(later["timestamp"])) - start).total_seconds()


def assert_created_once(emulator: Emulator, model: str, digest: str) -> None:
    assert emulator.counters.creates(model) == 1
    assert emulator.manifest(model) is not None
    assert emulator.has_blob(digest), "the blob the model was made from is on the server"


def test_a_host_down_at_start_gets_the_model_once_it_comes_up(
    dropzone: Dropzone, second_emulator: Emulator
) -> None:
    gguf = build_gguf(dropzone.drop / "Patient.gguf")
    daemon = dropzone.run(hosts=[second_emulator.url])
    daemon.wait_for("ollama.unreachable", host=second_emulator.url)
    daemon.wait_for("retry.scheduled", host=second_emulator.url, attempts=1)
    # The host is down: its work waits for a probe to see it back, not one retry per artifact.
    daemon.wait_for("host.down", host=second_emulator.url)
    assert not daemon.find("model.failed"), "an unreachable host is not a permanent failure"

    second_emulator.start()
    daemon.wait_for("host.up", host=second_emulator.url)
    daemon.wait_for("model.created", model="patient:latest", host=second_emulator.url)
    assert_created_once(second_emulator, "patient:latest", digest_of(gguf))
    assert len(daemon.find("retry.scheduled")) == 1, "retried while the host was down"


def test_server_errors_are_retried_and_the_model_is_created_once(
    dropzone: Dropzone, emulator: Emulator
) -> None:
    emulator.faults.fail_next(1, path_prefix="/api/blobs/")
    emulator.faults.fail_next(1, path_prefix="/api/create")
    gguf = build_gguf(dropzone.drop / "Flaky.gguf")
    daemon = dropzone.run()

    daemon.wait_for("model.created", model="flaky:latest", timeout=20)
    retries = daemon.find("retry.scheduled", model="flaky:latest")
    assert len(retries) == 2, retries
    assert all(r["level"] == "warning" for r in retries)
    assert_created_once(emulator, "flaky:latest", digest_of(gguf))
    assert emulator.counters.blob_bodies_read(digest_of(gguf)) == 1


def test_an_upload_cut_midway_is_retried_and_the_blob_digest_is_right(
    dropzone: Dropzone, emulator: Emulator
) -> None:
    gguf = build_gguf(dropzone.drop / "Cut-Off.gguf", tensor_elems=128 * 1024)
    digest = digest_of(gguf)
    emulator.faults.cut_upload(after_bytes=100 * 1024)
    daemon = dropzone.run()

    daemon.wait_for("model.created", model="cut-off:latest", timeout=20)
    assert daemon.find("retry.scheduled", model="cut-off:latest")
    assert emulator.counters.blob_bodies_read(digest) == 2, "cut once, then sent whole"
    assert_created_once(emulator, "cut-off:latest", digest)
    assert emulator.blob_path(digest).stat().st_size == gguf.stat().st_size


def stall_uploads_after_first_head(
    emulator: Emulator, digest: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hold the blob POST that follows the first HEAD of ``digest``.

    ``faults.stall`` matches paths only, and a blob's HEAD and POST share one path: armed
    beforehand it would hold the HEAD. So it is armed from inside the emulator, as the HEAD
    is counted and before it is answered: the POST that follows is certainly held."""
    record: Callable[[str], None] = emulator.counters.record_blob_head

    def record_then_stall(seen: str) -> None:
        record(seen)
        if seen == digest:
            emulator.faults.stall(path_prefix="/api/blobs/")

    monkeypatch.setattr(emulator.counters, "record_blob_head", record_then_stall)


def test_a_daemon_killed_during_an_upload_resumes_after_restart_and_creates_once(
    dropzone: Dropzone, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Bigger than the socket buffers: the killed daemon is blocked in the middle of the body.
    gguf = build_gguf(dropzone.drop / "Killed.gguf", tensor_elems=1024 * 1024)
    digest = digest_of(gguf)
    stall_uploads_after_first_head(emulator, digest, monkeypatch)
    first = dropzone.run()
    assert emulator.faults.wait_held(1, timeout=15), first.transcript()
    assert emulator.counters.blob_posts(digest) == 0  # held before it was even counted
    first.kill()
    monkeypatch.undo()
    emulator.faults.release()

    second = dropzone.run()
    second.wait_for("model.created", model="killed:latest")
    assert_created_once(emulator, "killed:latest", digest)
    assert emulator.blob_path(digest).stat().st_size == gguf.stat().st_size
    assert not second.find("hash.done"), "the digest committed before the kill was reused"


def test_two_hosts_one_down_the_live_one_gets_the_model_at_once_the_other_when_back(
    dropzone: Dropzone, emulator: Emulator, second_emulator: Emulator
) -> None:
    gguf = build_gguf(dropzone.drop / "Everywhere.gguf")
    daemon = dropzone.run(hosts=[emulator.url, second_emulator.url])
    daemon.wait_for("model.created", model="everywhere:latest", host=emulator.url)
    daemon.wait_for("retry.scheduled", host=second_emulator.url)

    second_emulator.start()
    daemon.wait_for("model.created", model="everywhere:latest", host=second_emulator.url)
    since = daemon.rescan()
    assert not daemon.find("artifact.ready", since=since)
    assert_created_once(emulator, "everywhere:latest", digest_of(gguf))
    assert_created_once(second_emulator, "everywhere:latest", digest_of(gguf))
    assert emulator.counters.blob_bodies_read(digest_of(gguf)) == 1


def test_sigterm_during_a_stalled_create_stops_within_seconds_and_a_restart_finishes(
    dropzone: Dropzone, emulator: Emulator
) -> None:
    gguf = build_gguf(dropzone.drop / "Slow-Server.gguf")
    emulator.faults.stall(path_prefix="/api/create")
    first = dropzone.run()
    assert emulator.faults.wait_held(1, timeout=15), first.transcript()
    first.send(signal.SIGTERM)
    assert first.wait_exit(timeout=5) == 0
    first.wait_for("daemon.stopping")
    emulator.faults.release()

    second = dropzone.run()
    second.wait_for("model.created", model="slow-server:latest")
    assert emulator.manifest("slow-server:latest") is not None
    assert emulator.has_blob(digest_of(gguf))

"""The Daemon in this process against the emulator over real HTTP, for behaviour where a
subprocess adds nothing: hash-slot sharing between a copy in progress and a complete file, the
on_success / on_removed policies, require_sidecar."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import Running, imported
from structlog.testing import LogCapture

from dropzone.config.settings import Settings
from dropzone.fs.identity import FileKey
from dropzone.imports import readiness
from dropzone.imports.policies import _free_name
from dropzone.ollama.client import OllamaClient, make_http_client
from dropzone.service import daemon as daemon_module
from dropzone.service.daemon import Daemon
from dropzone.store.state import StateStore
from dropzone.testing.builders import build_gguf, build_padded_gguf, tensor_data_end
from dropzone.testing.ollama import Emulator
from dropzone.testing.waiting import wait_until


def test_a_complete_file_is_imported_while_another_still_arriving_holds_the_hash_slot(
    start: Any, drop: Path, tmp_path: Path, emulator: Emulator
) -> None:
    # One hash slot, taken by the follower of a copy that does not end during the test: a
    # complete file dropped meanwhile must not wait for that copy (it could last hours).
    daemon = start(max_parallel_hashes=1)
    data = build_gguf(tmp_path / "Arriving.gguf", tensor_elems=64 * 1024).read_bytes()
    arriving = drop / "Arriving.gguf"
    with arriving.open("wb") as out:
        out.write(data[: len(data) // 2])
        out.flush()
        daemon.wait_for("artifact.pending", path=str(arriving), reason="incomplete")
        daemon.wait_for("hash.follow.started", path=str(arriving))

        build_gguf(tmp_path / "Complete.gguf", seed=3).rename(drop / "Complete.gguf")
        daemon.wait_for("model.created", model="complete:latest")
        assert emulator.models() == ["complete:latest"]

        out.write(data[len(data) // 2 :])
    daemon.wait_for("model.created", model="arriving:latest")


def test_on_success_move_puts_the_files_in_imported_and_keeps_the_model(
    start: Any, drop: Path, emulator: Emulator
) -> None:
    gguf = build_gguf(drop / "Moved.gguf")
    (drop / "Moved.toml").write_text('model = "moved"\n')
    content = gguf.read_bytes()
    daemon = start(on_success="move", on_removed="delete")
    daemon.wait_for("artifact.cleaned", model="moved")
    assert (drop / ".imported" / "Moved.gguf").read_bytes() == content
    assert (drop / ".imported" / "Moved.toml").exists()
    assert not gguf.exists()
    # Moving the files away is not their removal: the model stays, even with on_removed=delete.
    daemon.daemon.request_rescan()
    wait_until(lambda: len(daemon.find("scan.done")) >= 2, what="a second scan")
    assert not daemon.find("model.deleted")
    assert emulator.models() == ["moved:latest"]


def test_on_success_delete_frees_the_disk(start: Any, drop: Path, emulator: Emulator) -> None:
    gguf = build_gguf(drop / "Deleted.gguf")
    daemon = start(on_success="delete")
    daemon.wait_for("artifact.cleaned", model="deleted:latest")
    assert not gguf.exists()
    assert emulator.models() == ["deleted:latest"]


def test_on_removed_delete_deletes_the_model_when_its_file_goes(
    start: Any, drop: Path, emulator: Emulator
) -> None:
    gguf, daemon = imported(start, drop / "Gone.gguf", on_removed="delete")
    gguf.unlink()
    daemon.wait_for("model.deleted", model="gone:latest", host=emulator.url)
    assert emulator.models() == []


def test_on_removed_delete_retries_a_failed_delete_at_the_next_full_rescan(
    start: Any, drop: Path, emulator: Emulator
) -> None:
    gguf, daemon = imported(start, drop / "Later.gguf", on_removed="delete")
    emulator.faults.fail_next(1, status=500, path_prefix="/api/delete")
    gguf.unlink()
    failed = daemon.wait_for("model.delete_failed", model="later:latest")
    assert "rescan" in failed["fix"]
    assert emulator.models() == ["later:latest"]
    assert not daemon.find("artifact.removed")

    daemon.daemon.request_rescan()
    daemon.wait_for("model.deleted", model="later:latest", found=True)
    daemon.wait_for("artifact.removed", policy="delete")
    assert emulator.models() == []
    # Done: a further rescan has nothing left to delete.
    daemon.daemon.request_rescan()
    wait_until(lambda: len(daemon.find("scan.done")) >= 3, what="a third scan")
    assert len(daemon.find("model.deleted")) == 1
    assert len(daemon.find("artifact.removed")) == 1


def test_on_removed_delete_counts_a_model_already_gone_as_deleted(
    start: Any, drop: Path, emulator: Emulator
) -> None:
    gguf, daemon = imported(start, drop / "Twice.gguf", on_removed="delete")
    with make_http_client() as http:
        OllamaClient(emulator.url, http).delete("twice:latest")  # the operator was first
    gguf.unlink()
    daemon.wait_for("model.deleted", model="twice:latest", found=False)
    daemon.wait_for("artifact.removed", policy="delete")
    assert not daemon.find("model.delete_failed")


def test_on_removed_keep_keeps_the_model_when_its_file_goes(
    start: Any, drop: Path, emulator: Emulator
) -> None:
    gguf, daemon = imported(start, drop / "Kept.gguf")
    gguf.unlink()
    daemon.wait_for("artifact.removed", policy="keep")
    assert emulator.models() == ["kept:latest"]


def test_require_sidecar_leaves_a_bare_file_pending_and_imports_it_once_a_sidecar_comes(
    start: Any, drop: Path, emulator: Emulator
) -> None:
    build_gguf(drop / "Bare.gguf")
    daemon = start(require_sidecar=True)
    daemon.wait_for("artifact.pending", path=str(drop / "Bare.gguf"))
    assert emulator.counters.requests == [
        r for r in emulator.counters.requests if r.path == "/api/version"
    ]
    (drop / "Bare.toml").write_text('model = "dressed"\n')
    daemon.wait_for("model.created", model="dressed")
    assert emulator.models() == ["dressed:latest"]


@pytest.mark.slow
def test_a_wrong_cached_digest_is_forgotten_on_digest_mismatch_and_the_file_rehashed(
    start: Any, drop: Path, tmp_path: Path, emulator: Emulator
) -> None:
    # As if the file had been rewritten in place with its size and mtime kept: the cache
    # says one digest, the bytes have another. The server's 400 "digest mismatch" must lead
    # to a fresh hash, not to a model made from the wrong digest or a permanent failure.
    gguf = build_gguf(drop / "Rewritten.gguf")
    store = StateStore.open(tmp_path / "state")
    store.put_digest(FileKey.from_stat(gguf.stat()), "sha256:" + "0" * 64)
    store.close()
    daemon = start()
    daemon.wait_for("blob.digest_mismatch")
    daemon.wait_for("model.created", model="rewritten:latest")
    right = "sha256:" + hashlib.sha256(gguf.read_bytes()).hexdigest()
    assert daemon.wait_for("hash.done", path=str(gguf))["digest"] == right
    assert emulator.has_blob(right)
    assert emulator.counters.creates("rewritten:latest") == 1


def test_a_gguf_padded_after_its_last_tensor_is_imported_and_hashed_once(
    start: Any, drop: Path, emulator: Emulator
) -> None:
    # Issue 11: gguf-py pads after the last tensor, so the file is longer than the end of its
    # tensor data. The hasher once demanded that length exactly: the daemon re-read such a
    # file about 5 times a second and never imported it.
    gguf = build_padded_gguf(drop / "Padded.gguf")
    assert tensor_data_end(gguf) < gguf.stat().st_size
    digest = "sha256:" + hashlib.sha256(gguf.read_bytes()).hexdigest()
    daemon = start()
    daemon.wait_for("model.created", model="padded:latest")
    assert emulator.has_blob(digest)
    # A full rescan after the import finds it done: nothing is hashed again.
    daemon.daemon.request_rescan()
    wait_until(lambda: len(daemon.find("scan.done")) >= 2, what="a second scan")
    assert [e["digest"] for e in daemon.find("hash.done", path=str(gguf))] == [digest]


def test_moving_onto_an_earlier_import_of_the_same_name_keeps_both(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m.1").mkdir()
    assert _free_name(tmp_path / "m") == tmp_path / "m.2"
    assert _free_name(tmp_path / "new") == tmp_path / "new"


def test_an_idle_daemon_waits_instead_of_spinning(
    settings_for: Callable[..., Settings], capture: LogCapture
) -> None:
    # Regression: the loop once computed its wake-up from a "last reconcile" of 0.0, which on
    # a machine up for over an hour lies in the past: every wait returned at once (100 % CPU).
    daemon = Daemon(settings_for(settle_seconds=5), env={})
    timeouts: list[float | None] = []
    drain = daemon.queue.drain

    def recording_drain(timeout: float | None = None) -> Any:
        timeouts.append(timeout)
        return drain(timeout)

    daemon.queue.drain = recording_drain  # type: ignore[method-assign]
    running = Running(daemon, capture)
    try:
        wait_until(lambda: len(timeouts) >= 3, timeout=10, what="three waits of the idle loop")
        assert all(t is not None and t > 0 for t in timeouts[:3]), timeouts[:10]
    finally:
        assert running.stop() == 0


def _copy_in(source: Path, target: Path) -> str:
    """Write ``source`` to ``target`` as a copy tool does (open, write, close); its digest."""
    data = source.read_bytes()
    with target.open("wb") as out:
        out.write(data)
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def early_uploads(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Early uploads for any size, and a quiet period after close that only the test ends."""
    monkeypatch.setattr(daemon_module, "EARLY_UPLOAD_MIN_BYTES", 0)
    monkeypatch.setattr(readiness, "CLOSE_GRACE_SECONDS", 3600.0)
    return monkeypatch


def test_a_closed_complete_file_is_uploaded_while_it_settles_and_created_once_quiet(
    start: Any, drop: Path, tmp_path: Path, emulator: Emulator, early_uploads: pytest.MonkeyPatch
) -> None:
    daemon = start(settle_seconds=3600)
    digest = _copy_in(build_gguf(tmp_path / "Early.gguf", seed=5), drop / "Early.gguf")
    daemon.wait_for("blob.uploaded", digest=digest, early=True)
    assert emulator.has_blob(digest)
    # Only the upload went ahead: no create, and the artifact is still settling.
    assert emulator.counters.creates("early:latest") == 0
    assert not daemon.find("artifact.ready")
    assert daemon.find("artifact.pending", path=str(drop / "Early.gguf"), reason="settling")

    early_uploads.setattr(readiness, "CLOSE_GRACE_SECONDS", 0.0)  # the quiet period is over
    daemon.daemon.request_rescan()
    daemon.wait_for("model.created", model="early:latest")
    # The import of record found the blob there: its bytes crossed the wire once.
    assert daemon.find("blob.exists", digest=digest, model="early:latest")
    assert emulator.counters.blob_bodies_read(digest) == 1
    assert emulator.models() == ["early:latest"]


def test_a_file_rewritten_after_its_early_upload_is_created_from_its_new_bytes(
    start: Any, drop: Path, tmp_path: Path, emulator: Emulator, early_uploads: pytest.MonkeyPatch
) -> None:
    daemon = start(settle_seconds=3600)
    target = drop / "Redone.gguf"
    first = _copy_in(build_gguf(tmp_path / "v1.gguf", seed=6), target)
    daemon.wait_for("blob.uploaded", digest=first, early=True)

    second = _copy_in(build_gguf(tmp_path / "v2.gguf", seed=7), target)
    daemon.wait_for("blob.uploaded", digest=second, early=True)
    early_uploads.setattr(readiness, "CLOSE_GRACE_SECONDS", 0.0)
    daemon.daemon.request_rescan()
    daemon.wait_for("model.created", model="redone:latest")
    # The import of record used the new digest; the early blob of the old bytes is unused.
    assert daemon.find("blob.exists", digest=second, model="redone:latest")
    assert not [
        e for e in daemon.find("blob.exists", model="redone:latest") if e["digest"] == first
    ]
    assert emulator.counters.creates("redone:latest") == 1


def test_one_file_dropped_twice_is_uploaded_once(
    start: Any, drop: Path, tmp_path: Path, emulator: Emulator
) -> None:
    # Two artifacts of the same bytes (two sidecars, two models): both imports want the blob at
    # once, and the second must find it there instead of sending it again beside the first.
    source = build_gguf(tmp_path / "Same.gguf", tensor_elems=256 * 1024)
    for name in ("Twin-a", "Twin-b"):
        digest = _copy_in(source, drop / f"{name}.gguf")
    daemon = start(max_parallel_hashes=2)
    daemon.wait_for("model.created", model="twin-a:latest")
    daemon.wait_for("model.created", model="twin-b:latest")
    assert emulator.counters.blob_bodies_read(digest) == 1


def test_a_failed_early_upload_is_left_to_the_import_of_record(
    start: Any, drop: Path, tmp_path: Path, emulator: Emulator, early_uploads: pytest.MonkeyPatch
) -> None:
    daemon = start(settle_seconds=3600)
    emulator.faults.fail_next(1, status=500, path_prefix="/api/blobs/")
    digest = _copy_in(build_gguf(tmp_path / "Flaky.gguf", seed=8), drop / "Flaky.gguf")
    abandoned = daemon.wait_for("blob.upload.abandoned", path=str(drop / "Flaky.gguf"))
    assert abandoned["early"] is True and "500" in abandoned["error"]
    assert not emulator.has_blob(digest)

    early_uploads.setattr(readiness, "CLOSE_GRACE_SECONDS", 0.0)
    daemon.daemon.request_rescan()
    daemon.wait_for("model.created", model="flaky:latest")
    assert daemon.find("blob.uploaded", digest=digest, model="flaky:latest")
    assert not daemon.find("retry.scheduled")

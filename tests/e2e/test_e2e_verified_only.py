"""The real process acts only on what was verified (issue #10): a same-size version copied
with ``cp -p`` over an imported file is imported after SIGHUP and after a restart, and an empty
folder in place of the drop folder (an unmounted share) deletes no model."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from e2e_env import Dropzone, digest_of

from dropzone.testing.builders import build_gguf, cp_p_same_size_over
from dropzone.testing.ollama import Emulator


def _cp_p_same_size(target: Path, source: Path) -> str:
    cp_p_same_size_over(source, target)
    return digest_of(target)


def test_cp_p_of_a_same_size_version_is_imported_after_sighup_and_after_a_restart(
    dropzone: Dropzone, emulator: Emulator, tmp_path: Path
) -> None:
    gguf = build_gguf(dropzone.drop / "Same.gguf", seed=1)
    daemon = dropzone.run()
    daemon.wait_for("artifact.done", model="same:latest", result="done")

    second = _cp_p_same_size(gguf, build_gguf(tmp_path / "v2.gguf", seed=2))
    since = daemon.rescan()  # SIGHUP
    daemon.wait_for("blob.uploaded", digest=second, since=since)
    daemon.wait_for("artifact.done", model="same:latest", result="done", since=since)
    assert emulator.counters.creates("same:latest") == 2
    assert daemon.stop() == 0

    third = _cp_p_same_size(gguf, build_gguf(tmp_path / "v3.gguf", seed=3))
    restarted = dropzone.run()
    restarted.wait_for("blob.uploaded", digest=third)
    restarted.wait_for("artifact.done", model="same:latest", result="done")
    assert emulator.counters.creates("same:latest") == 3


def test_an_unmounted_share_at_start_deletes_no_model(
    dropzone: Dropzone, emulator: Emulator, tmp_path: Path
) -> None:
    build_gguf(dropzone.drop / "Kept.gguf")
    daemon = dropzone.run(DROPZONE_ON_REMOVED="delete")
    daemon.wait_for("artifact.done", model="kept:latest", result="done")
    assert daemon.stop() == 0

    dropzone.drop.rename(tmp_path / "share")
    dropzone.drop.mkdir()  # the empty mount point
    again = dropzone.run(wait=False, DROPZONE_ON_REMOVED="delete")
    suspicious = again.wait_for("drop_dir.suspicious")
    assert suspicious["path"] == str(dropzone.drop) and "mount" in suspicious["fix"]
    again.send(signal.SIGHUP)  # a rescan looks at nothing either
    assert again.stop() == 0
    assert not again.find("scan.done")
    assert not again.find("model.deleted")
    assert emulator.models() == ["kept:latest"]
    assert os.listdir(dropzone.drop) == [], "the empty mount point was written to"


def test_a_create_the_server_finished_before_a_kill_is_not_sent_again(
    dropzone: Dropzone, emulator: Emulator
) -> None:
    build_gguf(dropzone.drop / "Once.gguf")
    # The create is done on the server; the daemon is killed while it confirms it.
    emulator.faults.stall(path_prefix="/api/show")
    daemon = dropzone.run()
    assert emulator.faults.wait_held(1, timeout=15)
    assert emulator.models() == ["once:latest"]
    daemon.kill()
    emulator.faults.release()
    assert emulator.counters.creates("once:latest") == 1

    restarted = dropzone.run()
    restarted.wait_for("artifact.done", model="once:latest", result="done")
    assert emulator.counters.creates("once:latest") == 1, "the create was sent twice"
    since = restarted.rescan()
    assert not restarted.find("model.created", since=since)
    assert emulator.counters.creates("once:latest") == 1


def test_a_scan_of_an_unmounted_share_exits_1_and_says_why(
    dropzone: Dropzone, emulator: Emulator, tmp_path: Path
) -> None:
    # A scan that could look at nothing did not do its job: cron and scripts must see that.
    kept = build_gguf(dropzone.drop / "Kept.gguf")
    long_ago = kept.stat().st_mtime - 3600  # quiet for longer than settle_seconds: ready now
    os.utime(kept, (long_ago, long_ago))
    code, first = dropzone.scan(DROPZONE_ON_REMOVED="delete")
    assert code == 0, first.transcript()
    assert emulator.models() == ["kept:latest"]

    dropzone.drop.rename(tmp_path / "share")
    dropzone.drop.mkdir()  # the empty mount point
    code, scan = dropzone.scan(DROPZONE_ON_REMOVED="delete")
    assert code == 1, scan.transcript()
    suspicious = scan.find("drop_dir.suspicious")
    assert suspicious and "mount" in suspicious[0]["fix"]
    assert not scan.find("model.deleted")
    assert emulator.models() == ["kept:latest"]

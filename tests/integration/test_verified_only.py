"""Act only on what was verified, while it still is (issue #10): file identity travels with the
work, cleanup removes only what was imported, nothing outside the drop folder is opened, and
nothing destructive happens on a drop folder that is not the one recorded.

Each test runs the real Daemon against the emulator over real HTTP, on real files."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

from daemon_helpers import imported

from dropzone.testing.builders import (
    build_gguf,
    build_mmproj_gguf,
    build_safetensors_model,
    build_split_gguf,
    cp_p_same_size_over,
)
from dropzone.testing.ollama import Emulator
from dropzone.testing.waiting import wait_until


def _digest(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def _made_from(emulator: Emulator, model: str, digest: str, creates: int = 2) -> bool:
    """``model`` was created ``creates`` times, the last after ``digest`` reached the server.
    (A v0.30+ server stores a validated copy of a GGUF: the layer has another digest.)"""
    return emulator.counters.creates(model) >= creates and emulator.has_blob(digest)


def _layers(emulator: Emulator, model: str) -> set[str]:
    manifest = emulator.manifest(model)
    assert manifest is not None, f"{model} has no manifest"
    return {layer["digest"] for layer in manifest["layers"]}


# --- 1. cleanup removes only the recipe's own files ----------------------------------------


def test_delete_keeps_a_gguf_in_a_subfolder_of_a_safetensors_folder_and_the_notes(
    start: Any, drop: Path, emulator: Emulator
) -> None:
    repo = build_safetensors_model(drop / "repo")
    (repo / "README.md").write_text("notes beside the weights\n")
    (repo / "repo.toml").unlink(missing_ok=True)
    sub = build_gguf(drop / "repo" / "gguf" / "Sub.gguf", seed=9)
    daemon = start(on_success="delete")
    daemon.wait_for("model.created", model="sub:latest")
    daemon.wait_for("model.created", model="repo:latest")
    wait_until(lambda: not (repo / "model.safetensors").exists(), what="the weights deleted")
    wait_until(lambda: not sub.exists(), what="the GGUF deleted after its own import")
    assert (repo / "README.md").read_text() == "notes beside the weights\n"
    assert sorted(emulator.models()) == ["repo:latest", "sub:latest"]


def test_a_projector_shared_by_two_models_goes_only_after_both_are_made(
    start: Any, drop: Path, emulator: Emulator
) -> None:
    folder = drop / "vision"
    build_gguf(folder / "Alpha.gguf", seed=1)
    build_gguf(folder / "Beta.gguf", seed=2)
    # Typed, so the server keeps it as uploaded (an untyped one is rewritten with "mlp").
    shared = build_mmproj_gguf(folder / "mmproj-shared.gguf", projector_type="mlp")
    proj_digest = _digest(shared)
    # One of the two creates fails once: that model is made after the other one's cleanup.
    emulator.faults.fail_next(1, status=500, path_prefix="/api/create")
    daemon = start(on_success="delete")
    daemon.wait_for("retry.scheduled")
    daemon.wait_for("model.created", model="alpha:latest", timeout=30)
    daemon.wait_for("model.created", model="beta:latest", timeout=30)
    assert proj_digest in _layers(emulator, "alpha:latest")
    assert proj_digest in _layers(emulator, "beta:latest")
    wait_until(lambda: not any(folder.glob("*.gguf")), what="all three files deleted")


# --- 2. a new version renamed in while create runs is imported, not deleted ----------------


def test_a_new_version_renamed_in_during_create_is_imported_not_deleted(
    start: Any, drop: Path, tmp_path: Path, emulator: Emulator
) -> None:
    target = build_gguf(drop / "Model.gguf", seed=1)
    emulator.faults.stall(path_prefix="/api/create")
    daemon = start(on_success="delete")
    assert emulator.faults.wait_held(1, timeout=15)
    newer = build_gguf(tmp_path / "Model.gguf", seed=2)
    new_digest = _digest(newer)
    os.replace(newer, target)
    emulator.faults.release()
    daemon.wait_for("model.created", model="model:latest")
    # The first create finished with the old bytes; the new version must be made next.
    wait_until(
        lambda: _made_from(emulator, "model:latest", new_digest),
        timeout=20,
        what="the model made from the new version",
    )
    wait_until(lambda: not target.exists(), what="the new version cleaned after its import")
    assert emulator.counters.creates("model:latest") == 2


def test_a_sidecar_replaced_during_create_is_applied_and_not_deleted(
    start: Any, drop: Path, tmp_path: Path, emulator: Emulator
) -> None:
    build_gguf(drop / "Said.gguf")
    sidecar = drop / "Said.toml"
    sidecar.write_text('model = "said"\nsystem = "first"\n')
    emulator.faults.stall(path_prefix="/api/create")
    start(on_success="delete")
    assert emulator.faults.wait_held(1, timeout=15)
    replacement = tmp_path / "Said.toml"
    replacement.write_text('model = "said"\nsystem = "second"\n')
    os.replace(replacement, sidecar)
    emulator.faults.release()
    wait_until(lambda: emulator.counters.creates("said:latest") == 2, timeout=20, what="2 creates")
    wait_until(lambda: not sidecar.exists(), what="cleaned after the second import")
    manifest = emulator.manifest("said:latest")
    assert manifest is not None
    systems = [
        emulator.blob_path(layer["digest"]).read_text()
        for layer in manifest["layers"]
        if layer["mediaType"].endswith(".system")
    ]
    assert systems == ["second"]


def test_a_shard_replaced_during_create_is_imported_as_a_new_version(
    start: Any, drop: Path, tmp_path: Path, emulator: Emulator
) -> None:
    shards = build_split_gguf(drop / "split", "Big", 3)
    emulator.faults.stall(path_prefix="/api/create")
    daemon = start(on_success="delete")
    assert emulator.faults.wait_held(1, timeout=15)
    newer = build_split_gguf(tmp_path / "v2", "Big", 3, tensor_elems=64)
    # One shard at a time, as a copy tool would, with other content in the middle one.
    replacement = build_gguf(tmp_path / "mid.gguf", split=(1, 3), seed=42, tensor_prefix="blk.1")
    os.replace(replacement, shards[1])
    new_digest = _digest(shards[1])
    del newer
    emulator.faults.release()
    wait_until(
        lambda: _made_from(emulator, "big:latest", new_digest),
        timeout=20,
        what="the model made with the new shard",
    )
    wait_until(lambda: not any(shard.exists() for shard in shards), what="all shards cleaned")
    assert not daemon.find("artifact.error")


# --- 3. a drop folder that is not the one recorded ----------------------------------------


def test_an_empty_folder_in_place_of_the_drop_folder_at_start_deletes_no_model(
    start: Any, drop: Path, tmp_path: Path, emulator: Emulator
) -> None:
    _, first = imported(start, drop / "Kept.gguf", on_removed="delete")
    assert first.stop() == 0
    drop.rename(tmp_path / "share-contents")
    drop.mkdir()  # the mount point of an unmounted share
    daemon = start(on_removed="delete")
    daemon.wait_for("drop_dir.suspicious")
    assert not daemon.find("model.deleted")
    assert emulator.models() == ["kept:latest"]


def test_a_missing_drop_folder_is_not_created_and_deletes_no_model(
    start: Any, drop: Path, tmp_path: Path, emulator: Emulator
) -> None:
    _, first = imported(start, drop / "Kept.gguf", on_removed="delete")
    assert first.stop() == 0
    drop.rename(tmp_path / "away")
    daemon = start(on_removed="delete")
    daemon.wait_for("drop_dir.suspicious")
    assert not drop.exists()
    assert emulator.models() == ["kept:latest"]
    # The folder comes back (the share is mounted): work goes on, removals count again.
    (tmp_path / "away").rename(drop)
    daemon.daemon.request_rescan()
    wait_until(lambda: len(daemon.find("scan.done")) >= 1, what="a scan of the folder")
    (drop / "Kept.gguf").unlink()
    daemon.daemon.request_rescan()
    daemon.wait_for("model.deleted", model="kept:latest")


def test_a_drop_folder_replaced_while_running_deletes_no_model(
    start: Any, drop: Path, tmp_path: Path, emulator: Emulator
) -> None:
    _, daemon = imported(start, drop / "Kept.gguf", on_removed="delete")
    drop.rename(tmp_path / "elsewhere")
    drop.mkdir()
    daemon.daemon.request_rescan()
    daemon.wait_for("drop_dir.suspicious")
    assert not daemon.find("model.deleted")
    assert emulator.models() == ["kept:latest"]


# --- 4. a same-size rewrite with its mtime set back ---------------------------------------


def _cp_p_same_size_over(target: Path, tmp_path: Path) -> str:
    """``cp -p`` of a new version with the old file's size and mtime over ``target``."""
    cp_p_same_size_over(build_gguf(tmp_path / "newer.gguf", seed=77), target)
    return _digest(target)


def test_cp_p_of_a_same_size_version_is_imported_after_a_rescan(
    start: Any, drop: Path, tmp_path: Path, emulator: Emulator
) -> None:
    target, daemon = imported(start, drop / "Same.gguf")
    new_digest = _cp_p_same_size_over(target, tmp_path)
    daemon.daemon.request_rescan()
    wait_until(
        lambda: _made_from(emulator, "same:latest", new_digest), timeout=20, what="new version"
    )


def test_cp_p_of_a_same_size_version_is_imported_after_a_restart(
    start: Any, drop: Path, tmp_path: Path, emulator: Emulator
) -> None:
    target, daemon = imported(start, drop / "Same.gguf")
    assert daemon.stop() == 0
    new_digest = _cp_p_same_size_over(target, tmp_path)
    start()
    wait_until(
        lambda: _made_from(emulator, "same:latest", new_digest), timeout=20, what="new version"
    )


# --- 6. a file removed between HEAD and upload ---------------------------------------------


def test_a_file_removed_between_head_and_upload_is_no_error(
    start: Any, drop: Path, emulator: Emulator
) -> None:
    gguf = build_gguf(drop / "Fleeting.gguf")
    emulator.faults.stall(path_prefix="/api/blobs/")
    daemon = start()
    assert emulator.faults.wait_held(1, timeout=15)
    gguf.unlink()
    emulator.faults.release()
    daemon.wait_for("artifact.removed")
    assert not daemon.find("artifact.error")
    assert emulator.models() == []


# --- 7. nothing outside the drop folder is opened ------------------------------------------


def test_a_symlink_to_an_outside_folder_made_while_running_is_refused(
    start: Any, drop: Path, tmp_path: Path, emulator: Emulator
) -> None:
    outside = tmp_path / "outside"
    secret = build_gguf(outside / "Secret.gguf", seed=5)
    daemon = start()
    (drop / "x").symlink_to(outside, target_is_directory=True)
    daemon.wait_for("artifact.invalid", path=str(drop / "x"))
    # A file dropped after the link: once it is made, the hint about the link was handled.
    build_gguf(drop / "After.gguf", seed=6)
    daemon.wait_for("artifact.done", model="after:latest")
    assert emulator.models() == ["after:latest"]
    assert not emulator.has_blob(_digest(secret))


def test_a_symlink_to_the_root_is_refused_without_walking_it(
    start: Any, drop: Path, emulator: Emulator
) -> None:
    daemon = start()
    (drop / "root").symlink_to("/", target_is_directory=True)
    daemon.wait_for("artifact.invalid", path=str(drop / "root"))
    assert emulator.models() == []


def test_a_file_swapped_for_a_symlink_out_before_upload_is_not_sent(
    start: Any, drop: Path, tmp_path: Path, emulator: Emulator
) -> None:
    gguf = build_gguf(drop / "Swapped.gguf", seed=1)
    digest = _digest(gguf)
    secret = tmp_path / "secret.bin"
    shutil.copyfile(build_gguf(tmp_path / "Other.gguf", seed=2), secret)
    emulator.faults.stall(path_prefix="/api/blobs/")
    daemon = start()
    assert emulator.faults.wait_held(1, timeout=15)
    link = drop / "link.tmp"
    link.symlink_to(secret)
    os.replace(link, gguf)
    emulator.faults.release()
    daemon.wait_for("artifact.invalid", path=str(gguf))
    assert emulator.counters.blob_bodies_read(digest) == 0
    assert emulator.models() == []


def test_a_folder_that_cannot_be_listed_is_not_taken_for_removed(
    start: Any, drop: Path, emulator: Emulator, monkeypatch: Any
) -> None:
    # EIO while listing a folder of an NFS or FUSE share: its artifacts are not gone. (Injected
    # through os.scandir: no such file system can be mounted here.)
    _, daemon = imported(start, drop / "team" / "Kept.gguf", on_removed="delete")
    real = os.scandir

    def failing(path: Any) -> Any:
        if str(path).endswith("/team"):
            raise OSError(5, "Input/output error", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", failing)
    daemon.daemon.request_rescan()
    daemon.wait_for("scan.unreadable")
    wait_until(lambda: len(daemon.find("scan.done")) >= 2, what="the rescan")
    assert not daemon.find("model.deleted")
    assert emulator.models() == ["kept:latest"]

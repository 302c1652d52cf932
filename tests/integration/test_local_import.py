"""Same host, no upload (issue 17): the real Daemon against the emulator over real HTTP, with
the emulator's store as the host's ``models_dir``, as an operator on the server's machine
would set it. Each blob the server lacks is placed in its store; HEAD before and just before
create, create and confirmation stay as they are; HTTP stays the fallback."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from read_only import read_only

from dropzone.imports.placement import Placed, Placer, Skip
from dropzone.testing.builders import build_gguf
from dropzone.testing.ollama import Emulator
from dropzone.testing.waiting import wait_until


def _digest(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def _host(emulator: Emulator, **more: object) -> list[dict[str, object]]:
    return [{"url": emulator.url, "models_dir": str(emulator.root), **more}]


def test_copy_places_the_blob_and_the_model_is_made_without_an_upload(
    start: Any, drop: Path, emulator: Emulator
) -> None:
    gguf = build_gguf(drop / "Copied.gguf", seed=3)
    digest = _digest(gguf)
    daemon = start(ollama_hosts=_host(emulator, local_import="copy"))
    daemon.wait_for("model.created", model="copied:latest")
    placed = daemon.find("blob.placed", digest=digest)
    assert placed and placed[0]["method"] == "copy" and placed[0]["bytes"] == gguf.stat().st_size
    assert "seconds" in placed[0]
    assert emulator.counters.blob_posts(digest) == 0  # no upload
    assert emulator.counters.blob_heads(digest) >= 2  # HEAD before, and just before create
    assert emulator.blob_path(digest).read_bytes() == gguf.read_bytes()
    assert not daemon.find("blob.uploaded")


def test_link_under_delete_imports_then_the_drop_file_leaves_and_the_blob_stays(
    start: Any, drop: Path, emulator: Emulator
) -> None:
    gguf = build_gguf(drop / "Linked.gguf", seed=4)
    digest, inode = _digest(gguf), gguf.stat().st_ino
    daemon = start(ollama_hosts=_host(emulator, local_import="link"), on_success="delete")
    daemon.wait_for("model.created", model="linked:latest")
    assert daemon.find("blob.placed", digest=digest)[0]["method"] == "link"
    # Cleanup knows the file as the one hashed although the link changed its ctime.
    wait_until(lambda: not gguf.exists(), what="the drop file deleted after the import")
    blob = emulator.blob_path(digest)
    assert blob.stat().st_ino == inode and blob.stat().st_nlink == 1
    assert emulator.counters.blob_posts(digest) == 0


def test_auto_under_keep_copies_here_and_never_links(
    start: Any, drop: Path, emulator: Emulator
) -> None:
    gguf = build_gguf(drop / "Kept.gguf", seed=5)
    digest = _digest(gguf)
    daemon = start(ollama_hosts=_host(emulator))
    daemon.wait_for("model.created", model="kept:latest")
    decided = daemon.find("local_import.method", host=emulator.url)
    assert decided and decided[-1]["method"] in ("reflink", "copy") and decided[-1]["reason"]
    assert emulator.blob_path(digest).stat().st_ino != gguf.stat().st_ino
    assert gguf.stat().st_nlink == 1


def test_a_method_that_cannot_apply_falls_back_to_the_http_upload(
    start: Any, drop: Path, emulator: Emulator
) -> None:
    gguf = build_gguf(drop / "Uploaded.gguf", seed=6)
    digest = _digest(gguf)
    # A hard link under on_success = "keep" would let later writes reach the server's blob.
    daemon = start(ollama_hosts=_host(emulator, local_import="link"))
    daemon.wait_for("model.created", model="uploaded:latest")
    refused = daemon.find("local_import.refused", host=emulator.url)
    assert refused and "on_success" in refused[0]["reason"]
    assert daemon.find("blob.uploaded", digest=digest)
    assert emulator.counters.blob_posts(digest) == 1


@pytest.mark.slow
def test_a_blobs_folder_that_is_not_writable_is_refused_then_http(
    start: Any, drop: Path, emulator: Emulator
) -> None:
    gguf = build_gguf(drop / "Guarded.gguf", seed=7)
    digest = _digest(gguf)
    with read_only(emulator.root / "blobs"):
        daemon = start(ollama_hosts=_host(emulator), on_success="delete")
        daemon.wait_for("local_import.refused")
        # The emulator must store the upload: let it write again once the refusal is made.
    daemon.wait_for("model.created", model="guarded:latest", timeout=30)
    refused = daemon.find("local_import.refused")[0]
    assert "not writable" in refused["reason"] and "ollama" in refused["fix"]
    assert daemon.find("blob.uploaded", digest=digest)
    assert not daemon.find("blob.placed")


def test_an_existing_blob_is_not_touched_and_the_model_is_made(
    start: Any, drop: Path, emulator: Emulator
) -> None:
    gguf = build_gguf(drop / "Present.gguf", seed=8)
    digest = _digest(gguf)
    blob = emulator.blob_path(digest)
    blob.write_bytes(gguf.read_bytes())
    before = blob.stat()
    daemon = start(ollama_hosts=_host(emulator, local_import="copy"))
    daemon.wait_for("model.created", model="present:latest")
    assert daemon.find("blob.exists", digest=digest)
    assert not daemon.find("blob.placed")
    assert blob.stat().st_ino == before.st_ino


def test_a_drop_file_written_after_its_link_is_withdrawn_and_its_new_version_imported(
    start: Any, drop: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    gguf = build_gguf(drop / "Written.gguf", seed=9)
    digest = _digest(gguf)
    real = Placer.place
    written: list[str] = []

    def place_then_write(self: Placer, *args: Any, **kwargs: Any) -> Placed | Skip:
        result = real(self, *args, **kwargs)
        if isinstance(result, Placed) and not written:
            # Another writer, between the link and the check before create.
            written.append("once")
            with gguf.open("r+b") as f:
                f.seek(gguf.stat().st_size - 1)
                f.write(b"\x01")
        return result

    monkeypatch.setattr(Placer, "place", place_then_write)
    daemon = start(ollama_hosts=_host(emulator, local_import="link"), on_success="delete")
    daemon.wait_for("blob.withdrawn", digest=digest)
    assert not emulator.blob_path(digest).exists()  # no blob whose bytes differ from its name
    daemon.wait_for("model.created", model="written:latest", timeout=20)
    assert emulator.counters.creates("written:latest") == 1  # only the new version
    assert not emulator.blob_path(digest).exists()

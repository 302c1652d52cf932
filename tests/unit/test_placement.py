"""Placing a blob straight into a same-host server's store (issue 17), on real files.

Each method (reflink, hard link, in-kernel copy) through a temporary name in ``blobs/``,
verified against the identity the file was hashed with, never over an existing blob; and the
refusals that send a blob to the HTTP upload instead. Reflink needs a file system with
copy-on-write clones: a loop-mounted XFS image (root, ``mkfs.xfs``), else skipped."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from placement_files import blob as _blob
from placement_files import drop_file as _drop_file
from placement_files import key as _key
from structlog.testing import LogCapture

from dropzone.errors import FileChangedError
from dropzone.fs.identity import FileKey
from dropzone.imports import blobfiles, placement
from dropzone.imports.placement import Placed, Placer, Skip
from dropzone.testing.cowfs import CowUnavailableError, loop_mounted_cow

HOST = "http://127.0.0.1:11434"


def _leftovers(models: Path) -> list[str]:
    return sorted(p.name for p in (models / "blobs").iterdir() if not p.name.startswith("sha256-"))


def _models(root: Path) -> Path:
    (root / "blobs").mkdir(parents=True)
    return root


def test_copy_places_a_verified_readable_blob_and_leaves_no_temporary(tmp_path: Path) -> None:
    models = _models(tmp_path / "models")
    path, digest = _drop_file(tmp_path / "drop")
    placer = Placer(models, "copy", on_success="keep", host=HOST)
    result = placer.place(tmp_path / "drop", path, _key(path), digest)
    assert isinstance(result, Placed)
    assert result.method == "copy" and result.bytes == path.stat().st_size
    blob = _blob(models, digest)
    assert blob.read_bytes() == path.read_bytes()
    assert stat.S_IMODE(blob.stat().st_mode) == 0o644
    assert blob.stat().st_ino != path.stat().st_ino
    assert result.identity == _key(path)  # a copy leaves the drop file as it was
    assert _leftovers(models) == []


def test_auto_on_a_file_system_without_clones_copies_and_says_why(
    tmp_path: Path, capture: LogCapture
) -> None:
    if _reflink_works(tmp_path):
        pytest.skip(f"{tmp_path} supports reflinks: this test needs one that does not")
    models = _models(tmp_path / "models")
    path, digest = _drop_file(tmp_path / "drop")
    placer = Placer(models, "auto", on_success="keep", host=HOST)
    result = placer.place(tmp_path / "drop", path, _key(path), digest)
    assert isinstance(result, Placed) and result.method == "copy"
    decided = [e for e in capture.entries if e["event"] == "local_import.method"]
    assert decided and decided[-1]["method"] == "copy"
    assert "reflink" in decided[-1]["reason"]
    # Decided once per file system: a second blob does not decide (or log) again.
    other, other_digest = _drop_file(tmp_path / "drop", "other.gguf")
    assert isinstance(placer.place(tmp_path / "drop", other, _key(other), other_digest), Placed)
    assert len([e for e in capture.entries if e["event"] == "local_import.method"]) == len(decided)


def test_link_under_delete_shares_the_inode_and_reports_the_new_ctime(tmp_path: Path) -> None:
    models = _models(tmp_path / "models")
    path, digest = _drop_file(tmp_path / "drop")
    hashed = _key(path)
    placer = Placer(models, "link", on_success="delete", host=HOST)
    result = placer.place(tmp_path / "drop", path, hashed, digest)
    assert isinstance(result, Placed) and result.method == "link"
    blob = _blob(models, digest)
    assert blob.stat().st_ino == path.stat().st_ino and path.stat().st_nlink == 2
    # link(2) changes the inode's ctime: the identity the later steps check is the new one,
    # the same file (device, inode, size, mtime) and nothing else.
    now = _key(path)
    assert result.identity == now
    assert (now.dev, now.ino, now.size, now.mtime_ns) == (
        hashed.dev,
        hashed.ino,
        hashed.size,
        hashed.mtime_ns,
    )
    assert _leftovers(models) == []


@pytest.mark.parametrize("policy", ["keep"])
def test_link_is_refused_unless_the_drop_file_leaves_after_the_create(
    tmp_path: Path, policy: str, capture: LogCapture
) -> None:
    models = _models(tmp_path / "models")
    path, digest = _drop_file(tmp_path / "drop")
    placer = Placer(models, "link", on_success=policy, host=HOST)
    assert placer.place(tmp_path / "drop", path, _key(path), digest) is Skip.HTTP
    refused = [e for e in capture.entries if e["event"] == "local_import.refused"]
    assert refused and "on_success" in refused[0]["reason"]
    assert not _blob(models, digest).exists() and _leftovers(models) == []


def test_auto_under_keep_never_links(tmp_path: Path) -> None:
    models = _models(tmp_path / "models")
    path, digest = _drop_file(tmp_path / "drop")
    placer = Placer(models, "auto", on_success="keep", host=HOST)
    result = placer.place(tmp_path / "drop", path, _key(path), digest)
    assert isinstance(result, Placed) and result.method in ("reflink", "copy")
    assert _blob(models, digest).stat().st_ino != path.stat().st_ino


def test_link_is_not_used_while_the_file_has_another_name(tmp_path: Path) -> None:
    """A second name outside dropzone's reach could write into the server's blob later."""
    models = _models(tmp_path / "models")
    path, digest = _drop_file(tmp_path / "drop")
    os.link(path, tmp_path / "elsewhere.gguf")
    placer = Placer(models, "link", on_success="delete", host=HOST)
    assert placer.place(tmp_path / "drop", path, _key(path), digest) is Skip.HTTP


def test_early_placement_by_link_waits_for_the_import_itself(tmp_path: Path) -> None:
    models = _models(tmp_path / "models")
    path, digest = _drop_file(tmp_path / "drop")
    placer = Placer(models, "link", on_success="delete", host=HOST)
    assert placer.place(tmp_path / "drop", path, _key(path), digest, early=True) is Skip.LATER
    assert not _blob(models, digest).exists()


def test_a_file_changed_since_it_was_hashed_is_not_placed(tmp_path: Path) -> None:
    models = _models(tmp_path / "models")
    path, digest = _drop_file(tmp_path / "drop")
    hashed = _key(path)
    with path.open("r+b") as f:
        f.write(b"X")
    for mode, policy in (("copy", "keep"), ("link", "delete"), ("auto", "delete")):
        placer = Placer(models, mode, on_success=policy, host=HOST)
        with pytest.raises(FileChangedError):
            placer.place(tmp_path / "drop", path, hashed, digest)
    assert list((models / "blobs").iterdir()) == []


def test_a_file_changed_during_the_copy_is_not_placed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = _models(tmp_path / "models")
    path, digest = _drop_file(tmp_path / "drop")
    hashed = _key(path)
    real = blobfiles.copy_bytes

    def write_meanwhile(src: int, dst: int, size: int, cancel: object = None) -> None:
        with path.open("r+b") as f:  # another writer, mid-copy
            f.write(b"changed")
        real(src, dst, size)

    monkeypatch.setattr(blobfiles, "copy_bytes", write_meanwhile)
    placer = Placer(models, "copy", on_success="keep", host=HOST)
    with pytest.raises(FileChangedError):
        placer.place(tmp_path / "drop", path, hashed, digest)
    assert list((models / "blobs").iterdir()) == []


def test_a_file_replaced_before_the_link_is_not_linked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = _models(tmp_path / "models")
    path, digest = _drop_file(tmp_path / "drop")
    hashed = _key(path)
    real = placement.open_drop_file

    def replace_after_open(drop_dir: Path, p: Path, identity: FileKey) -> int:
        fd = real(drop_dir, p, identity)
        newer = tmp_path / "newer"
        newer.write_bytes(b"another version")
        os.replace(newer, p)
        return fd

    monkeypatch.setattr(placement, "open_drop_file", replace_after_open)
    placer = Placer(models, "link", on_success="delete", host=HOST)
    with pytest.raises(FileChangedError):
        placer.place(tmp_path / "drop", path, hashed, digest)
    assert list((models / "blobs").iterdir()) == []


@pytest.mark.parametrize(("mode", "policy"), [("copy", "keep"), ("link", "delete")])
def test_an_existing_blob_is_never_overwritten(tmp_path: Path, mode: str, policy: str) -> None:
    models = _models(tmp_path / "models")
    path, digest = _drop_file(tmp_path / "drop")
    blob = _blob(models, digest)
    blob.write_bytes(b"the server's own file")
    placer = Placer(models, mode, on_success=policy, host=HOST)
    assert placer.place(tmp_path / "drop", path, _key(path), digest) is Skip.EXISTS
    assert blob.read_bytes() == b"the server's own file"
    assert _leftovers(models) == []
    assert path.stat().st_nlink == 1


def test_a_blobs_folder_that_is_not_writable_is_refused_then_http(
    tmp_path: Path, capture: LogCapture
) -> None:
    models = _models(tmp_path / "models")
    path, digest = _drop_file(tmp_path / "drop")
    with _read_only(models / "blobs"):
        placer = Placer(models, "auto", on_success="delete", host=HOST)
        assert placer.place(tmp_path / "drop", path, _key(path), digest) is Skip.HTTP
        # Once refused, the host uses HTTP without trying again for every blob.
        assert placer.place(tmp_path / "drop", path, _key(path), digest) is Skip.HTTP
    refused = [e for e in capture.entries if e["event"] == "local_import.refused"]
    assert len(refused) == 1
    assert "not writable" in refused[0]["reason"] and "ollama" in refused[0]["fix"]
    assert refused[0]["level"] == "warning"


def test_a_missing_blobs_folder_is_refused(tmp_path: Path, capture: LogCapture) -> None:
    path, digest = _drop_file(tmp_path / "drop")
    placer = Placer(tmp_path / "nowhere", "auto", on_success="keep", host=HOST)
    assert placer.place(tmp_path / "drop", path, _key(path), digest) is Skip.HTTP
    assert [e["event"] for e in capture.entries] == ["local_import.refused"]


def test_off_never_places(tmp_path: Path) -> None:
    models = _models(tmp_path / "models")
    path, digest = _drop_file(tmp_path / "drop")
    placer = Placer(models, "off", on_success="delete", host=HOST)
    assert placer.place(tmp_path / "drop", path, _key(path), digest) is Skip.HTTP


# --- reflink on a loop-mounted XFS image -----------------------------------------------------


def test_reflink_clones_and_later_writes_to_the_drop_file_do_not_reach_the_blob(
    cow_dir: Path, capture: LogCapture
) -> None:
    models = _models(cow_dir / "models")
    path, digest = _drop_file(cow_dir / "drop")
    for mode in ("reflink", "auto"):
        placer = Placer(models, mode, on_success="delete", host=HOST)  # reflink before link
        result = placer.place(cow_dir / "drop", path, _key(path), digest)
        if mode == "reflink":
            assert isinstance(result, Placed) and result.method == "reflink"
        else:
            assert result is Skip.EXISTS
    decided = [e for e in capture.entries if e["event"] == "local_import.method"]
    assert decided[-1]["method"] == "reflink"
    blob = _blob(models, digest)
    before = blob.read_bytes()
    assert blob.stat().st_ino != path.stat().st_ino
    with path.open("r+b") as f:
        f.write(b"written after the import")
    assert blob.read_bytes() == before
    assert stat.S_IMODE(blob.stat().st_mode) == 0o644


def test_reflink_from_another_file_system_is_refused_then_http(
    cow_dir: Path, tmp_path: Path, capture: LogCapture
) -> None:
    models = _models(cow_dir / "models-other")
    path, digest = _drop_file(tmp_path / "drop")
    placer = Placer(models, "reflink", on_success="keep", host=HOST)
    assert placer.place(tmp_path / "drop", path, _key(path), digest) is Skip.HTTP
    refused = [e for e in capture.entries if e["event"] == "local_import.refused"]
    assert refused and "file system" in refused[0]["reason"]


# --- helpers ---------------------------------------------------------------------------------


def _reflink_works(folder: Path) -> bool:
    return blobfiles.reflink_supported(folder)


class _read_only:  # noqa: N801 - used as a context manager, reads as a phrase
    """The folder refuses new files, for root too: chmod for others, ``chattr +i`` for root."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.immutable = False

    def __enter__(self) -> None:
        if os.geteuid() != 0:
            self.folder.chmod(0o555)
            return
        if shutil.which("chattr") is None:
            pytest.skip("running as root without chattr: cannot make a folder unwritable")
        done = subprocess.run(["chattr", "+i", str(self.folder)], capture_output=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"chattr +i failed here: {done.stderr.decode().strip()}")
        self.immutable = True

    def __exit__(self, *exc: object) -> None:
        if self.immutable:
            subprocess.run(["chattr", "-i", str(self.folder)], check=True)
        else:
            self.folder.chmod(0o755)


@pytest.fixture(scope="module")
def cow_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A loop-mounted XFS (reflink) or btrfs; skipped with the reason where none can be."""
    try:
        with loop_mounted_cow(tmp_path_factory.mktemp("cow")) as mnt:
            yield mnt
    except CowUnavailableError as exc:
        pytest.skip(f"no copy-on-write file system to test reflink on: {exc}")


@pytest.mark.parametrize(
    ("mode", "flushes"), [("auto", True), ("reflink", True), ("link", True), ("copy", False)]
)
def test_only_methods_that_flush_the_drop_file_ask_for_its_early_writeback(
    tmp_path: Path, mode: str, flushes: bool
) -> None:
    placer = placement.Placer(tmp_path, mode, on_success="delete", host="http://h")
    assert placer.flushes_source is flushes

"""Early placement (issue 17): while a complete, closed drop file settles, its blob is copied
(or cloned) into a temporary name in ``blobs/``, verified and fsynced; the import of record
commits it under its final name once the file has settled, or discards it when the file is no
longer the one that was hashed. On real files, no server."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from placement_files import blob as _blob
from placement_files import drop_file as _drop_file
from placement_files import key as _key
from structlog.testing import LogCapture

from dropzone.imports.placement import Placed, Placer, Skip
from dropzone.imports.staging import Staged

HOST = "http://127.0.0.1:11434"


def _temporaries(models: Path) -> list[Path]:
    return sorted(p for p in (models / "blobs").iterdir() if not p.name.startswith("sha256-"))


def _models(root: Path) -> Path:
    (root / "blobs").mkdir(parents=True)
    return root


def _discarded(capture: LogCapture) -> list[dict[str, object]]:
    return [e for e in capture.entries if e["event"] == "blob.discarded"]


def test_an_early_copy_waits_under_a_temporary_name_until_the_import_commits_it(
    tmp_path: Path,
) -> None:
    models, drop = _models(tmp_path / "models"), tmp_path / "drop"
    path, digest = _drop_file(drop)
    placer = Placer(models, "copy", on_success="keep", host=HOST)

    staged = placer.place(drop, path, _key(path), digest, early=True)
    assert isinstance(staged, Staged) and staged.method == "copy"
    assert not _blob(models, digest).exists()  # the server sees nothing before the settle
    [tmp] = _temporaries(models)
    assert tmp == staged.tmp and tmp.read_bytes() == path.read_bytes()

    placed = placer.place(drop, path, _key(path), digest)
    assert isinstance(placed, Placed) and placed.method == "copy" and placed.staged
    blob = _blob(models, digest)
    assert blob.read_bytes() == path.read_bytes()
    assert stat.S_IMODE(blob.stat().st_mode) == 0o644
    assert blob.stat().st_ino == staged.tmp_key.ino  # the staged copy itself: not copied again
    assert _temporaries(models) == []


def test_a_file_changed_after_its_early_copy_discards_it_and_places_the_new_bytes(
    tmp_path: Path, capture: LogCapture
) -> None:
    models, drop = _models(tmp_path / "models"), tmp_path / "drop"
    path, first = _drop_file(drop)
    placer = Placer(models, "copy", on_success="keep", host=HOST)
    assert isinstance(placer.place(drop, path, _key(path), first, early=True), Staged)

    path, second = _drop_file(drop, data=os.urandom(300_000))  # rewritten while it settles
    placed = placer.place(drop, path, _key(path), second)
    assert isinstance(placed, Placed) and not placed.staged
    assert [e["digest"] for e in _discarded(capture)] == [first]
    assert not _blob(models, first).exists()
    assert _blob(models, second).read_bytes() == path.read_bytes()
    assert _temporaries(models) == []


def test_a_changed_file_discards_its_early_copy_without_waiting_for_the_import(
    tmp_path: Path, capture: LogCapture
) -> None:
    models, drop = _models(tmp_path / "models"), tmp_path / "drop"
    path, digest = _drop_file(drop)
    placer = Placer(models, "copy", on_success="keep", host=HOST)
    assert isinstance(placer.place(drop, path, _key(path), digest, early=True), Staged)
    assert placer.discard_changed() == 0  # unchanged: kept
    with path.open("r+b") as f:
        f.write(b"another writer")
    assert placer.discard_changed() == 1
    assert _temporaries(models) == [] and not _blob(models, digest).exists()
    assert _discarded(capture)[0]["reason"]


def test_a_new_early_copy_of_the_same_file_replaces_the_older_one(tmp_path: Path) -> None:
    models, drop = _models(tmp_path / "models"), tmp_path / "drop"
    path, first = _drop_file(drop)
    placer = Placer(models, "copy", on_success="keep", host=HOST)
    assert isinstance(placer.place(drop, path, _key(path), first, early=True), Staged)
    path, second = _drop_file(drop, data=os.urandom(300_000))
    newer = placer.place(drop, path, _key(path), second, early=True)
    assert isinstance(newer, Staged)
    assert _temporaries(models) == [newer.tmp]


def test_a_temporary_changed_while_staged_is_not_committed(
    tmp_path: Path, capture: LogCapture
) -> None:
    models, drop = _models(tmp_path / "models"), tmp_path / "drop"
    path, digest = _drop_file(drop)
    placer = Placer(models, "copy", on_success="keep", host=HOST)
    staged = placer.place(drop, path, _key(path), digest, early=True)
    assert isinstance(staged, Staged)
    with staged.tmp.open("r+b") as f:
        f.write(b"not the copy that was hashed back")

    placed = placer.place(drop, path, _key(path), digest)
    assert isinstance(placed, Placed) and not placed.staged  # copied again, from the drop file
    assert _blob(models, digest).read_bytes() == path.read_bytes()
    assert _discarded(capture) and _temporaries(models) == []


def test_a_blob_that_appeared_meanwhile_is_kept_and_the_early_copy_discarded(
    tmp_path: Path,
) -> None:
    models, drop = _models(tmp_path / "models"), tmp_path / "drop"
    path, digest = _drop_file(drop)
    placer = Placer(models, "copy", on_success="keep", host=HOST)
    assert isinstance(placer.place(drop, path, _key(path), digest, early=True), Staged)
    blob = _blob(models, digest)
    blob.write_bytes(path.read_bytes())  # an upload from elsewhere, or the server's own
    inode = blob.stat().st_ino
    assert placer.place(drop, path, _key(path), digest) is Skip.EXISTS
    assert blob.stat().st_ino == inode and _temporaries(models) == []


def test_a_stop_discards_every_early_copy(tmp_path: Path) -> None:
    models, drop = _models(tmp_path / "models"), tmp_path / "drop"
    path, digest = _drop_file(drop)
    placer = Placer(models, "copy", on_success="keep", host=HOST)
    assert isinstance(placer.place(drop, path, _key(path), digest, early=True), Staged)
    placer.discard_all("stopping")
    assert _temporaries(models) == [] and not _blob(models, digest).exists()

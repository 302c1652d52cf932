"""The watcher against the real file system and the real watchdog observers.

A real kernel queue overflow needs the watching process stopped while events pile up: see
``tests/e2e/test_e2e_watching.py``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dropzone.service.watcher import Change, ChangeKind, ChangeQueue, Watcher, native_events_work
from dropzone.testing.waiting import wait_until


def collect(queue: ChangeQueue, into: list[Change]) -> list[Change]:
    into.extend(queue.drain(timeout=0.05))
    return into


@pytest.fixture(params=["native", "polling"])
def watcher(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    queue = ChangeQueue()
    interval = 0.1 if request.param == "polling" else 0
    w = Watcher(tmp_path, queue, poll_interval=interval, ignore=lambda p: p.name.startswith("."))
    assert w.start() == request.param
    yield w, queue, tmp_path
    w.stop()


def test_a_new_file_is_reported_as_changed(watcher) -> None:  # type: ignore[no-untyped-def]
    _, queue, root = watcher
    (root / "model.gguf").write_bytes(b"GGUF")
    seen: list[Change] = []
    wait_until(lambda: any(c.path == root / "model.gguf" for c in collect(queue, seen)))


def test_files_in_new_subfolders_are_reported(watcher) -> None:  # type: ignore[no-untyped-def]
    _, queue, root = watcher
    (root / "a" / "b").mkdir(parents=True)
    target = root / "a" / "b" / "model.safetensors"
    # Let the recursive watch reach the new folder before writing: wait on the folder's own event.
    seen: list[Change] = []
    wait_until(lambda: any(c.path == root / "a" / "b" for c in collect(queue, seen)))
    target.write_bytes(b"x")
    wait_until(lambda: any(c.path == target for c in collect(queue, seen)))


def test_a_rename_reports_the_old_path_removed_and_the_new_changed(watcher) -> None:  # type: ignore[no-untyped-def]
    _, queue, root = watcher
    tmp = root / "model.gguf.part"
    tmp.write_bytes(b"GGUF")
    seen: list[Change] = []
    wait_until(lambda: any(c.path == tmp for c in collect(queue, seen)))
    tmp.rename(root / "model.gguf")
    wait_until(
        lambda: any(
            c.path == root / "model.gguf" and c.kind is ChangeKind.CHANGED
            for c in collect(queue, seen)
        )
    )


def test_ignored_paths_are_not_reported(watcher) -> None:  # type: ignore[no-untyped-def]
    _, queue, root = watcher
    (root / ".hidden").write_bytes(b"x")
    (root / "visible").write_bytes(b"x")
    seen: list[Change] = []
    wait_until(lambda: any(c.path == root / "visible" for c in collect(queue, seen)))
    assert all(c.path != root / ".hidden" for c in seen)


def test_native_close_after_write_is_reported_as_closed(tmp_path: Path) -> None:
    queue = ChangeQueue()
    w = Watcher(tmp_path, queue)
    assert w.start() == "native"
    try:
        with (tmp_path / "f.gguf").open("wb") as f:
            f.write(b"data")
        seen: list[Change] = []
        wait_until(lambda: any(c.kind is ChangeKind.CLOSED for c in collect(queue, seen)))
    finally:
        w.stop()


def test_probe_finds_native_events_on_a_local_disk(tmp_path: Path) -> None:
    assert native_events_work(tmp_path)
    assert os.listdir(tmp_path) == []  # the probe file is cleaned up


@pytest.mark.slow
def test_no_native_events_falls_back_to_polling(tmp_path: Path) -> None:
    queue = ChangeQueue()
    w = Watcher(tmp_path, queue, probe=lambda _root: False)
    try:
        assert w.start() == "polling"
        assert w.fallback
        (tmp_path / "x.gguf").write_bytes(b"x")
        seen: list[Change] = []
        wait_until(lambda: any(c.path == tmp_path / "x.gguf" for c in collect(queue, seen)))
    finally:
        w.stop()


def test_a_folder_that_cannot_be_probed_counts_as_without_events(tmp_path: Path) -> None:
    # A file where the folder should be: creating the probe fails like a read-only folder does.
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(b"")
    assert native_events_work(blocker, timeout=0.1) is False


def test_touch_is_a_change_but_reading_a_file_is_not(tmp_path: Path) -> None:
    target = tmp_path / "m.toml"
    target.write_bytes(b"model = 'x'\n")
    queue = ChangeQueue()
    w = Watcher(tmp_path, queue)
    assert w.start() == "native"
    try:
        target.read_bytes()  # dropzone reads headers on every rescan: that must stay silent
        os.utime(target)  # an operator's `touch` to ask for another try
        seen: list[Change] = []
        wait_until(lambda: any(c.path == target for c in collect(queue, seen)))
        assert all(c.kind is ChangeKind.CHANGED for c in seen if c.path == target)
    finally:
        w.stop()

from pathlib import Path

from dropzone.service.watcher import Change, ChangeKind, ChangeQueue

A, B = Path("/d/a.gguf"), Path("/d/b.gguf")


def test_a_path_waiting_is_not_queued_twice() -> None:
    q = ChangeQueue()
    q.put(Change(ChangeKind.CHANGED, A))
    q.put(Change(ChangeKind.CHANGED, A))
    q.put(Change(ChangeKind.CHANGED, B))
    assert q.drain(0) == [Change(ChangeKind.CHANGED, A), Change(ChangeKind.CHANGED, B)]
    assert q.drain(0) == []


def test_closed_is_not_downgraded_by_a_later_change_but_removed_wins() -> None:
    q = ChangeQueue()
    q.put(Change(ChangeKind.CLOSED, A))
    q.put(Change(ChangeKind.CHANGED, A))
    assert q.drain(0) == [Change(ChangeKind.CLOSED, A)]
    q.put(Change(ChangeKind.CLOSED, A))
    q.put(Change(ChangeKind.REMOVED, A))
    assert q.drain(0) == [Change(ChangeKind.REMOVED, A)]


def test_overflowing_the_limit_turns_into_one_rescan() -> None:
    q = ChangeQueue(limit=3)
    for i in range(10):
        q.put(Change(ChangeKind.CHANGED, Path(f"/d/{i}")))
    assert q.drain(0) == [Change(ChangeKind.RESCAN)]
    assert q.drain(0) == []


def test_a_rescan_swallows_individual_hints() -> None:
    q = ChangeQueue()
    q.put(Change(ChangeKind.CHANGED, A))
    q.put(Change(ChangeKind.RESCAN))
    q.put(Change(ChangeKind.CHANGED, B))
    assert q.drain(0) == [Change(ChangeKind.RESCAN)]

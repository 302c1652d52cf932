"""KeyLocks: one holder per key, stop-aware waiting, bookkeeping that empties itself."""

from __future__ import annotations

import threading

import pytest

from dropzone.errors import StoppedError
from dropzone.imports._keylocks import KeyLocks
from dropzone.testing.waiting import wait_until


def test_a_second_holder_of_the_same_key_waits_until_the_first_lets_go() -> None:
    locks, stop = KeyLocks(), threading.Event()
    order: list[str] = []

    def second() -> None:
        with locks.hold("k", stop):
            order.append("second")

    with locks.hold("k", stop):
        order.append("first")
        thread = threading.Thread(target=second)
        thread.start()
        # Both the holder and the waiter are on the books: the waiter has arrived.
        wait_until(lambda: locks.users("k") == 2, timeout=5, what="the waiter")
        assert order == ["first"]
    thread.join(timeout=5)
    assert order == ["first", "second"]
    assert len(locks) == 0


def test_other_keys_do_not_wait() -> None:
    locks, stop = KeyLocks(), threading.Event()
    with locks.hold(("host", "a"), stop), locks.hold(("host", "b"), stop):
        assert len(locks) == 2
    assert len(locks) == 0


def test_a_stop_ends_the_wait_with_stopped_error() -> None:
    locks, stop = KeyLocks(), threading.Event()
    errors: list[BaseException] = []

    def waiter() -> None:
        try:
            with locks.hold("k", stop):
                pytest.fail("entered a held lock")
        except StoppedError as exc:
            errors.append(exc)

    with locks.hold("k", stop):
        thread = threading.Thread(target=waiter)
        thread.start()
        wait_until(lambda: locks.users("k") == 2, timeout=5, what="the waiter")
        stop.set()
        thread.join(timeout=5)
        assert not thread.is_alive()
    assert len(errors) == 1
    assert len(locks) == 0


def test_an_error_inside_releases_the_key() -> None:
    locks, stop = KeyLocks(), threading.Event()
    with pytest.raises(ValueError), locks.hold("k", stop):
        raise ValueError("boom")
    with locks.hold("k", stop):
        assert locks.users("k") == 1
    assert len(locks) == 0

"""Followers and hash slots on real files and threads: the slot of a followed file is held
through its final pass (issue 11)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from dropzone.imports.follow import Followers, HashSlots
from dropzone.imports.hashing import sha256_file
from dropzone.testing.builders import write_random
from dropzone.testing.waiting import wait_until


class SlotsSeenByFinisher(threading.Event):
    """The stop event, which the hasher consults between chunks: on the finishing thread it
    notes how many hash slots are taken at that moment."""

    def __init__(self, slots: HashSlots, finisher: threading.Thread) -> None:
        super().__init__()
        self.slots, self.finisher, self.seen = slots, finisher, list[int]()

    def is_set(self) -> bool:
        if threading.current_thread() is self.finisher:
            self.seen.append(self.slots.in_use)
        return super().is_set()


def test_a_followed_file_keeps_its_hash_slot_through_the_final_pass(tmp_path: Path) -> None:
    path = write_random(tmp_path / "w.gguf", 4 << 20, seed=1)
    slots = HashSlots(1)
    stop = SlotsSeenByFinisher(slots, threading.current_thread())
    followers = Followers(slots, stop, tmp_path)
    followers.follow(path)
    assert followers.live() == [path] and slots.in_use == 1
    # Rewritten in place, same size: the final pass must hash the whole file again.
    st = path.stat()
    write_random(path, 4 << 20, seed=2)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    follower = followers.take(path)
    assert follower is not None
    result = follower.finish(4 << 20)
    assert result.digest == sha256_file(path)
    assert stop.seen and set(stop.seen) == {1}  # read chunk by chunk, the slot held
    wait_until(lambda: slots.in_use == 0, what="the slot freed after the final pass")
    assert followers.live() == []


def test_released_followers_free_their_slots_without_a_wait(tmp_path: Path) -> None:
    slots = HashSlots(2)
    followers = Followers(slots, threading.Event(), tmp_path)
    a, b = (write_random(tmp_path / f"{n}.gguf", 1 << 20, seed=n) for n in (1, 2))
    followers.follow(a)
    followers.follow(b)
    assert followers.live() == [a, b] and slots.in_use == 2
    assert followers.release(lambda p: p == a) == [a]
    assert followers.live() == [b]
    wait_until(lambda: slots.in_use == 1, what="a's slot freed by its own thread")
    followers.cancel_all()
    wait_until(lambda: slots.in_use == 0, what="every slot freed")

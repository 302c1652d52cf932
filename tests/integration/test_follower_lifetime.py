"""A follower (hashing while copying) lives only while its file can still become an import
(issue 11): with one hash slot, a file that never will must not keep that slot, or the next
file that arrives is no longer hashed while it is copied."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import Running

from dropzone.imports import readiness
from dropzone.testing.builders import build_gguf
from dropzone.testing.waiting import wait_until

Scenario = Callable[[Running, Path, Path], None]


@pytest.fixture(autouse=True)
def _short_close_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """A complete file closed by its writer is ready after 0.2 s, not readiness' 1 s: these
    tests need a long settle_seconds only for files left incomplete."""
    monkeypatch.setattr(readiness, "CLOSE_GRACE_SECONDS", 0.2)


def gguf_bytes(tmp_path: Path, name: str, seed: int) -> bytes:
    return build_gguf(tmp_path / "src" / name, tensor_elems=64 * 1024, seed=seed).read_bytes()


def arrive_in_two_writes(
    daemon: Running, target: Path, data: bytes, *, followed: bool = True, finish: bool = True
) -> None:
    """Copy ``data`` to ``target`` in two writes, the second once the first was seen."""
    with target.open("wb") as out:
        out.write(data[: len(data) // 2])
        out.flush()
        daemon.wait_for("artifact.pending", path=str(target), reason="incomplete")
        if followed:
            daemon.wait_for("hash.follow.started", path=str(target))
        if finish:
            out.write(data[len(data) // 2 :])


def no_sidecar(daemon: Running, drop: Path, tmp_path: Path) -> None:
    target = drop / "Lonely.gguf"
    # Under require_sidecar it is not followed at all: it cannot become an import as it is.
    arrive_in_two_writes(daemon, target, gguf_bytes(tmp_path, "Lonely.gguf", 1), followed=False)
    daemon.wait_for(
        "artifact.pending", path=str(target), reason="no sidecar (require_sidecar is true)"
    )


def refused_sidecar(daemon: Running, drop: Path, tmp_path: Path) -> None:
    target = drop / "Broken.gguf"
    (drop / "Broken.toml").write_text('model = "broken"\nparameters = { no_such_option = 1 }\n')
    arrive_in_two_writes(daemon, target, gguf_bytes(tmp_path, "Broken.gguf", 1))
    daemon.wait_for("sidecar.invalid", path=str(target))


def name_conflict(daemon: Running, drop: Path, tmp_path: Path) -> None:
    (drop / "one").mkdir()
    (drop / "two").mkdir()
    build_gguf(drop / "one" / "First.gguf", seed=4)
    (drop / "one" / "First.toml").write_text('model = "twin"\n')
    daemon.wait_for("model.created", model="twin")
    (drop / "two" / "Second.toml").write_text('model = "twin"\n')
    target = drop / "two" / "Second.gguf"
    arrive_in_two_writes(daemon, target, gguf_bytes(tmp_path, "Second.gguf", 1))
    wait_until(
        lambda: [
            e
            for e in daemon.find("sidecar.invalid", path=str(target))
            if "also claimed" in str(e.get("error"))
        ],
        what="the name conflict refused",
    )


def truncated_leftover(daemon: Running, drop: Path, tmp_path: Path) -> None:
    # A copy that died half-way: the file stays incomplete and stops changing.
    target = drop / "Cut.gguf"
    arrive_in_two_writes(daemon, target, gguf_bytes(tmp_path, "Cut.gguf", 1), finish=False)


@pytest.mark.parametrize(
    ("scenario", "overrides"),
    [
        (no_sidecar, {"require_sidecar": True}),
        (refused_sidecar, {}),
        (name_conflict, {}),
        (truncated_leftover, {}),
    ],
    ids=["no-sidecar", "refused-sidecar", "name-conflict", "truncated-leftover"],
)
def test_a_file_that_cannot_become_an_import_holds_no_follower_and_no_hash_slot(
    start: Any, drop: Path, tmp_path: Path, scenario: Scenario, overrides: dict[str, object]
) -> None:
    # A copy half-way that did not change for settle_seconds is a leftover: long enough here
    # that a slow look at a copy in progress does not take it for one.
    daemon = start(max_parallel_hashes=1, settle_seconds=1.5, **overrides)
    scenario(daemon, drop, tmp_path)

    followers, slots = daemon.daemon.followers, daemon.daemon.hash_slots
    wait_until(
        lambda: followers.live() == [] and slots.in_use == 0,
        what="no live follower and no hash slot taken",
    )

    # The one slot is free again: the next copy is hashed while it arrives, and imported.
    (drop / "Next.toml").write_text('model = "next"\n')
    arrive_in_two_writes(daemon, drop / "Next.gguf", gguf_bytes(tmp_path, "Next.gguf", 9))
    done = daemon.wait_for("hash.done", path=str(drop / "Next.gguf"))
    assert done["followed"] is True
    assert done["rate_mb_s"] is None  # its seconds are the tail after the copy, not a read
    daemon.wait_for("model.created", model="next")
    wait_until(lambda: followers.live() == [] and slots.in_use == 0, what="all slots back")

"""Files that are still arriving are never imported half-written, and are imported exactly once
when they are complete: a slow copy (as scp does it), a temporary name renamed at the end, a
safetensors folder filled file by file, split shards arriving one by one."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

from e2e_env import Dropzone, digest_of

from dropzone.testing.builders import build_gguf, build_safetensors_model
from dropzone.testing.ollama import Emulator

CHUNK = 256 * 1024
PAUSE_SECONDS = 0.02  # the writer's pace between chunks, as a network copy would have


def split_gguf(folder: Path, stem: str, count: int) -> list[Path]:
    """Shards with distinct tensors (builders.build_split_gguf repeats the same tensor names in
    every shard, which a v0.30+ server refuses as duplicates)."""
    return [
        build_gguf(
            folder / f"{stem}-{no + 1:05d}-of-{count:05d}.gguf",
            split=(no, count),
            tensor_prefix=f"blk.{no}",
            seed=no,
        )
        for no in range(count)
    ]


def uploads(emulator: Emulator) -> int:
    """Blob POSTs the server has seen, answered or not."""
    return sum(
        1
        for r in emulator.counters.requests
        if r.method == "POST" and r.path.startswith("/api/blobs/")
    )


def test_a_file_copied_slowly_is_hashed_as_it_arrives_and_uploaded_only_once_complete(
    dropzone: Dropzone, emulator: Emulator
) -> None:
    source = build_gguf(dropzone.tmp / "Slow-Copy.gguf", n_tensors=4, tensor_elems=512 * 1024)
    data = source.read_bytes()
    assert len(data) > 4 * 1024 * 1024
    digest = digest_of(source)
    target = dropzone.drop / "Slow-Copy.gguf"
    daemon = dropzone.run()
    posts_while_copying: list[int] = []
    pace = threading.Event()  # never set: its wait() is the writer's pause

    def copy_slowly() -> None:
        with target.open("wb", buffering=0) as out:
            out.write(data[:CHUNK])
            # The header is there: let the daemon see the file as incomplete before going on.
            daemon.wait_for("artifact.pending", path=str(target))
            for start in range(CHUNK, len(data), CHUNK):
                posts_while_copying.append(emulator.counters.blob_posts(digest))
                out.write(data[start : start + CHUNK])
                pace.wait(PAUSE_SECONDS)
            posts_while_copying.append(emulator.counters.blob_posts(digest))

    writer = threading.Thread(target=copy_slowly)
    writer.start()
    writer.join(timeout=60)
    assert not writer.is_alive()
    assert len(posts_while_copying) > 10
    assert set(posts_while_copying) == {0}, "a blob was posted before the copy ended"

    daemon.wait_for("model.created", model="slow-copy:latest", timeout=15)
    hashed = daemon.wait_for("hash.done", path=str(target))
    assert hashed["digest"] == digest
    assert hashed["followed"] is True, "the digest was not computed while the file arrived"
    assert hashed["bytes"] == len(data)
    assert emulator.counters.blob_bodies_read(digest) == 1
    pending = daemon.find("artifact.pending", path=str(target), reason="incomplete")
    assert len(pending) == 1, "an incomplete file is reported once, not at every write"
    assert pending[0]["bytes"] < pending[0]["expected_bytes"] == len(data)


def test_a_file_written_under_a_temporary_name_is_imported_once_after_the_rename(
    dropzone: Dropzone, emulator: Emulator
) -> None:
    daemon = dropzone.run()
    part = build_gguf(dropzone.drop / "Renamed.gguf.part")
    # A second, complete file shows the daemon has looked at the folder since the .part came.
    build_gguf(dropzone.tmp / "Witness.gguf", seed=7).rename(dropzone.drop / "Witness.gguf")
    daemon.wait_for("model.created", model="witness:latest")
    assert not [e for e in daemon.events if "Renamed" in str(e.get("path"))]
    assert emulator.counters.blob_posts(digest_of(part)) == 0

    part.rename(dropzone.drop / "Renamed.gguf")
    daemon.wait_for("model.created", model="renamed:latest")
    since = daemon.rescan()
    assert daemon.find("artifact.ready", since=since) == []
    assert emulator.counters.creates("renamed:latest") == 1
    assert emulator.counters.blob_posts(digest_of(dropzone.drop / "Renamed.gguf")) == 1


def test_a_sharded_safetensors_folder_filled_file_by_file_is_imported_once_when_complete(
    dropzone: Dropzone, emulator: Emulator
) -> None:
    staged = build_safetensors_model(dropzone.tmp / "Tiny-Llama", shards=2)
    folder = dropzone.drop / "Tiny-Llama"
    daemon = dropzone.run()
    folder.mkdir()
    for name in ("config.json", "model.safetensors.index.json", "tokenizer.json"):
        shutil.copy(staged / name, folder / name)
        daemon.rescan()
    shutil.copy(staged / "tokenizer_config.json", folder / "tokenizer_config.json")
    shutil.copy(staged / "model-00001-of-00002.safetensors", folder)
    pending = daemon.wait_for("artifact.pending", path=str(folder))
    assert pending["missing"] == ["Tiny-Llama/model-00002-of-00002.safetensors"]
    since = daemon.rescan()
    assert daemon.find("artifact.ready", since=since) == []
    assert uploads(emulator) == 0

    shutil.copy(staged / "model-00002-of-00002.safetensors", folder)
    daemon.wait_for("model.created", model="tiny-llama:latest")
    since = daemon.rescan()
    assert daemon.find("artifact.ready", since=since) == []
    assert emulator.counters.creates("tiny-llama:latest") == 1
    for name in ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"):
        assert emulator.counters.blob_bodies_read(digest_of(folder / name)) == 1, name


def test_split_gguf_shards_arriving_one_by_one_are_imported_once_all_are_there(
    dropzone: Dropzone, emulator: Emulator
) -> None:
    shards = split_gguf(dropzone.tmp / "staging", "Big-Model", 3)
    daemon = dropzone.run()
    first = dropzone.drop / shards[0].name
    shutil.copy(shards[0], first)
    pending = daemon.wait_for("artifact.pending", path=str(first))
    assert sorted(pending["missing"]) == [s.name for s in shards[1:]]
    shutil.copy(shards[1], dropzone.drop / shards[1].name)
    since = daemon.rescan()
    assert daemon.find("artifact.ready", since=since) == []
    assert uploads(emulator) == 0

    shutil.copy(shards[2], dropzone.drop / shards[2].name)
    daemon.wait_for("model.created", model="big-model:latest")
    since = daemon.rescan()
    assert daemon.find("artifact.ready", since=since) == []
    assert emulator.counters.creates("big-model:latest") == 1
    for shard in shards:
        assert emulator.counters.blob_bodies_read(digest_of(shard)) == 1, shard.name

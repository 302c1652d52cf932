"""Issue 17, as an operator on the server's machine runs it: the real ``dropzone run`` process,
the host given in the JSON form of ``DROPZONE_OLLAMA_HOSTS`` with the emulator's store as its
``models_dir``. A GGUF still being written is copied into the store behind its hash; once it
is complete the model is made without an upload, from a blob that is the file's bytes."""

from __future__ import annotations

import json

from e2e_env import Dropzone, digest_of

from dropzone.testing.builders import build_gguf
from dropzone.testing.ollama import Emulator
from dropzone.testing.stores import copied_at_least, temporaries
from dropzone.testing.waiting import wait_until


def test_a_file_copied_in_is_placed_in_the_servers_store_while_it_arrives(
    dropzone: Dropzone, emulator: Emulator
) -> None:
    source = build_gguf(dropzone.tmp / "Local.gguf", n_tensors=4, tensor_elems=512 * 1024)
    data, digest = source.read_bytes(), digest_of(source)
    host = {"url": emulator.url, "models_dir": str(emulator.root), "local_import": "copy"}
    # A half-written file is followed while it is quiet for less than the settle wait; once its
    # writer closes it complete, it is ready after readiness' short close grace.
    daemon = dropzone.run(
        extra_env={"DROPZONE_OLLAMA_HOSTS": json.dumps([host])}, DROPZONE_SETTLE_SECONDS="60"
    )
    with (dropzone.drop / "Local.gguf").open("wb") as out:
        out.write(data[: len(data) // 2])
        out.flush()
        wait_until(
            lambda: copied_at_least(emulator.root, len(data) // 2),
            what="half of the file copied into the store while it is written",
        )
        out.write(data[len(data) // 2 :])
    daemon.wait_for("model.created", model="local:latest")
    placed = daemon.wait_for("blob.placed", digest=digest)
    assert (placed["method"], placed["staged"], placed["trailed"]) == ("copy", True, True)
    assert emulator.blob_path(digest).read_bytes() == data
    assert emulator.counters.blob_posts(digest) == 0
    assert temporaries(emulator.root) == []
    assert daemon.find("local_import.method", method="copy")

"""Nothing is done twice: a rescan or a restart after success sends nothing to the server (no
upload, no create, not even a HEAD per file), and an edited sidecar re-creates the model
without uploading its weights again."""

from __future__ import annotations

from typing import Any

from dropzone_process import DropzoneProcess
from e2e_env import Dropzone, digest_of

from dropzone.testing.builders import build_gguf
from dropzone.testing.ollama import Emulator


def server_work(emulator: Emulator, digest: str, model: str) -> dict[str, int]:
    c = emulator.counters
    return {
        "heads": c.blob_heads(digest),
        "posts": c.blob_posts(digest),
        "creates": c.creates(model),
        "shows": sum(1 for r in c.requests if r.path == "/api/show"),
    }


def no_work_started(daemon: DropzoneProcess, path: str, since: int = 0) -> list[dict[str, Any]]:
    return [
        e
        for e in daemon.events[since:]
        if e["event"] in ("artifact.ready", "hash.done", "blob.uploaded", "model.created")
        and e.get("path") == path
    ]


def test_a_rescan_and_a_restart_after_success_send_nothing_to_the_server(
    dropzone: Dropzone, emulator: Emulator
) -> None:
    gguf = build_gguf(dropzone.drop / "Stable.gguf")
    (dropzone.drop / "Stable.toml").write_text('model = "stable:v1"\nsystem = "Be calm."\n')
    digest = digest_of(gguf)
    first = dropzone.run()
    first.wait_for("artifact.done", model="stable:v1", result="done")
    after_import = server_work(emulator, digest, "stable:v1")
    assert after_import["posts"] == after_import["creates"] == 1

    since = first.rescan()
    assert no_work_started(first, str(gguf), since) == []
    assert first.stop() == 0
    assert server_work(emulator, digest, "stable:v1") == after_import

    second = dropzone.run()
    # Judged at the first scan (old enough to need no settling), and judged done.
    assert not second.find("artifact.pending")
    assert no_work_started(second, str(gguf)) == []
    # A second look, once any settle period a restart might impose has surely begun.
    since = second.rescan()
    assert no_work_started(second, str(gguf), since) == []
    assert not second.find("hash.done"), "a restart re-hashed an unchanged file"
    assert server_work(emulator, digest, "stable:v1") == after_import


def test_an_edited_sidecar_recreates_the_model_without_uploading_the_weights_again(
    dropzone: Dropzone, emulator: Emulator
) -> None:
    gguf = build_gguf(dropzone.drop / "Editable.gguf")
    sidecar = dropzone.drop / "Editable.toml"
    sidecar.write_text('model = "editable"\nsystem = "First."\n')
    digest = digest_of(gguf)
    daemon = dropzone.run()
    daemon.wait_for("model.created", model="editable")
    since = daemon.mark()

    sidecar.write_text('model = "editable"\nsystem = "Second."\n')
    daemon.wait_for("model.created", model="editable", since=since)
    assert emulator.counters.creates("editable:latest") == 2
    assert emulator.counters.blob_posts(digest) == 1, "the weights were uploaded again"
    assert not daemon.find("hash.done", since=since), "the unchanged weights were re-hashed"
    manifest = emulator.manifest("editable")
    assert manifest is not None
    system = [x for x in manifest["layers"] if x["mediaType"].endswith(".system")]
    assert [emulator.blob_path(x["digest"]).read_text() for x in system] == ["Second."]

"""Bad input is refused with one clear event (the file, the reason, the fix), nothing of it is
uploaded, and the daemon goes on importing the next good file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from dropzone_process import DropzoneProcess
from e2e_env import Dropzone

from dropzone.testing.builders import build_adapter_gguf, build_gguf, truncate, write_random
from dropzone.testing.ollama import Emulator


def uploads(emulator: Emulator) -> int:
    return sum(
        1
        for r in emulator.counters.requests
        if r.method == "POST" and r.path.startswith("/api/blobs/")
    )


def still_imports(dropzone: Dropzone, daemon: DropzoneProcess, name: str = "Good") -> None:
    """A good file dropped now becomes a model: one bad file did not stop the daemon."""
    build_gguf(dropzone.tmp / f"{name}.gguf", seed=11).rename(dropzone.drop / f"{name}.gguf")
    daemon.wait_for("model.created", model=f"{name.lower()}:latest")


def assert_refused_once(daemon: DropzoneProcess, event: str, **fields: object) -> dict[str, object]:
    """Exactly one ``event`` matching ``fields``, at level error, with a reason and a fix;
    a rescan does not repeat it."""
    since = daemon.rescan()
    found = daemon.find(event, **fields)
    assert len(found) == 1, f"expected one {event} {fields}, got {found}"
    assert daemon.find(event, since=since, **fields) == []
    refusal = found[0]
    assert refusal["level"] == "error"
    assert refusal["error"], "the event says what is wrong"
    assert refusal["fix"], "the event says how to fix it"
    return refusal


def garbage(drop: Path) -> Path:
    return write_random(drop / "Garbage.gguf", 4096)


def broken_toml_sidecar(drop: Path) -> Path:
    build_gguf(drop / "Broken.gguf")
    sidecar = drop / "Broken.toml"
    sidecar.write_text('model = "broken"\nsystem = "unterminated\n')
    return sidecar


def broken_modelfile_sidecar(drop: Path) -> Path:
    build_gguf(drop / "Broken.gguf")
    sidecar = drop / "Broken.Modelfile"
    sidecar.write_text("SYSTEM hello\nPARAMETER temperature hot\n")
    return sidecar


@pytest.mark.parametrize(
    ("make", "event"),
    [
        (garbage, "artifact.invalid"),
        (broken_toml_sidecar, "sidecar.invalid"),
        (broken_modelfile_sidecar, "sidecar.invalid"),
    ],
    ids=["garbage-gguf", "broken-toml-sidecar", "broken-modelfile-sidecar"],
)
def test_an_invalid_file_is_refused_once_and_the_daemon_keeps_importing(
    dropzone: Dropzone, emulator: Emulator, make: Callable[[Path], Path], event: str
) -> None:
    bad = make(dropzone.drop)
    daemon = dropzone.run()
    refusal = daemon.wait_for(event)
    assert refusal["file"] == str(bad)
    still_imports(dropzone, daemon)
    assert_refused_once(daemon, event)
    assert emulator.models() == ["good:latest"]
    assert uploads(emulator) == 1


def test_a_truncated_gguf_is_reported_once_as_incomplete_and_never_uploaded(
    dropzone: Dropzone, emulator: Emulator
) -> None:
    # Design §5: a file that stays structurally incomplete may still be arriving, so it is
    # "pending, N of M bytes", reported once, never uploaded, not retried in a hot loop.
    truncate(build_gguf(dropzone.drop / "Cut.gguf"), -100)
    daemon = dropzone.run()
    still_imports(dropzone, daemon)
    since = daemon.rescan()
    pending = daemon.find("artifact.pending", path=str(dropzone.drop / "Cut.gguf"))
    assert len(pending) == 1
    assert pending[0]["bytes"] == pending[0]["expected_bytes"] - 100
    assert daemon.find("artifact.pending", since=since) == []
    assert uploads(emulator) == 1


def test_a_symlink_leading_out_of_the_drop_folder_is_refused_and_not_uploaded(
    dropzone: Dropzone, emulator: Emulator
) -> None:
    outside = build_gguf(dropzone.tmp / "elsewhere" / "Secret.gguf")
    (dropzone.drop / "Secret.gguf").symlink_to(outside)
    daemon = dropzone.run()
    still_imports(dropzone, daemon)
    link = dropzone.drop / "Secret.gguf"
    refusal = assert_refused_once(daemon, "artifact.invalid", path=str(link))
    assert "out of the drop folder" in str(refusal["error"])
    assert emulator.models() == ["good:latest"]
    assert uploads(emulator) == 1


def test_a_sidecar_path_with_dotdot_is_refused_and_nothing_is_uploaded(
    dropzone: Dropzone, emulator: Emulator
) -> None:
    build_adapter_gguf(dropzone.tmp / "elsewhere" / "lora.gguf")
    build_gguf(dropzone.drop / "Base.gguf")
    sidecar = dropzone.drop / "Base.toml"
    sidecar.write_text('model = "tuned"\nadapters = ["../elsewhere/lora.gguf"]\n')
    daemon = dropzone.run()
    still_imports(dropzone, daemon)
    refusal = assert_refused_once(daemon, "sidecar.invalid")
    assert refusal["file"] == str(sidecar)
    assert refusal["key"] == "adapters"
    assert emulator.models() == ["good:latest"]
    assert uploads(emulator) == 1


def test_a_modelfile_from_with_dotdot_is_refused_and_nothing_is_uploaded(
    dropzone: Dropzone, emulator: Emulator
) -> None:
    build_gguf(dropzone.tmp / "elsewhere" / "Other.gguf")
    sidecar = dropzone.drop / "Base.Modelfile"
    build_gguf(dropzone.drop / "Base.gguf")
    sidecar.write_text("FROM ../elsewhere/Other.gguf\nSYSTEM hi\n")
    daemon = dropzone.run()
    still_imports(dropzone, daemon)
    refusal = assert_refused_once(daemon, "sidecar.invalid")
    assert refusal["file"] == str(sidecar)
    assert refusal["line"] == 1
    assert emulator.models() == ["good:latest"]
    assert uploads(emulator) == 1

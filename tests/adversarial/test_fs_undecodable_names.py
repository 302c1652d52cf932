"""Names that are not UTF-8, end to end with the real daemon (issue 13, adversarial suite).

A file or folder name that is not valid UTF-8, or a JSON sidecar with a lone ``\\ud800``
escape, used to crash the daemon on its main loop (the request fingerprint and the SQLite
parameters could not encode it), and again at every restart before READY=1, since the digest
was cached by then: under systemd a crash loop that imported nothing at all. The raw byte also
landed in the JSON log, which jq then refused. Now such an artifact is refused with a reason and
a fix, or imported under its sidecar's name, and every log line is valid UTF-8.

The invariants: the daemon alive (a rescan answered), every stdout line decoded strictly as
UTF-8 and parsed as a JSON event, SIGTERM answered with exit 0, a restart on the same state.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from dropzone_process import DropzoneProcess, clean_environment
from e2e_env import Dropzone

from dropzone.testing.builders import build_gguf, build_safetensors_model
from dropzone.testing.ollama import Emulator

# Names as Python hands them over: each undecodable byte as a surrogate escape (os.fsdecode).
BAD_FILE = os.fsdecode(b"mod\xe8le.gguf")
BAD_FOLDER = os.fsdecode(b"caf\xe9-model")


def escaped(path: Path | str) -> str:
    """How events and ``dropzone status`` show a name: each undecodable byte as ``\\xNN``."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def dropped_gguf(dropzone: Dropzone, name: str, seed: int) -> Path:
    """A GGUF moved in under ``name`` (built under a name of its own: the gguf writer stores
    the stem as general.name, which must be text)."""
    target = dropzone.drop / name
    target.parent.mkdir(parents=True, exist_ok=True)
    return build_gguf(dropzone.tmp / f"build-{seed}.gguf", seed=seed).rename(target)


def age(path: Path, seconds: float = 3600) -> Path:
    """Give a file the mtime of a copy that ended ``seconds`` ago (settled for ``scan``)."""
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def creates(emulator: Emulator) -> int:
    return sum(1 for r in emulator.counters.requests if r.path == "/api/create")


def assert_clean_log(process: DropzoneProcess) -> None:
    """Every stdout line is valid UTF-8 JSON, and nothing crashed."""
    assert process.not_utf8 == [], process.not_utf8
    assert process.not_json == [], process.not_json
    assert "Traceback" not in process.transcript(), process.transcript()


def status(dropzone: Dropzone, *args: str) -> bytes:
    """``dropzone status`` as an operator runs it beside the daemon: its raw stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "dropzone", "status", *args],
        env=clean_environment(dropzone.env()),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert b"Traceback" not in done.stderr, done.stderr.decode(errors="replace")
    return done.stdout


def test_an_undecodable_file_name_and_a_lone_surrogate_are_refused_and_a_restart_works(
    dropzone: Dropzone, emulator: Emulator
) -> None:
    build_gguf(dropzone.drop / "Good.gguf")
    bad = dropped_gguf(dropzone, BAD_FILE, seed=1)
    build_gguf(dropzone.drop / "Lone.gguf", seed=2)
    lone = dropzone.drop / "Lone.json"
    lone.write_text('{"model": "lone", "system": "\\ud800"}')

    for run in ("first start", "restart on the same state"):
        daemon = dropzone.run()  # returns at the first scan.done: the restart crashed before it
        refusal = daemon.wait_for("artifact.invalid", path=escaped(bad))
        assert refusal["level"] == "error" and refusal["key"] == "model", run
        assert "not valid UTF-8" in refusal["error"] and escaped(bad.name) in refusal["error"]
        assert "rename" in refusal["fix"] and "sidecar" in refusal["fix"]
        invalid = daemon.wait_for("sidecar.invalid", file=str(lone))
        assert invalid["key"] == "system" and "\\ud800" in invalid["error"], run
        assert invalid["fix"]
        if run == "first start":
            daemon.wait_for("model.created", model="good:latest")
        daemon.rescan()  # a full pass over everything, the good file settled
        assert daemon.stop() == 0, daemon.transcript()
        assert_clean_log(daemon)

    assert emulator.models() == ["good:latest"]
    assert creates(emulator) == 1, "nothing is created for the refused ones, nor twice"


def test_undecodable_folder_and_file_names_import_under_their_sidecar_names(
    dropzone: Dropzone, emulator: Emulator
) -> None:
    weights = build_safetensors_model(dropzone.tmp / "st").rename(dropzone.drop / BAD_FOLDER)
    (weights / "dropzone.toml").write_text('model = "cafe-st:v1"\n')
    gguf_folder = dropzone.drop / os.fsdecode(b"gguf-\xff")
    dropped_gguf(dropzone, f"{gguf_folder.name}/weights.gguf", seed=3)
    (gguf_folder / "weights.toml").write_text('model = "cafe-gguf:v1"\n')
    dropped_gguf(dropzone, BAD_FILE, seed=4)
    (dropzone.drop / os.fsdecode(b"mod\xe8le.toml")).write_text('model = "modele:v1"\n')
    wanted = ["cafe-gguf:v1", "cafe-st:v1", "modele:v1"]

    daemon = dropzone.run()
    for model in wanted:
        daemon.wait_for("model.created", model=model)
    done = daemon.wait_for("artifact.done", model="cafe-st:v1")
    assert done["path"] == escaped(weights)
    assert daemon.stop() == 0
    assert_clean_log(daemon)
    assert emulator.models() == wanted

    restart = dropzone.run()  # the crash loop: the digests are cached now
    restart.rescan()
    assert restart.find("artifact.ready") == []
    assert restart.stop() == 0
    assert_clean_log(restart)
    assert creates(emulator) == 3

    rows = json.loads(status(dropzone, "--json").decode("utf-8"))
    assert sorted(r["path"] for r in rows) == sorted(
        escaped(p) for p in (BAD_FILE, BAD_FOLDER, os.fsdecode(b"gguf-\xff/weights.gguf"))
    )
    assert {r["state"] for r in rows} == {"done"}
    assert escaped(BAD_FOLDER) in status(dropzone).decode("utf-8")


def test_scan_refuses_an_undecodable_name_without_a_traceback_and_imports_the_rest(
    dropzone: Dropzone, emulator: Emulator
) -> None:
    age(build_gguf(dropzone.drop / "Good.gguf"))
    age(dropped_gguf(dropzone, BAD_FILE, seed=1))

    for _ in range(2):  # the second pass meets the cached digests
        code, scan = dropzone.scan()
        assert code == 1, scan.transcript()
        assert scan.find("artifact.invalid", path=escaped(dropzone.drop / BAD_FILE))
        assert_clean_log(scan)
    assert emulator.models() == ["good:latest"]

"""``dropzone scan``: one pass, then an exit status a cron job or CI can act on:
0 everything imported or still pending, 1 something refused or failed, 2 bad configuration."""

from __future__ import annotations

import os
import time

from e2e_env import Dropzone

from dropzone.testing.builders import build_gguf, truncate, write_random
from dropzone.testing.ollama import Emulator


def age(path: os.PathLike[str], seconds: float) -> None:
    """Give a file the mtime of a copy that ended ``seconds`` ago."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_scan_exits_0_when_everything_is_imported_or_still_pending(
    dropzone: Dropzone, emulator: Emulator
) -> None:
    age(build_gguf(dropzone.drop / "Old.gguf"), 3600)
    build_gguf(dropzone.drop / "Fresh.gguf", seed=1)  # modified just now: still settling
    age(truncate(build_gguf(dropzone.drop / "Arriving.gguf", seed=2), -64), 3600)

    code, scan = dropzone.scan(DROPZONE_SETTLE_SECONDS="60")
    assert code == 0, scan.transcript()
    assert emulator.models() == ["old:latest"]
    assert scan.find("model.created", model="old:latest")
    assert "1 imported, 2 pending" in scan.transcript()


def test_scan_exits_1_when_something_is_refused_and_still_imports_the_rest(
    dropzone: Dropzone, emulator: Emulator
) -> None:
    age(build_gguf(dropzone.drop / "Good.gguf"), 3600)
    age(write_random(dropzone.drop / "Garbage.gguf", 2048), 3600)

    code, scan = dropzone.scan()
    assert code == 1, scan.transcript()
    assert emulator.models() == ["good:latest"]
    assert len(scan.find("artifact.invalid", path=str(dropzone.drop / "Garbage.gguf"))) == 1


def test_scan_exits_1_when_a_host_cannot_be_reached(
    dropzone: Dropzone, second_emulator: Emulator
) -> None:
    age(build_gguf(dropzone.drop / "Stranded.gguf"), 3600)
    code, scan = dropzone.scan(hosts=[second_emulator.url])
    assert code == 1, scan.transcript()
    assert scan.find("retry.scheduled", host=second_emulator.url)


def test_scan_exits_2_on_bad_configuration_with_one_message_per_problem(
    dropzone: Dropzone, emulator: Emulator
) -> None:
    age(build_gguf(dropzone.drop / "Untouched.gguf"), 3600)
    code, scan = dropzone.scan(DROPZONE_SETTLE_SECONDS="-1", DROPZONE_ON_SUCCESS="burn")
    assert code == 2
    problems = [line for line in scan.transcript().splitlines() if line.startswith("dropzone: ")]
    assert len(problems) == 2, scan.transcript()
    assert any("settle_seconds" in p for p in problems)
    assert any("on_success" in p for p in problems)
    assert emulator.counters.requests == [], "nothing is done with a bad configuration"


def test_scan_exits_2_when_the_drop_folder_does_not_exist(
    dropzone: Dropzone, emulator: Emulator
) -> None:
    code, scan = dropzone.scan(DROPZONE_DROP_DIR=str(dropzone.tmp / "missing"))
    assert code == 2
    problems = [line for line in scan.transcript().splitlines() if line.startswith("dropzone: ")]
    assert len(problems) == 1 and "drop_dir" in problems[0], scan.transcript()
    assert not (dropzone.tmp / "missing").exists()


def test_scan_retries_a_down_host_within_its_run_then_says_what_it_gave_up_on(
    dropzone: Dropzone, emulator: Emulator
) -> None:
    age(build_gguf(dropzone.drop / "Unlucky.gguf"), 3600)
    emulator.stop()
    code, process = dropzone.scan(timeout=60)
    assert code == 1
    attempts = process.find("ollama.unreachable")
    assert len(attempts) >= 2, "scan gave up after one attempt"
    gave_up = process.find("scan.gave_up")
    assert gave_up and gave_up[0]["path"].endswith("Unlucky.gguf")

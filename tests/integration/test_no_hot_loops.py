"""Waiting is a timer, never a re-run (issue #11): while a host is down, an artifact's job runs
once per retry, not several times a second; a digest mismatch that persists backs off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dropzone.testing.builders import build_gguf
from dropzone.testing.ollama import Emulator
from dropzone.testing.waiting import wait_until


def test_a_host_in_backoff_runs_the_job_once_per_retry(
    start: Any, drop: Path, emulator: Emulator
) -> None:
    build_gguf(drop / "Patient.gguf")
    emulator.stop()
    daemon = start()
    # Two retries: the first attempt, then backoff of about 2 s and 4 s.
    wait_until(lambda: len(daemon.find("retry.scheduled")) >= 3, timeout=30, what="3 retries")
    retries = len(daemon.find("retry.scheduled"))
    ready = len(daemon.find("artifact.ready"))
    assert ready <= retries + 1, f"{ready} job runs for {retries} retries: a hot loop"
    emulator.start()
    daemon.wait_for("model.created", model="patient:latest", timeout=30)


def test_a_digest_mismatch_that_persists_backs_off(
    start: Any, drop: Path, emulator: Emulator
) -> None:
    build_gguf(drop / "Altered.gguf")
    # A proxy that alters bodies: every upload ends in "digest mismatch".
    emulator.faults.fail_next(
        1000, status=400, path_prefix="/api/blobs/", error="digest mismatch", method="POST"
    )
    daemon = start()
    wait_until(
        lambda: len(daemon.find("retry.scheduled", path="Altered.gguf")) >= 2,
        timeout=30,
        what="two backoffs",
    )
    mismatches = len(daemon.find("blob.digest_mismatch"))
    hashes = len(daemon.find("hash.done"))
    assert mismatches <= 3 and hashes <= 3, (mismatches, hashes)
    emulator.faults.clear()
    daemon.wait_for("model.created", model="altered:latest", timeout=30)

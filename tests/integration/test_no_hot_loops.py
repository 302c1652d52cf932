"""Waiting is a timer, never a re-run (issue #11): while a host is down, an artifact's job runs
once per retry, not several times a second; a digest mismatch that persists backs off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dropzone.ollama import probes
from dropzone.testing.builders import build_gguf
from dropzone.testing.ollama import Emulator
from dropzone.testing.waiting import wait_until


@pytest.mark.slow
def test_a_host_that_is_down_costs_probes_not_jobs(
    start: Any, drop: Path, emulator: Emulator, monkeypatch: Any
) -> None:
    # Was: 97 artifact.ready and 97 state writes in 20 s for 5 connection attempts. Now the
    # artifact's job runs once; then only the host is probed until it answers.
    monkeypatch.setattr(probes, "PROBE_FIRST_SECONDS", 0.05)
    monkeypatch.setattr(probes, "PROBE_MAX_SECONDS", 0.2)
    build_gguf(drop / "Patient.gguf")
    emulator.stop()
    daemon = start()
    daemon.wait_for("host.down", host=emulator.url)
    looks: list[float] = []
    reconcile = daemon.daemon.reconcile

    def counted(**kwargs: Any) -> None:
        looks.append(1)
        reconcile(**kwargs)

    daemon.daemon.reconcile = counted  # type: ignore[method-assign]
    wait_until(lambda: len(daemon.find("host.probe")) >= 12, timeout=30, what="12 probes")
    # Silent spinning shows too: a waiting artifact whose retry time has passed once made the
    # loop look at its folder five times a second without a word.
    assert len(looks) <= 3, f"{len(looks)} looks at the folder while the host was down"
    assert len(daemon.find("artifact.ready")) == 1
    assert len(daemon.find("ollama.unreachable", path=str(drop / "Patient.gguf"))) == 1
    emulator.start()
    daemon.wait_for("host.up", host=emulator.url)
    daemon.wait_for("model.created", model="patient:latest", timeout=30)


@pytest.mark.slow
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

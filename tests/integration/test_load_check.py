"""``verify = "load"`` (issue 16): after create the server is asked to load the model; a load
failure is a refusal with the server's text, shown by status and counted in the metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dropzone.fleet.metrics import Metrics
from dropzone.testing.builders import build_gguf
from dropzone.testing.ollama import Emulator


def generate_bodies(emulator: Emulator) -> list[str]:
    return [r.path for r in emulator.counters.requests if r.path == "/api/generate"]


def test_show_is_the_default_and_sends_no_load(start: Any, drop: Path, emulator: Emulator) -> None:
    build_gguf(drop / "Plain.gguf")
    daemon = start()
    daemon.wait_for("artifact.done", model="plain:latest", result="done")
    assert generate_bodies(emulator) == [] and not daemon.find("model.loaded")


def test_load_loads_then_unloads_the_model(start: Any, drop: Path, emulator: Emulator) -> None:
    build_gguf(drop / "Warm.gguf")
    daemon = start(verify="load")
    loaded = daemon.wait_for("model.loaded", model="warm:latest")
    assert loaded["host"] == emulator.url and loaded["unloaded"] is True
    daemon.wait_for("artifact.done", model="warm:latest", result="done")
    assert len(generate_bodies(emulator)) == 2  # load, then keep_alive 0


def test_a_load_failure_is_a_refusal_with_the_servers_text(
    start: Any, drop: Path, emulator: Emulator
) -> None:
    build_gguf(drop / "Broken.gguf")
    emulator.faults.fail_load("llama runner process has terminated: unknown architecture 'x'")
    daemon = start(verify="load")
    failed = daemon.wait_for("model.load_failed", model="broken:latest")
    assert "unknown architecture 'x'" in failed["error"] and failed["status"] == 500
    done = daemon.wait_for("artifact.done", model="broken:latest")
    assert done["result"] == "failed" and "unknown architecture" in done["error"]
    assert not daemon.find("model.created", model="broken:latest")
    row = daemon.daemon.state.host_state("Broken.gguf", emulator.url)
    assert row is not None and str(row.state) == "refused" and row.next_retry_at is None
    assert row.last_error is not None and "unknown architecture" in row.last_error
    # Counted by reason in the metrics.
    m = Metrics(hosts=[emulator.url], drop_dir=drop, state=None)
    m.observe(failed)
    assert m.failed.labels(emulator.url, "load_failed")._value.get() == 1


def test_verify_model_per_host_load_checks_one_host_only(
    start: Any, drop: Path, emulator: Emulator, tmp_path: Path
) -> None:
    """A host table's ``verify_model`` overrides the global ``verify`` for that host alone
    (the table's ``verify`` key is its TLS setting)."""
    build_gguf(drop / "Split.gguf")
    with Emulator(tmp_path / "other") as other:
        hosts = [{"url": emulator.url, "verify_model": "load"}, {"url": other.url}]
        daemon = start(ollama_hosts=hosts)
        daemon.wait_for("artifact.done", model="split:latest", result="done")
        assert [e["host"] for e in daemon.find("model.loaded")] == [emulator.url]
        created = {e["host"] for e in daemon.find("model.created", model="split:latest")}
        assert created == {emulator.url, other.url}
        assert len(generate_bodies(emulator)) == 2  # load, then keep_alive 0
        assert generate_bodies(other) == []


def test_verify_model_show_exempts_a_host_from_the_global_load(
    start: Any, drop: Path, emulator: Emulator, tmp_path: Path
) -> None:
    build_gguf(drop / "Cold.gguf")
    with Emulator(tmp_path / "other") as other:
        hosts = [{"url": emulator.url, "verify_model": "show"}, other.url]
        daemon = start(ollama_hosts=hosts, verify="load")
        daemon.wait_for("artifact.done", model="cold:latest", result="done")
        assert [e["host"] for e in daemon.find("model.loaded")] == [other.url]
        assert generate_bodies(emulator) == [] and len(generate_bodies(other)) == 2

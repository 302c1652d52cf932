"""Scraping a running daemon (issue 16): through an import, a failure and an outage, parsed
with the Prometheus client's own parser, as Prometheus would read it."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import LogCapture

from dropzone.fleet.eventtap import tap
from dropzone.testing.builders import build_gguf
from dropzone.testing.ollama import Emulator
from dropzone.testing.waiting import wait_until

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def capture() -> Iterator[LogCapture]:
    # As configure_logging does in the real process: the tap first in the chain.
    capturing = LogCapture()
    structlog.configure(processors=[tap, structlog.processors.add_log_level, capturing])
    try:
        yield capturing
    finally:
        structlog.reset_defaults()


def scrape(client: httpx.Client, url: str) -> Samples:
    response = client.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def get(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


@pytest.mark.slow
def test_a_scrape_follows_an_import_a_failure_and_an_outage(
    start: Any, drop: Path, emulator: Emulator
) -> None:
    host = emulator.url
    daemon = start(metrics_listen="127.0.0.1:0")
    server = daemon.daemon.fleet.server
    assert server is not None and server.address.port != 0
    url = f"http://127.0.0.1:{server.address.port}/metrics"
    listening = daemon.find("metrics.listening")
    assert listening and listening[0]["address"] == f"127.0.0.1:{server.address.port}"
    with httpx.Client(timeout=5) as client:
        s = scrape(client, url)
        assert get(s, "dropzone_host_up", host=host) == 1
        assert get(s, "dropzone_host_info", host=host, version=emulator.version) == 1
        assert get(s, "dropzone_imports_completed_total", host=host) == 0

        # An import.
        build_gguf(drop / "Good.gguf")
        daemon.wait_for("artifact.done", model="good:latest", result="done")
        s = scrape(client, url)
        size = (drop / "Good.gguf").stat().st_size
        assert get(s, "dropzone_imports_completed_total", host=host) == 1
        assert get(s, "dropzone_hashed_bytes_total") == size
        assert get(s, "dropzone_uploaded_bytes_total", host=host) == size
        assert get(s, "dropzone_hash_duration_seconds_count") == 1
        assert get(s, "dropzone_create_duration_seconds_count", host=host) == 1
        assert get(s, "dropzone_artifacts", host=host, state="done") == 1
        stamp = get(s, "dropzone_last_import_timestamp_seconds", host=host)
        assert stamp is not None and stamp > 0

        # A failure: the server rejects the create.
        emulator.faults.fail_next(1, status=400, path_prefix="/api/create", error="bad template")
        build_gguf(drop / "Bad.gguf")
        daemon.wait_for("artifact.done", model="bad:latest", result="failed")
        s = scrape(client, url)
        assert get(s, "dropzone_imports_failed_total", host=host, reason="rejected") == 1
        assert get(s, "dropzone_artifacts", host=host, state="refused") == 1
        assert get(s, "dropzone_imports_completed_total", host=host) == 1

        # An outage: the host is down, the new artifact waits and the backlog has an age.
        emulator.stop()
        build_gguf(drop / "Later.gguf")
        daemon.wait_for("retry.scheduled", host=host)
        s = scrape(client, url)
        assert get(s, "dropzone_host_up", host=host) == 0
        retries = get(s, "dropzone_retries_total", host=host)
        assert retries is not None and retries >= 1
        assert get(s, "dropzone_artifacts", host=host, state="waiting") == 1
        assert get(s, "dropzone_oldest_waiting_seconds") is not None

        # Back: the probe sees it, the waiting import completes.
        emulator.start()
        daemon.wait_for("artifact.done", model="later:latest", result="done", timeout=30)
        s = wait_until(
            lambda: (t := scrape(client, url))
            and get(t, "dropzone_imports_completed_total", host=host) == 2
            and t,
            what="the second completion scraped",
        )
        assert get(s, "dropzone_host_up", host=host) == 1
        assert get(s, "dropzone_oldest_waiting_seconds") == 0
        names = {name for name, _ in s}
        assert "dropzone_build_info" in names
        # Bounded labels only: no path or model name ever becomes a label.
        keys = {k for _, labels in s for k, _ in labels}
        assert keys <= {"host", "state", "reason", "le", "version", "python"}


def test_metrics_on_a_unix_socket_and_in_a_textfile(
    start: Any, drop: Path, emulator: Emulator, tmp_path: Path
) -> None:
    sock = tmp_path / "metrics.sock"
    textfile = tmp_path / "textfile" / "dropzone.prom"
    textfile.parent.mkdir()
    build_gguf(drop / "Sock.gguf")
    daemon = start(metrics_listen=str(sock), metrics_textfile=str(textfile))
    daemon.wait_for("artifact.done", model="sock:latest", result="done")
    transport = httpx.HTTPTransport(uds=str(sock))
    with httpx.Client(transport=transport, timeout=5) as client:
        s = scrape(client, "http://dropzone/metrics")
    assert get(s, "dropzone_imports_completed_total", host=emulator.url) == 1
    assert textfile.exists()  # written at start, then every 15 s
    assert daemon.stop() == 0
    # The last write at stop has the import; the socket is gone.
    text = textfile.read_text()
    done = [
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "dropzone_imports_completed_total"
    ]
    assert done == [1]
    assert not sock.exists()


def test_hooks_run_after_an_import_and_a_refusal_without_holding_the_daemon(
    start: Any, drop: Path, emulator: Emulator, tmp_path: Path
) -> None:
    record = tmp_path / "hook.py"
    record.write_text(
        "import json, os, sys\n"
        "out = sys.argv[1] + '/' + os.environ['DROPZONE_EVENT'] + '.json'\n"
        "json.dump({k: v for k, v in os.environ.items() if k.startswith('DROPZONE_')},"
        " open(out, 'w'))\n"
    )
    argv = [sys.executable, str(record), str(tmp_path)]
    emulator.faults.fail_next(1, status=400, path_prefix="/api/create", error="bad template")
    build_gguf(drop / "First.gguf")
    daemon = start(on_imported=argv, on_refused=argv)
    daemon.wait_for("hook.done", hook="on_refused")
    refused = json.loads((tmp_path / "refused.json").read_text())
    assert refused["DROPZONE_MODEL"] == "first:latest"
    assert "bad template" in refused["DROPZONE_REASON"]
    (drop / "First.gguf").unlink()
    build_gguf(drop / "Second.gguf")
    daemon.wait_for("hook.done", hook="on_imported")
    imported = json.loads((tmp_path / "imported.json").read_text())
    assert imported["DROPZONE_HOST"] == emulator.url
    assert imported["DROPZONE_ARTIFACT"] == str(drop / "Second.gguf")
    assert imported["DROPZONE_DIGESTS"].startswith("sha256:")


def test_a_blob_placed_in_a_same_host_store_is_scraped_as_placed_not_uploaded(
    start: Any, drop: Path, emulator: Emulator
) -> None:
    host = emulator.url
    local = {"url": host, "models_dir": str(emulator.root), "local_import": "copy"}
    daemon = start(metrics_listen="127.0.0.1:0", ollama_hosts=[local])
    server = daemon.daemon.fleet.server
    assert server is not None
    build_gguf(drop / "Here.gguf")
    daemon.wait_for("artifact.done", model="here:latest", result="done")
    with httpx.Client(timeout=5) as client:
        s = scrape(client, f"http://127.0.0.1:{server.address.port}/metrics")
    size = (drop / "Here.gguf").stat().st_size
    assert get(s, "dropzone_placed_bytes_total", host=host, method="copy") == size
    assert get(s, "dropzone_uploaded_bytes_total", host=host) == 0
    assert get(s, "dropzone_place_duration_seconds_count", host=host) == 1
    assert get(s, "dropzone_imports_completed_total", host=host) == 1

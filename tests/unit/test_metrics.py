"""Metrics (issue 16): the event table, the state gauges, the listen address, the textfile."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
import structlog
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from dropzone.config.listen import ListenAddress, parse_listen
from dropzone.config.loading import load_settings
from dropzone.errors import ConfigError
from dropzone.fleet import eventtap
from dropzone.fleet.export import TextfileWriter, write_textfile
from dropzone.fleet.metrics import REASONS, Metrics
from dropzone.logs import configure_logging, reset_logging
from dropzone.store.state import HostState, StateStore

HOST = "http://127.0.0.1:11434"
OTHER = "http://10.0.0.2:11434"
DROP = Path("/srv/dropzone")


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, parsed with the client's own parser."""
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, tuple(sorted(labels.items()))))


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(hosts=[HOST], drop_dir=DROP, state=None)


# -- the listen address ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", None),
        ("9464", ListenAddress("127.0.0.1", 9464)),
        ("127.0.0.1:9464", ListenAddress("127.0.0.1", 9464)),
        ("localhost:9464", ListenAddress("127.0.0.1", 9464)),
        ("[::1]:9464", ListenAddress("::1", 9464)),
        ("0.0.0.0:9464", ListenAddress("0.0.0.0", 9464)),  # written so: allowed
        ("127.0.0.1:0", ListenAddress("127.0.0.1", 0)),
        ("/run/dropzone/metrics.sock", ListenAddress(unix=Path("/run/dropzone/metrics.sock"))),
        ("unix:/run/dropzone/m.sock", ListenAddress(unix=Path("/run/dropzone/m.sock"))),
    ],
)
def test_listen_addresses_are_loopback_unless_written_otherwise(
    text: str, expected: ListenAddress | None
) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", [":9464", "[]:9464", "host.example:9464", "1.2.3.4:99999",
                                  "unix:relative.sock", "9464:"])  # fmt: skip
def test_listen_addresses_that_could_open_every_interface_by_accident_are_refused(
    text: str,
) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_listen(text)


def test_settings_default_to_no_metrics_and_explain_a_bare_port_colon(tmp_path: Path) -> None:
    absent = tmp_path / "absent.toml"
    s = load_settings(config_path=None, env={}, default_config_path=absent)
    assert (s.metrics_listen, s.metrics_textfile) == ("", "")
    with pytest.raises(ConfigError) as e:
        load_settings(
            config_path=None, env={"DROPZONE_METRICS_LISTEN": ":9464"}, default_config_path=absent
        )
    assert "0.0.0.0:PORT" in str(e.value) and "metrics_listen" in str(e.value)


# -- events → metrics --------------------------------------------------------------------------


def test_a_successful_import_counts_bytes_durations_and_the_completion(metrics: Metrics) -> None:
    path = str(DROP / "a.gguf")
    for event in [
        {"event": "ollama.version", "host": HOST, "version": "0.33.0"},
        {"event": "hash.done", "path": path, "bytes": 1000, "seconds": 0.7},
        {"event": "blob.uploaded", "path": path, "host": HOST, "bytes": 1000, "seconds": 3.0},
        {"event": "model.created", "path": path, "host": HOST, "model": "a:latest", "seconds": 12},
        {"event": "artifact.done", "path": path, "host": HOST, "result": "done"},
    ]:
        metrics.observe(event)
    assert value(metrics, "dropzone_hashed_bytes_total") == 1000
    assert value(metrics, "dropzone_uploaded_bytes_total", host=HOST) == 1000
    assert value(metrics, "dropzone_hash_duration_seconds_count") == 1
    assert value(metrics, "dropzone_upload_duration_seconds_bucket", host=HOST, le="5.0") == 1
    assert value(metrics, "dropzone_create_duration_seconds_bucket", host=HOST, le="10.0") == 0
    assert value(metrics, "dropzone_create_duration_seconds_sum", host=HOST) == 12
    assert value(metrics, "dropzone_imports_completed_total", host=HOST) == 1
    assert value(metrics, "dropzone_host_up", host=HOST) == 1
    assert value(metrics, "dropzone_host_info", host=HOST, version="0.33.0") == 1


def test_a_blob_placed_in_a_same_host_store_counts_its_bytes_by_method(metrics: Metrics) -> None:
    """Issue 17: a host whose blobs are placed, not uploaded, still shows the bytes it got."""
    path = str(DROP / "a.gguf")
    for event in [
        {"event": "blob.placed", "path": path, "host": HOST, "method": "copy", "bytes": 700,
         "seconds": 0.2, "staged": True, "trailed": True},
        {"event": "blob.placed", "path": path, "host": HOST, "method": "link", "bytes": 300,
         "seconds": 0.001},
    ]:  # fmt: skip
        metrics.observe(event)
    assert value(metrics, "dropzone_placed_bytes_total", host=HOST, method="copy") == 700
    assert value(metrics, "dropzone_placed_bytes_total", host=HOST, method="link") == 300
    assert value(metrics, "dropzone_uploaded_bytes_total", host=HOST) == 0
    assert value(metrics, "dropzone_place_duration_seconds_count", host=HOST) == 2


def test_failures_are_counted_by_a_bounded_reason_never_by_their_text(metrics: Metrics) -> None:
    ctx = {"path": str(DROP / "a.gguf"), "host": HOST, "model": "a:latest"}
    metrics.observe({"event": "model.failed", **ctx, "error": "bad template {{", "status": 400})
    metrics.observe({"event": "model.failed", **ctx, "error": "too old", "version": "0.1.0"})
    metrics.observe({"event": "artifact.refused", **ctx, "status": 413})
    metrics.observe({"event": "model.load_failed", **ctx, "error": "unknown architecture"})
    for reason in REASONS:
        assert value(metrics, "dropzone_imports_failed_total", host=HOST, reason=reason) == 1
    names = {labels for (name, labels) in samples(metrics) if name.startswith("dropzone_imports")}
    assert all(k in ("host", "reason") for labels in names for k, _ in labels)


def test_an_outage_marks_the_host_down_and_counts_retries(metrics: Metrics) -> None:
    metrics.observe({"event": "ollama.unreachable", "host": HOST, "error": "refused"})
    metrics.observe({"event": "retry.scheduled", "host": HOST, "path": str(DROP / "a.gguf")})
    metrics.observe({"event": "retry.scheduled", "path": "a.gguf", "attempts": 1})  # local
    assert value(metrics, "dropzone_host_up", host=HOST) == 0
    assert value(metrics, "dropzone_retries_total", host=HOST) == 1
    assert value(metrics, "dropzone_retries_total", host="") == 1
    metrics.observe({"event": "host.up", "host": HOST, "version": "0.34.0"})
    assert value(metrics, "dropzone_host_up", host=HOST) == 1
    assert value(metrics, "dropzone_host_info", host=HOST, version="0.34.0") == 1
    assert value(metrics, "dropzone_host_info", host=HOST, version="0.33.0") is None


def test_every_host_has_its_series_from_the_start_so_the_first_failure_is_a_rate(
    metrics: Metrics,
) -> None:
    assert value(metrics, "dropzone_imports_failed_total", host=HOST, reason="rejected") == 0
    assert value(metrics, "dropzone_imports_completed_total", host=HOST) == 0


def test_build_info_names_the_version() -> None:
    m = Metrics(hosts=[], drop_dir=DROP, state=None)
    (info,) = [k for k in samples(m) if k[0] == "dropzone_build_info"]
    assert dict(info[1])["version"]


def test_two_daemons_in_one_process_have_their_own_registries_and_events() -> None:
    # Private registries: no "Duplicated timeseries" from the client's global one, and each
    # daemon counts only events about its own hosts and drop folder.
    a = Metrics(hosts=[HOST], drop_dir=DROP, state=None)
    b = Metrics(hosts=[OTHER], drop_dir=Path("/srv/other"), state=None)
    for m in (a, b):
        m.observe({"event": "artifact.done", "host": HOST, "result": "done"})
        m.observe({"event": "hash.done", "path": "/srv/other/x.gguf", "bytes": 5, "seconds": 1})
    assert value(a, "dropzone_imports_completed_total", host=HOST) == 1
    assert value(b, "dropzone_imports_completed_total", host=HOST) is None
    assert value(a, "dropzone_hashed_bytes_total") == 0
    assert value(b, "dropzone_hashed_bytes_total") == 5


def test_a_malformed_event_does_not_break_logging() -> None:
    seen: list[str] = []

    def broken(event: object) -> None:
        raise RuntimeError("bug")

    stop_broken = eventtap.subscribe(broken)
    stop_seen = eventtap.subscribe(lambda e: seen.append(str(e["event"])))
    out = io.StringIO()
    try:
        configure_logging(fmt="json", level="error", stream=out)
        structlog.get_logger("t").info("hash.done", bytes="many")  # below the level
    finally:
        stop_broken()
        stop_seen()
        reset_logging()
    # Seen by the tap although the level drops it from the log: metrics do not depend on it.
    assert seen == ["hash.done"] and out.getvalue() == ""


# -- state gauges ---------------------------------------------------------------------------


def test_state_gauges_come_from_the_store_and_the_backlog_ages(tmp_path: Path) -> None:
    now = [1_000_000.0]
    store = StateStore.open(tmp_path / "state", clock=lambda: now[0])
    m = Metrics(hosts=[HOST], drop_dir=DROP, state=store, clock=lambda: now[0])
    store.set_host_state("a.gguf", HOST, HostState.DONE)
    store.set_host_state("b.gguf", HOST, HostState.FAILED, error="x", next_retry_at=now[0] + 60)
    store.set_host_state("c.gguf", HOST, HostState.FAILED, error="refused")
    store.set_host_state("d.gguf", HOST, HostState.UPLOADING)
    assert value(m, "dropzone_artifacts", host=HOST, state="done") == 1
    assert value(m, "dropzone_artifacts", host=HOST, state="waiting") == 1
    assert value(m, "dropzone_artifacts", host=HOST, state="refused") == 1
    assert value(m, "dropzone_artifacts", host=HOST, state="uploading") == 1
    assert value(m, "dropzone_artifacts", host=HOST, state="creating") == 0
    stamp = value(m, "dropzone_last_import_timestamp_seconds", host=HOST)
    assert stamp is not None and stamp > 0
    first = value(m, "dropzone_oldest_waiting_seconds")
    # A retry moves the row's updated_at; the backlog's age keeps growing all the same.
    now[0] += 3600
    store.set_host_state("b.gguf", HOST, HostState.FAILED, error="x", next_retry_at=now[0] + 60)
    later = value(m, "dropzone_oldest_waiting_seconds")
    assert first is not None and later is not None and later >= first + 3600 - 1
    for rel in ("b.gguf", "d.gguf"):
        store.set_host_state(rel, HOST, HostState.DONE)
    assert value(m, "dropzone_oldest_waiting_seconds") == 0
    store.close()


# -- the textfile ---------------------------------------------------------------------------


def test_the_textfile_is_replaced_atomically_never_written_in_place(
    tmp_path: Path, metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "dropzone.prom"
    target.write_text("# the previous scrape\n")
    renames: list[tuple[str, str, str]] = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        # At the moment of the rename the target still holds the old, whole content.
        renames.append((src, dst, Path(dst).read_text()))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    write_textfile(target, metrics.registry)
    ((src, dst, before),) = renames
    assert Path(src).parent == tmp_path and not src.endswith(".prom")  # the collector skips it
    assert Path(src).name.startswith(".")
    assert (str(dst), before) == (str(target), "# the previous scrape\n")
    families = {f.name for f in text_string_to_metric_families(target.read_text())}
    assert "dropzone_build_info" in families
    assert os.stat(target).st_mode & 0o777 == 0o644  # node_exporter runs as another user
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dropzone.prom"]


def test_a_textfile_folder_the_service_cannot_write_is_a_warning_once(
    tmp_path: Path, metrics: Metrics
) -> None:
    target = tmp_path / "missing" / "dropzone.prom"
    with structlog.testing.capture_logs() as logs:
        writer = TextfileWriter(target, metrics.registry, interval=3600)
        assert writer.write() is False
        writer.close()
    failed = [e for e in logs if e["event"] == "metrics.textfile_failed"]
    assert len(failed) == 1 and "ReadWritePaths" in failed[0]["fix"]

"""Fault injection, restart with pruning, counters and the standalone entry point."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from emulator_helpers import Api, digest_of

from dropzone.testing.ollama import Emulator
from dropzone.testing.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_stop_refuses_connections_and_start_serves_again_on_the_same_port(
    api: Api, emulator: Emulator
) -> None:
    digest = api.upload(b"kept across restarts")
    port, url = emulator.port, emulator.url
    emulator.stop()
    assert not emulator.running
    assert refused(port)
    emulator.start()
    assert (emulator.port, emulator.url) == (port, url)
    with httpx.Client(base_url=url) as fresh:
        assert fresh.head(f"/api/blobs/{digest}").status_code == 200


def test_stop_cuts_idle_keep_alive_connections(api: Api, emulator: Emulator) -> None:
    assert api.call("GET", "/api/version").status == 200  # the pooled connection is now idle
    emulator.stop()
    with pytest.raises(httpx.TransportError):
        api.client.get("/api/version")


def test_fail_next_answers_500_to_the_next_requests(api: Api, emulator: Emulator) -> None:
    emulator.faults.fail_next(2)
    for _ in range(2):
        reply = api.call("GET", "/api/version")
        assert (reply.status, reply.json()) == (500, {"error": "injected fault"})
    assert api.call("GET", "/api/version").status == 200


def test_fail_next_can_target_a_path_prefix_and_status(api: Api, emulator: Emulator) -> None:
    emulator.faults.fail_next(1, status=503, path_prefix="/api/blobs/")
    assert api.call("GET", "/api/tags").status == 200
    digest = digest_of(b"x")
    assert api.call("POST", f"/api/blobs/{digest}", raw=b"x").status == 503
    assert not emulator.has_blob(digest)
    assert api.call("POST", f"/api/blobs/{digest}", raw=b"x").status == 201


def test_stall_holds_matching_requests_until_released(api: Api, emulator: Emulator) -> None:
    emulator.faults.stall(path_prefix="/api/tags")
    results: list[int] = []
    worker = threading.Thread(target=lambda: results.append(api.call("GET", "/api/tags").status))
    worker.start()
    assert emulator.faults.wait_held(1)
    with httpx.Client(base_url=emulator.url) as other:
        assert other.get("/api/version").status_code == 200  # other paths are not held
    assert results == []
    emulator.faults.release()
    worker.join(timeout=10)
    assert results == [200]
    assert emulator.faults.held == 0


def test_stall_with_a_duration_releases_by_itself(api: Api, emulator: Emulator) -> None:
    emulator.faults.stall(duration=1.0)
    results: list[int] = []
    worker = threading.Thread(target=lambda: results.append(api.call("GET", "/api/version").status))
    worker.start()
    assert emulator.faults.wait_held(1, timeout=1.0), "the request was not held"
    worker.join(timeout=10)  # nobody calls release(): the stall ends by itself
    assert results == [200]
    assert emulator.faults.held == 0


def test_stop_drops_stalled_requests(api: Api, emulator: Emulator) -> None:
    emulator.faults.stall()
    errors: list[BaseException] = []

    def call() -> None:
        try:
            api.client.get("/api/version")
        except httpx.TransportError as exc:
            errors.append(exc)

    worker = threading.Thread(target=call)
    worker.start()
    assert emulator.faults.wait_held(1)
    emulator.stop()
    worker.join(timeout=10)
    assert len(errors) == 1


def test_cut_upload_drops_the_connection_midway_and_keeps_nothing(
    api: Api, emulator: Emulator
) -> None:
    data = os.urandom(3 << 20)
    digest = digest_of(data)
    emulator.faults.cut_upload(after_bytes=1 << 20)
    with pytest.raises(httpx.TransportError):
        api.client.post(f"/api/blobs/{digest}", content=data)
    assert not emulator.has_blob(digest)
    assert list(emulator.store.blobs.iterdir()) == []  # the partial temp file is gone
    assert emulator.counters.blob_bodies_read(digest) == 1
    wait_until(lambda: emulator.counters.requests, what="the cut request is logged")
    assert emulator.counters.requests[-1].status == 0
    assert api.call("POST", f"/api/blobs/{digest}", raw=data).status == 201  # one-shot


def test_restart_prunes_unreferenced_blobs_like_a_server_start(
    api: Api, emulator: Emulator
) -> None:
    model = api.gguf()
    api.create(model="m", files={"m.gguf": model}, stream=False)
    manifest = emulator.manifest("m")
    assert manifest is not None
    stray = api.upload(b"uploaded, never referenced")
    temp = emulator.store.blobs / "sha256-123456789"
    temp.write_bytes(b"stale upload")
    legacy = emulator.store.blobs / ("sha256:" + manifest["config"]["digest"].split(":")[1])
    os.rename(emulator.blob_path(manifest["config"]["digest"]), legacy)

    emulator.restart()  # default age 1 h: everything is too young to prune
    assert emulator.has_blob(stray) and temp.exists() and emulator.has_blob(model)
    assert emulator.has_blob(manifest["config"]["digest"])  # legacy name fixed at start

    emulator.restart(prune_age_seconds=0)
    assert not emulator.has_blob(stray)
    assert not temp.exists()
    assert not emulator.has_blob(model)  # the uploaded original, replaced by its validated copy
    for layer in [manifest["config"], *manifest["layers"]]:
        assert emulator.has_blob(layer["digest"])
    assert api.show("m").status == 200


def test_counters_count_heads_posts_creates_and_log_requests(api: Api, emulator: Emulator) -> None:
    data = b"counted"
    digest = digest_of(data)
    api.call("HEAD", f"/api/blobs/{digest}")
    api.upload(data)
    api.upload(data)
    api.create(model="Counted", files={"x": "sha256:" + "5" * 64})
    counters = emulator.counters
    assert counters.blob_heads(digest) == 1
    assert (counters.blob_posts(digest), counters.blob_bodies_read(digest)) == (2, 1)
    assert counters.creates("Counted:latest") == 1
    assert [(r.method, r.status) for r in counters.requests] == [
        ("HEAD", 404),
        ("POST", 201),
        ("POST", 200),
        ("POST", 400),
    ]
    assert counters.requests[-1].path == "/api/create"
    assert counters.wait_for(lambda: counters.blob_posts(digest) == 2, timeout=1)
    counters.reset()
    assert counters.requests == [] and counters.blob_posts(digest) == 0


def test_standalone_entry_point_serves_until_sigterm(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "dropzone.testing.ollama", "--port", str(port),
         "--store", str(tmp_path / "store"), "--version", "0.29.1", "--no-validate-gguf"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_until(lambda: not refused(port), timeout=30, what="emulator listening")
        response = httpx.get(f"http://127.0.0.1:{port}/api/version")
        assert response.json() == {"version": "0.29.1"}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stderr is not None
        process.stderr.close()
    assert (tmp_path / "store" / "blobs").is_dir()

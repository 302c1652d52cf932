"""The Ollama client against the emulator over real loopback HTTP."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dropzone.errors import (
    CreateError,
    DigestMismatchError,
    RequestError,
    RequestTimeoutError,
    ServerError,
    StoppedError,
    TransientError,
    UnreachableError,
)
from dropzone.ollama.client import CHUNK_BYTES, OllamaClient, Timeouts, make_http_client
from dropzone.testing.builders import build_gguf, write_random
from dropzone.testing.ollama import Emulator


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with make_http_client() as client:
        yield client


@pytest.fixture
def client(emulator: Emulator, http: httpx.Client) -> OllamaClient:
    return OllamaClient(emulator.url, http)


def digest_of(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def upload(client: OllamaClient, path: Path) -> str:
    digest = digest_of(path)
    client.push_blob(digest, path)
    return digest


def test_version_is_a_version_string(client: OllamaClient) -> None:
    version = client.version()
    assert version
    assert version[0].isdigit()


def test_a_blob_is_missing_then_created_then_present(client: OllamaClient, tmp_path: Path) -> None:
    path = write_random(tmp_path / "blob.bin", 3 * CHUNK_BYTES + 123)
    digest = digest_of(path)
    sent: list[int] = []
    assert client.blob_exists(digest) is False
    assert client.push_blob(digest, path, progress=sent.append) is True
    assert client.blob_exists(digest) is True
    assert sent[-1] == path.stat().st_size


def test_pushing_an_existing_blob_returns_false_without_the_body_being_read(
    client: OllamaClient, emulator: Emulator, tmp_path: Path
) -> None:
    path = write_random(tmp_path / "blob.bin", 8 * CHUNK_BYTES)
    digest = upload(client, path)
    assert emulator.counters.blob_bodies_read(digest) == 1
    assert client.push_blob(digest, path) is False
    assert emulator.counters.blob_posts(digest) == 2
    assert emulator.counters.blob_bodies_read(digest) == 1
    assert client.blob_exists(digest) is True  # the connection pool survived the early answer


def test_uploading_other_bytes_than_the_digest_raises_digest_mismatch(
    client: OllamaClient, tmp_path: Path
) -> None:
    path = write_random(tmp_path / "blob.bin", 1000)
    claimed = "sha256:" + "0" * 64
    with pytest.raises(DigestMismatchError) as info:
        client.push_blob(claimed, path)
    assert info.value.status == 400
    assert claimed in str(info.value)
    # The server keeps the bytes under their true digest anyway (ollama-api.md §3).
    assert client.blob_exists(digest_of(path)) is True


def test_create_from_a_gguf_streams_to_success_and_show_finds_the_model(
    client: OllamaClient, tmp_path: Path
) -> None:
    digest = upload(client, build_gguf(tmp_path / "tiny.gguf"))
    statuses = [
        line["status"] for line in client.create({"model": "tiny", "files": {"tiny.gguf": digest}})
    ]
    assert statuses[0] == "parsing GGUF"
    assert statuses[-1] == "success"
    shown = client.show("tiny")
    assert shown["details"]["format"] == "gguf"
    assert "tiny:latest" in [model["name"] for model in client.tags()]
    client.delete("tiny")
    with pytest.raises(RequestError) as info:
        client.show("tiny")
    assert (info.value.status, str(info.value)) == (404, "model 'tiny:latest' not found")


def test_create_error_after_the_first_line_raises_create_error(
    client: OllamaClient, tmp_path: Path
) -> None:
    model = upload(client, build_gguf(tmp_path / "a.gguf"))
    junk = upload(client, write_random(tmp_path / "b.bin", 4096))
    stream = client.create({"model": "broken", "files": {"a.gguf": model, "b.gguf": junk}})
    assert next(stream) == {"status": "parsing GGUF"}
    with pytest.raises(CreateError) as info:
        list(stream)
    assert str(info.value) == "supplied file was not in GGUF format"
    assert info.value.status == 200
    assert not info.value.transient


def test_create_error_before_any_output_keeps_its_http_status(client: OllamaClient) -> None:
    with pytest.raises(RequestError) as info:
        list(client.create({"model": "legacy", "modelfile": "FROM llama3"}))
    assert (info.value.status, str(info.value)) == (400, "neither 'from' or 'files' was specified")


def test_a_stopped_server_is_unreachable_and_a_restarted_one_answers_again(
    client: OllamaClient, emulator: Emulator
) -> None:
    client.version()  # leaves a keep-alive connection in the pool
    emulator.stop()
    with pytest.raises(UnreachableError) as info:
        client.version()
    assert info.value.host == emulator.url.rstrip("/")
    assert info.value.transient
    emulator.start()
    assert client.version()


def test_a_server_answering_500_raises_a_transient_server_error(
    client: OllamaClient, emulator: Emulator
) -> None:
    emulator.faults.fail_next(1, status=500, path_prefix="/api/show")
    with pytest.raises(ServerError) as info:
        client.show("anything")
    assert (info.value.status, str(info.value)) == (500, "injected fault")
    assert info.value.transient


def test_an_upload_cut_midway_is_a_transient_error_and_a_retry_succeeds(
    client: OllamaClient, emulator: Emulator, tmp_path: Path
) -> None:
    path = write_random(tmp_path / "blob.bin", 16 * CHUNK_BYTES)
    digest = digest_of(path)
    emulator.faults.cut_upload(after_bytes=2 * CHUNK_BYTES)
    with pytest.raises(TransientError):
        client.push_blob(digest, path)
    assert client.blob_exists(digest) is False
    assert client.push_blob(digest, path) is True


def test_a_stalled_server_times_out_quickly_for_small_requests(
    emulator: Emulator, http: httpx.Client
) -> None:
    client = OllamaClient(emulator.url, http, timeouts=Timeouts(quick=0.3))
    emulator.faults.stall(path_prefix="/api/version")
    try:
        with pytest.raises(RequestTimeoutError) as info:
            client.version()
    finally:
        emulator.faults.release()
    assert info.value.transient
    assert client.version()


def test_cancelling_an_upload_stops_it_and_leaves_the_client_usable(
    client: OllamaClient, tmp_path: Path
) -> None:
    path = write_random(tmp_path / "blob.bin", 32 * CHUNK_BYTES)
    digest = digest_of(path)
    cancel = threading.Event()
    sent: list[int] = []

    def cancel_at_first_report(count: int) -> None:
        sent.append(count)
        cancel.set()

    with pytest.raises(StoppedError):
        client.push_blob(digest, path, progress=cancel_at_first_report, cancel=cancel)
    assert len(sent) == 1
    assert sent[0] < path.stat().st_size
    assert client.blob_exists(digest) is False
    assert client.push_blob(digest, path) is True

"""Checklist §10 "POST /api/create — response mechanics" (ollama-api.md §1.3, §4.6, §12.5)."""

from __future__ import annotations

import json

from emulator_helpers import Api, RawConnection

from dropzone.testing.ollama import Emulator


def test_streaming_is_the_default_and_ends_with_success(api: Api) -> None:
    reply = api.create(model="m", files={"m.gguf": api.gguf()})
    assert reply.status == 200
    assert reply.content_type == "application/x-ndjson"
    assert reply.lines[-1] == {"status": "success"}
    assert all(line == json.dumps(json.loads(line), separators=(",", ":")) for line in
               reply.text.splitlines())  # fmt: skip


def test_each_progress_line_is_sent_as_its_own_chunk(api: Api, raw: RawConnection) -> None:
    digest = api.gguf()
    body = json.dumps({"model": "m", "files": {"m.gguf": digest}}).encode()
    raw.send(
        b"POST /api/create HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    status, headers = raw.read_head()
    assert (status, headers["transfer-encoding"]) == (200, "chunked")
    chunks = []
    while True:
        size = int(raw.read_until(b"\r\n")[:-2], 16)
        if size == 0:
            raw.read_until(b"\r\n")
            break
        chunks.append(raw.read_exactly(size))
        raw.read_exactly(2)
    assert len(chunks) > 5
    for chunk in chunks:  # exactly one JSON object and its newline per flush
        assert chunk.endswith(b"\n") and chunk.count(b"\n") == 1
        json.loads(chunk)


def test_stream_false_answers_one_json_object(api: Api) -> None:
    reply = api.create(model="m", files={"m.gguf": api.gguf()}, stream=False)
    assert (reply.status, reply.content_type) == (200, "application/json")
    assert reply.text == '{"status":"success"}'


def test_error_before_the_first_line_gets_its_real_status(api: Api) -> None:
    reply = api.create(model="m", files={"README": api.upload(b"text")})
    assert (reply.status, reply.content_type) == (400, "application/json")
    assert reply.json() == {"error": "unknown type"}


def test_error_after_the_first_line_is_a_final_error_line_under_200(api: Api) -> None:
    reply = api.create(model="m", files={"a.gguf": api.gguf(), "b.json": api.upload(b"{}")})
    assert (reply.status, reply.content_type) == (200, "application/x-ndjson")
    assert reply.lines[-1] == {"error": "supplied file was not in GGUF format"}
    assert "success" not in reply.statuses


def test_non_streamed_errors_keep_their_attached_status_or_500(api: Api) -> None:
    files = {"a.gguf": api.gguf(), "b.json": api.upload(b"{}")}
    reply = api.create(model="m", files=files, stream=False)
    assert (reply.status, reply.content_type) == (400, "application/json")
    reply = api.create(model="m", files={"a.gguf": "sha256:" + "3" * 64}, stream=False)
    assert reply.status == 500


def test_status_texts_follow_the_catalogue_in_manifest_order(api: Api, emulator: Emulator) -> None:
    reply = api.create(
        model="m", files={"m.gguf": api.gguf()}, system="sys", parameters={"top_k": 1}
    )
    manifest = emulator.manifest("m")
    assert manifest is not None
    per_layer = [f"creating new layer {layer['digest']}" for layer in manifest["layers"]]
    statuses = reply.statuses
    start = statuses.index("verifying conversion") + 1
    assert statuses[:1] == ["parsing GGUF"]
    assert set(statuses[1 : start - 1]) == {"validating GGUF model"}
    assert statuses[start:] == [*per_layer, "writing manifest", "success"]


def test_a_failed_create_leaves_no_manifest(api: Api, emulator: Emulator) -> None:
    api.create(model="m", files={"a.gguf": api.gguf(), "b.json": api.upload(b"{}")})
    assert emulator.manifest("m") is None

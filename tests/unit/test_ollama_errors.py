"""The Ollama client's one boundary: httpx errors and statuses → dropzone's tree (MockTransport)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import certifi
import httpx
import pytest

from dropzone.errors import (
    ConfigError,
    CreateError,
    DigestMismatchError,
    FileChangedError,
    OllamaError,
    PermanentError,
    RedirectError,
    RequestError,
    RequestTimeoutError,
    ServerError,
    StoppedError,
    TransientError,
    UnreachableError,
)
from dropzone.ollama._bounded import bound_transports
from dropzone.ollama.client import (
    CHUNK_BYTES,
    PROGRESS_EVERY_BYTES,
    OllamaClient,
    Timeouts,
    make_http_client,
)

HOST = "http://ollama.test:11434"
DIGEST = "sha256:" + "ab" * 32
Handler = Callable[[httpx.Request], httpx.Response]
MakeClient = Callable[..., OllamaClient]


@pytest.fixture
def make_client() -> Iterator[MakeClient]:
    opened: list[httpx.Client] = []

    def make(handler: Handler, **kwargs: object) -> OllamaClient:
        http = httpx.Client(transport=httpx.MockTransport(handler))
        opened.append(http)
        return OllamaClient(HOST + "/", http, **kwargs)  # type: ignore[arg-type]

    yield make
    for http in opened:
        http.close()


def raising(exc: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


def answering(status: int, body: bytes = b"", content_type: str = "") -> Handler:
    headers = {"Content-Type": content_type} if content_type else {}
    return lambda request: httpx.Response(status, content=body, headers=headers)


def ndjson(*objects: object) -> bytes:
    return b"".join(json.dumps(o).encode() + b"\n" for o in objects)


def blob_file(tmp_path: Path, size: int) -> Path:
    path = tmp_path / "blob.bin"
    path.write_bytes(bytes(range(256)) * (size // 256) + b"x" * (size % 256))
    return path


# --- transport failures -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), UnreachableError),
        (httpx.ConnectError("[Errno -2] Name or service not known"), UnreachableError),
        (httpx.ReadError("[Errno 104] Connection reset by peer"), UnreachableError),
        (httpx.RemoteProtocolError("Server disconnected"), UnreachableError),
        (httpx.ConnectTimeout("timed out"), RequestTimeoutError),
        (httpx.ReadTimeout("timed out"), RequestTimeoutError),
        (httpx.WriteTimeout("timed out"), RequestTimeoutError),
        (httpx.PoolTimeout("timed out"), RequestTimeoutError),
        (httpx.UnsupportedProtocol("Request URL has an unsupported protocol"), RequestError),
    ],
)
def test_transport_errors_map_to_the_tree_chained_with_host_and_no_status(
    make_client: MakeClient, exc: Exception, expected: type[OllamaError]
) -> None:
    client = make_client(raising(exc))
    with pytest.raises(expected) as info:
        client.version()
    assert info.value.__cause__ is exc
    assert info.value.host == HOST
    assert info.value.status is None
    assert info.value.transient is (expected is not RequestError)


def test_refused_connection_on_every_operation_is_unreachable(
    make_client: MakeClient, tmp_path: Path
) -> None:
    client = make_client(raising(httpx.ConnectError("[Errno 111] Connection refused")))
    path = blob_file(tmp_path, 10)
    operations: list[Callable[[], object]] = [
        client.version,
        lambda: client.blob_exists(DIGEST),
        lambda: client.push_blob(DIGEST, path),
        lambda: list(client.create({"model": "m", "files": {}})),
        lambda: client.show("m"),
        client.tags,
        lambda: client.delete("m"),
    ]
    for operation in operations:
        with pytest.raises(UnreachableError):
            operation()


# --- error statuses -----------------------------------------------------------------------------


def test_500_with_an_html_body_is_a_transient_server_error_with_a_short_plain_message(
    make_client: MakeClient,
) -> None:
    html = b"<html>\r\n<head><title>502 Bad Gateway</title></head>\n<body>nginx</body></html>"
    client = make_client(answering(502, html, "text/html"))
    with pytest.raises(ServerError) as info:
        client.show("m")
    assert info.value.status == 502
    assert info.value.transient
    assert info.value.message.startswith("HTTP 502 Bad Gateway: <html> <head>")
    assert "\n" not in info.value.message


def test_404_json_is_a_permanent_request_error_carrying_the_servers_text(
    make_client: MakeClient,
) -> None:
    client = make_client(answering(404, b'{"error":"model \'m:latest\' not found"}'))
    with pytest.raises(RequestError) as info:
        client.show("m")
    assert str(info.value) == "model 'm:latest' not found"
    assert (info.value.status, info.value.host, info.value.transient) == (404, HOST, False)


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (404, b"404 page not found", "HTTP 404 Not Found: 404 page not found"),
        (405, b"405 method not allowed", "HTTP 405 Method Not Allowed: 405 method not allowed"),
        (403, b"", "HTTP 403 Forbidden"),
        (401, b'["not an object"]', 'HTTP 401 Unauthorized: ["not an object"]'),
    ],
)
def test_non_json_error_bodies_become_request_errors_with_the_status_line(
    make_client: MakeClient, status: int, body: bytes, message: str
) -> None:
    client = make_client(answering(status, body, "text/plain; charset=utf-8"))
    with pytest.raises(RequestError) as info:
        client.tags()
    assert str(info.value) == message
    assert info.value.status == status


@pytest.mark.parametrize("status", [408, 429])
def test_proxy_try_again_later_statuses_are_transient(make_client: MakeClient, status: int) -> None:
    client = make_client(answering(status))
    with pytest.raises(TransientError) as info:
        client.version()
    assert not isinstance(info.value, PermanentError)


def test_a_200_that_is_not_json_is_a_request_error(make_client: MakeClient) -> None:
    client = make_client(answering(200, b"<html>login</html>", "text/html"))
    with pytest.raises(RequestError, match="expected a JSON object from /api/version"):
        client.version()


def test_a_version_answer_without_a_version_string_is_a_request_error(
    make_client: MakeClient,
) -> None:
    client = make_client(answering(200, b'{"version": 3}', "application/json"))
    with pytest.raises(RequestError, match="no version"):
        client.version()


def test_a_redirect_is_not_followed_and_is_a_transient_redirect_error(
    make_client: MakeClient,
) -> None:
    # Issue 13: a proxy's 3xx is a configuration problem the operator fixes; it must not
    # refuse the artifact for ever, and the message names where it points.
    client = make_client(lambda r: httpx.Response(301, headers={"Location": "/api/tags"}))
    with pytest.raises(RedirectError) as info:
        client.tags()
    assert info.value.status == 301
    assert info.value.transient
    assert info.value.location == "/api/tags"


def test_a_redirect_from_http_to_https_suggests_the_https_url(make_client: MakeClient) -> None:
    location = "https://ollama.test/api/version"
    client = make_client(lambda r: httpx.Response(308, headers={"Location": location}))
    with pytest.raises(RedirectError, match=r"e\.g\. https://ollama\.test \("):
        client.version()


def test_make_http_client_bounds_every_transport_with_the_deadline_wrapper() -> None:
    # bounded_http sets a private httpcore attribute: an upgrade that renames it fails here.
    with make_http_client() as http:
        assert bound_transports(http) == 1 + len(http._mounts)
        assert http.headers["Accept-Encoding"] == "identity"


# --- blobs --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "exists"), [(200, True), (404, False)])
def test_blob_exists_reads_200_and_404(make_client: MakeClient, status: int, exists: bool) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status)

    assert make_client(handler).blob_exists(DIGEST) is exists
    assert (seen[0].method, seen[0].url.path) == ("HEAD", "/api/blobs/" + DIGEST)


def test_blob_exists_maps_other_statuses(make_client: MakeClient) -> None:
    with pytest.raises(RequestError) as info:
        make_client(answering(400)).blob_exists(DIGEST)
    assert info.value.status == 400
    with pytest.raises(ServerError):
        make_client(answering(500)).blob_exists(DIGEST)


@pytest.mark.parametrize(
    "digest", ["sha256-" + "ab" * 32, "sha256:" + "AB" * 32, "sha256:abc", "md5:" + "ab" * 16]
)
def test_digests_the_server_would_reject_or_mismatch_fail_before_any_request(
    make_client: MakeClient, digest: str, tmp_path: Path
) -> None:
    client = make_client(raising(AssertionError("no request expected")))
    with pytest.raises(ValueError, match="sha256:<64 lowercase hex>"):
        client.blob_exists(digest)
    with pytest.raises(ValueError, match="sha256:<64 lowercase hex>"):
        client.push_blob(digest, blob_file(tmp_path, 1))


@pytest.mark.parametrize(("status", "created"), [(201, True), (200, False)])
def test_push_returns_whether_the_blob_was_created(
    make_client: MakeClient, tmp_path: Path, status: int, created: bool
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        return httpx.Response(status)

    assert make_client(handler).push_blob(DIGEST, blob_file(tmp_path, 100)) is created


def test_push_sends_the_file_with_an_explicit_content_length_not_chunked(
    make_client: MakeClient, tmp_path: Path
) -> None:
    path = blob_file(tmp_path, 3 * CHUNK_BYTES + 17)
    received: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        received.append(request)
        return httpx.Response(201)

    make_client(handler).push_blob(DIGEST, path)
    request = received[0]
    assert request.headers["Content-Length"] == str(path.stat().st_size)
    assert "Transfer-Encoding" not in request.headers
    # MockTransport joins every chunk before looking: a reused buffer would corrupt this.
    assert request.content == path.read_bytes()


def test_push_digest_mismatch_is_a_digest_mismatch_error(
    make_client: MakeClient, tmp_path: Path
) -> None:
    text = f'digest mismatch, expected "{DIGEST}", got "sha256:{"cd" * 32}"'

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        return httpx.Response(400, json={"error": text})

    with pytest.raises(DigestMismatchError) as info:
        make_client(handler).push_blob(DIGEST, blob_file(tmp_path, 10))
    assert (str(info.value), info.value.status) == (text, 400)


def test_push_reports_progress_every_few_mib_and_at_the_end(
    make_client: MakeClient, tmp_path: Path
) -> None:
    size = 10 * CHUNK_BYTES + 5
    path = blob_file(tmp_path, size)
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        return httpx.Response(201)

    make_client(handler).push_blob(DIGEST, path, progress=calls.append)
    assert calls[-1] == size
    assert calls == sorted(calls)
    steps = [b - a for a, b in zip([0, *calls], calls, strict=False)]
    assert all(step >= PROGRESS_EVERY_BYTES for step in steps[:-1])
    assert len(calls) == 3  # 4 MiB, 8 MiB, the end


def test_cancel_aborts_the_upload_before_the_rest_of_the_file_is_read(
    make_client: MakeClient, tmp_path: Path
) -> None:
    path = blob_file(tmp_path, 20 * CHUNK_BYTES)
    cancel = threading.Event()
    reported: list[int] = []

    def cancel_at_first_report(sent: int) -> None:
        reported.append(sent)
        cancel.set()

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()  # MockTransport reads the whole body first anyway
        return httpx.Response(201)

    with pytest.raises(StoppedError, match=f"cancelled after {PROGRESS_EVERY_BYTES} bytes") as info:
        make_client(handler).push_blob(DIGEST, path, progress=cancel_at_first_report, cancel=cancel)
    assert info.value.transient
    assert reported == [PROGRESS_EVERY_BYTES]


def test_a_cancel_set_before_the_upload_sends_no_body(
    make_client: MakeClient, tmp_path: Path
) -> None:
    cancel = threading.Event()
    cancel.set()

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        return httpx.Response(201)

    with pytest.raises(StoppedError, match="cancelled after 0 bytes"):
        make_client(handler).push_blob(DIGEST, blob_file(tmp_path, 100), cancel=cancel)


def test_a_file_that_grows_during_upload_raises_file_changed(
    make_client: MakeClient, tmp_path: Path
) -> None:
    path = blob_file(tmp_path, 8 * CHUNK_BYTES)

    def grow(sent: int) -> None:
        with path.open("ab") as f:
            f.write(b"more")

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        return httpx.Response(201)

    with pytest.raises(FileChangedError, match="size changed") as info:
        make_client(handler).push_blob(DIGEST, path, progress=grow)
    assert info.value.transient
    assert info.value.path == str(path)


def test_a_file_that_shrinks_during_upload_raises_file_changed(
    make_client: MakeClient, tmp_path: Path
) -> None:
    path = blob_file(tmp_path, 8 * CHUNK_BYTES)

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        return httpx.Response(201)

    def shrink(sent: int) -> None:
        with path.open("r+b") as f:
            f.truncate(sent + 10)

    with pytest.raises(FileChangedError, match="size changed"):
        make_client(handler).push_blob(DIGEST, path, progress=shrink)


def test_a_missing_file_raises_file_changed_without_a_request(
    make_client: MakeClient, tmp_path: Path
) -> None:
    client = make_client(raising(AssertionError("no request expected")))
    with pytest.raises(FileChangedError, match="cannot be opened"):
        client.push_blob(DIGEST, tmp_path / "gone.gguf")


# --- create -------------------------------------------------------------------------------------


def test_create_forces_streaming_and_yields_every_status_past_a_pull_success(
    make_client: MakeClient,
) -> None:
    lines = [
        {"status": "pulling manifest"},
        {"status": "success"},  # the pull's own success (ollama-api.md §4.4.1)
        {"status": "using existing layer sha256:" + "ab" * 32},
        {"status": "writing manifest"},
        {"status": "success"},
    ]
    bodies: list[object] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.read()))
        return httpx.Response(200, content=ndjson(*lines) + b"\n")

    client = make_client(handler)
    assert list(client.create({"model": "m", "from": "base", "stream": False})) == lines
    assert bodies == [{"model": "m", "from": "base", "stream": True}]


def test_create_error_line_after_a_status_with_http_200_raises_create_error(
    make_client: MakeClient,
) -> None:
    body = ndjson({"status": "parsing GGUF"}, {"error": "supplied file was not in GGUF format"})
    stream = make_client(answering(200, body, "application/x-ndjson")).create({"model": "m"})
    assert next(stream) == {"status": "parsing GGUF"}
    with pytest.raises(CreateError) as info:
        next(stream)
    assert str(info.value) == "supplied file was not in GGUF format"
    assert (info.value.status, info.value.host, info.value.transient) == (200, HOST, False)


def test_create_error_before_output_uses_the_http_status(make_client: MakeClient) -> None:
    body = b"{\"error\":\"neither 'from' or 'files' was specified\"}"
    with pytest.raises(RequestError) as info:
        list(make_client(answering(400, body, "application/json")).create({"model": "m"}))
    assert str(info.value) == "neither 'from' or 'files' was specified"
    assert info.value.status == 400
    assert not isinstance(info.value, CreateError)

    body = b'{"error":"unsupported quantization type Q9 - supported types are F32"}'
    with pytest.raises(ServerError) as server:
        list(make_client(answering(500, body, "application/json")).create({"model": "m"}))
    assert server.value.status == 500


def test_create_stream_that_ends_without_success_is_a_transient_error(
    make_client: MakeClient,
) -> None:
    body = ndjson({"status": "parsing GGUF"})
    with pytest.raises(ServerError, match="without success"):
        list(make_client(answering(200, body)).create({"model": "m"}))


def test_create_line_that_is_not_a_json_object_is_a_server_error(make_client: MakeClient) -> None:
    body = b'{"status":"parsing GGUF"}\n<html>oops\n'
    with pytest.raises(ServerError, match="bad create line"):
        list(make_client(answering(200, body)).create({"model": "m"}))


def test_create_sends_nothing_until_iterated_and_closing_early_releases_it(
    make_client: MakeClient,
) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, content=ndjson({"status": "a"}, {"status": "success"}))

    stream = make_client(handler).create({"model": "m"})
    assert calls == []
    assert next(stream) == {"status": "a"}
    stream.close()
    assert len(calls) == 1


# --- other endpoints, headers, timeouts ---------------------------------------------------------


def test_show_tags_delete_and_version_parse_their_answers(make_client: MakeClient) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        route = (request.method, request.url.path)
        if route == ("GET", "/api/version"):
            return httpx.Response(200, json={"version": "0.33.0"})
        if route == ("POST", "/api/show"):
            return httpx.Response(200, json={"model_info": {}, "echo": json.loads(request.read())})
        if route == ("GET", "/api/tags"):
            return httpx.Response(200, json={"models": [{"name": "m:latest"}]})
        if route == ("DELETE", "/api/delete"):
            assert json.loads(request.read()) == {"model": "m"}
            return httpx.Response(200)
        return httpx.Response(404, content=b"404 page not found")

    client = make_client(handler)
    assert client.version() == "0.33.0"
    assert client.show("m") == {"model_info": {}, "echo": {"model": "m"}}
    assert client.tags() == [{"name": "m:latest"}]
    client.delete("m")


def test_extra_headers_are_sent_on_every_request(make_client: MakeClient, tmp_path: Path) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        if request.url.path == "/api/create":
            return httpx.Response(200, content=ndjson({"status": "success"}))
        if request.url.path == "/api/tags":
            return httpx.Response(200, json={"models": []})
        return httpx.Response(200, json={"version": "1"})

    client = make_client(handler, headers={"Authorization": "Bearer s3cret", "X-Team": "ml"})
    client.version()
    client.blob_exists(DIGEST)
    client.push_blob(DIGEST, blob_file(tmp_path, 10))
    list(client.create({"model": "m"}))
    client.show("m")
    client.tags()
    client.delete("m")
    assert len(seen) == 7
    for request in seen:
        assert request.headers["Authorization"] == "Bearer s3cret"
        assert request.headers["X-Team"] == "ml"


def test_each_operation_carries_its_own_timeouts(make_client: MakeClient, tmp_path: Path) -> None:
    seen: dict[str, dict[str, float | None]] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        seen[request.method + " " + request.url.path.split(":")[0]] = request.extensions["timeout"]
        if request.url.path == "/api/create":
            return httpx.Response(200, content=ndjson({"status": "success"}))
        return httpx.Response(200, json={"version": "1"})

    client = make_client(handler, timeouts=Timeouts(create_line=900.0))
    client.blob_exists(DIGEST)
    client.version()
    client.push_blob(DIGEST, blob_file(tmp_path, 10))
    list(client.create({"model": "m"}))
    assert seen["HEAD /api/blobs/sha256"] == {"connect": 5, "read": 30, "write": 30, "pool": 60}
    assert seen["GET /api/version"]["read"] == 30
    upload = seen["POST /api/blobs/sha256"]
    assert (upload["connect"], upload["read"], upload["write"]) == (5, 900, 300)
    create = seen["POST /api/create"]
    assert (create["connect"], create["read"]) == (5, 900)


def test_default_create_read_timeout_allows_ten_minutes_of_silence() -> None:
    timeouts = Timeouts()
    read = timeouts.for_create().read
    assert read is not None
    assert read >= 600
    write = timeouts.for_upload().write
    assert write is None or write >= 60


def test_make_http_client_accepts_a_ca_bundle_path_and_rejects_a_missing_one(
    tmp_path: Path,
) -> None:
    with make_http_client(verify=certifi.where()) as http:
        assert isinstance(http, httpx.Client)
    with make_http_client(verify=False) as http:
        assert http.timeout.read is None
    with pytest.raises(ConfigError, match="CA bundle"):
        make_http_client(verify=str(tmp_path / "missing.pem"))

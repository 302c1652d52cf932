"""Checklist §10 "Transport & general" (ollama-api.md §1, §5.1, §5.2)."""

from __future__ import annotations

import pytest
from emulator_helpers import Api, RawConnection

JSON_UTF8 = "application/json; charset=utf-8"


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_root_says_ollama_is_running(api: Api, method: str) -> None:
    reply = api.call(method, "/")
    assert reply.status == 200
    assert reply.content_type == "text/plain; charset=utf-8"
    assert reply.text == ("Ollama is running" if method == "GET" else "")


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_version_reports_the_emulated_version(api: Api, method: str) -> None:
    reply = api.call(method, "/api/version")
    assert reply.status == 200
    assert reply.content_type == JSON_UTF8
    if method == "GET":
        assert reply.json() == {"version": "0.33.0"}


def test_unknown_path_is_a_plain_text_404(api: Api) -> None:
    reply = api.call("GET", "/api/nothing-here")
    assert (reply.status, reply.text) == (404, "404 page not found")
    assert reply.content_type == "text/plain; charset=utf-8"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/blobs/sha256:" + "a" * 64),
        ("GET", "/api/create"),
        ("GET", "/api/show"),
        ("POST", "/api/tags"),
        ("POST", "/api/delete"),
        ("PUT", "/api/blobs/sha256:" + "a" * 64),
    ],
)
def test_wrong_method_on_known_path_is_a_plain_text_405(api: Api, method: str, path: str) -> None:
    reply = api.call(method, path)
    assert (reply.status, reply.text) == (405, "405 method not allowed")
    assert reply.content_type == "text/plain; charset=utf-8"


def test_trailing_slash_redirects_like_gin(api: Api) -> None:
    response = api.client.get("/api/tags/", follow_redirects=False)
    assert response.status_code == 301
    assert response.headers["location"] == "/api/tags"
    response = api.client.post("/api/show/", follow_redirects=False)
    assert response.status_code == 307


@pytest.mark.parametrize("path", ["/api/create", "/api/show", "/api/copy"])
@pytest.mark.parametrize("body", [b"", b"   \n"])
def test_empty_body_on_json_endpoints_is_missing_request_body(
    api: Api, path: str, body: bytes
) -> None:
    reply = api.call("POST", path, raw=body)
    assert reply.status == 400
    assert reply.content_type == JSON_UTF8
    assert reply.json() == {"error": "missing request body"}


def test_empty_body_on_delete_is_missing_request_body(api: Api) -> None:
    reply = api.call("DELETE", "/api/delete", raw=b"")
    assert (reply.status, reply.json()) == (400, {"error": "missing request body"})


@pytest.mark.parametrize("path", ["/api/create", "/api/show"])
def test_malformed_json_is_a_400_with_a_decoder_message(api: Api, path: str) -> None:
    reply = api.call("POST", path, raw=b"{not json")
    assert reply.status == 400
    assert reply.content_type == JSON_UTF8
    assert reply.json()["error"]


def test_wrong_field_type_is_a_400_naming_the_go_field(api: Api) -> None:
    reply = api.create(model="x", parameters="hot")
    assert reply.status == 400
    assert reply.json()["error"] == (
        "json: cannot unmarshal string into Go struct field CreateRequest.parameters "
        "of type map[string]interface {}"
    )


def test_unknown_json_keys_are_ignored(api: Api) -> None:
    reply = api.call("POST", "/api/show", {"model": "absent", "whatever": [1, 2], "Extra": {}})
    assert reply.status == 404  # got past binding: the unknown keys did not matter
    reply = api.create(model="m", modelfile="FROM llama3", path="/x")
    assert reply.json() == {"error": "neither 'from' or 'files' was specified"}


def test_json_errors_escape_html_characters_like_go(api: Api) -> None:
    reply = api.call("POST", "/api/show", {"model": "a<b"})
    assert reply.status == 400
    response = api.client.post("/api/copy", json={"source": "<x>", "destination": "y"})
    assert b"\\u003cx\\u003e" in response.content


def test_foreign_host_header_is_refused_on_loopback(raw: RawConnection) -> None:
    raw.send(b"GET / HTTP/1.1\r\nHost: evil.example.com\r\n\r\n")
    status, headers = raw.read_head()
    assert status == 403
    assert headers["content-length"] == "0"


def test_keep_alive_serves_several_requests_on_one_connection(raw: RawConnection) -> None:
    for _ in range(3):
        raw.send(b"GET /api/version HTTP/1.1\r\nHost: localhost\r\n\r\n")
        status, headers = raw.read_head()
        assert status == 200
        assert b'"version"' in raw.read_exactly(int(headers["content-length"]))


def test_bad_content_length_is_a_400_before_any_handler(raw: RawConnection) -> None:
    raw.send(b"POST /api/show HTTP/1.1\r\nHost: localhost\r\nContent-Length: ten\r\n\r\n")
    status, headers = raw.read_head()
    assert (status, headers["connection"]) == (400, "close")

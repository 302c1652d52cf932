"""Checklist §10 "HEAD /api/blobs/:digest" and "POST /api/blobs/:digest" (ollama-api.md §2, §3)."""

from __future__ import annotations

import pytest
from emulator_helpers import Api, RawConnection, digest_of

from dropzone.testing.emulator.http import Handler
from dropzone.testing.ollama import Emulator

DATA = b"some blob content\n" * 100
EMPTY_DIGEST = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

BAD_DIGESTS = [
    "sha256:xyz",
    "SHA256:" + "a" * 64,
    "md5:" + "a" * 32,
    "sha256:" + "a" * 63,
    "sha256:" + "a" * 65,
    "sha256_" + "a" * 64,
]


@pytest.mark.parametrize("digest", BAD_DIGESTS)
@pytest.mark.parametrize("method", ["HEAD", "POST"])
def test_malformed_digest_is_a_400_invalid_digest_format(
    api: Api, emulator: Emulator, digest: str, method: str
) -> None:
    reply = api.call(method, f"/api/blobs/{digest}", raw=DATA)
    assert reply.status == 400
    if method == "POST":
        assert reply.json() == {"error": "invalid digest format"}
        assert emulator.counters.blob_bodies_read(digest) == 0


def test_head_of_absent_blob_is_404_quoting_the_digest_as_given(api: Api) -> None:
    digest = "sha256-" + "A" * 64
    response = api.client.head(f"/api/blobs/{digest}")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    # HEAD carries no body, but its length is that of the error Go would have written:
    expected = '{"error":"blob \\"' + digest + '\\" not found"}'
    assert int(response.headers["content-length"]) == len(expected)


@pytest.mark.parametrize("separator", [":", "-"])
def test_head_of_present_blob_is_200_for_colon_and_dash_forms(api: Api, separator: str) -> None:
    digest = api.upload(DATA)
    reply = api.call("HEAD", "/api/blobs/" + digest.replace(":", separator))
    assert (reply.status, reply.text) == (200, "")


def test_head_keeps_hex_case_so_uppercase_misses_a_lowercase_blob(api: Api) -> None:
    digest = api.upload(DATA)
    upper = "sha256:" + digest.removeprefix("sha256:").upper()
    assert api.call("HEAD", f"/api/blobs/{upper}").status == 404


def test_head_never_answers_201(api: Api) -> None:
    digest = digest_of(DATA)
    assert api.call("HEAD", f"/api/blobs/{digest}").status == 404
    api.upload(DATA)
    assert api.call("HEAD", f"/api/blobs/{digest}").status == 200


def test_post_new_blob_is_201_and_stored_under_its_digest(api: Api, emulator: Emulator) -> None:
    digest = digest_of(DATA)
    reply = api.call("POST", f"/api/blobs/{digest}", raw=DATA)
    assert (reply.status, reply.text) == (201, "")
    path = emulator.blob_path(digest)
    assert path.name == "sha256-" + digest.removeprefix("sha256:")
    assert path.read_bytes() == DATA
    assert path.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left


def test_post_existing_blob_is_200_without_reading_the_body(api: Api, emulator: Emulator) -> None:
    digest = api.upload(DATA)
    reply = api.call("POST", f"/api/blobs/{digest}", raw=b"different bytes entirely")
    assert (reply.status, reply.text) == (200, "")
    assert emulator.counters.blob_posts(digest) == 2
    assert emulator.counters.blob_bodies_read(digest) == 1


def test_post_existing_blob_answers_before_the_body_is_sent(
    api: Api, emulator: Emulator, raw: RawConnection
) -> None:
    digest = api.upload(DATA)
    raw.send(
        f"POST /api/blobs/{digest} HTTP/1.1\r\nHost: localhost\r\n"
        f"Content-Length: {10 << 20}\r\n\r\n".encode()
    )
    raw.send(b"x" * 1000)  # ten MiB announced, a kilobyte sent: a read would block
    status, headers = raw.read_head()
    assert status == 200
    assert headers["connection"] == "close"  # too much unread body to drain (Go closes too)


def test_expect_continue_is_not_answered_for_an_existing_blob(api: Api, raw: RawConnection) -> None:
    digest = api.upload(DATA)
    raw.send(
        f"POST /api/blobs/{digest} HTTP/1.1\r\nHost: localhost\r\n"
        f"Content-Length: {len(DATA)}\r\nExpect: 100-continue\r\n\r\n".encode()
    )
    status, headers = raw.read_head()
    assert status == 200  # the final answer comes first: the client never sends its body
    assert headers["connection"] == "close"


def test_expect_continue_is_answered_when_a_new_blob_is_read(raw: RawConnection) -> None:
    digest = digest_of(DATA)
    raw.send(
        f"POST /api/blobs/{digest} HTTP/1.1\r\nHost: localhost\r\n"
        f"Content-Length: {len(DATA)}\r\nExpect: 100-continue\r\n\r\n".encode()
    )
    assert raw.read_head()[0] == 100
    raw.send(DATA)
    assert raw.read_head()[0] == 201


def test_small_unread_body_is_drained_and_the_connection_kept(api: Api, raw: RawConnection) -> None:
    digest = api.upload(DATA)
    for _ in range(2):
        raw.send(
            f"POST /api/blobs/{digest} HTTP/1.1\r\nHost: localhost\r\n"
            f"Content-Length: {len(DATA)}\r\n\r\n".encode()
            + DATA
        )
        status, headers = raw.read_head()
        assert status == 200
        assert "connection" not in headers


def test_chunked_body_is_accepted(raw: RawConnection, emulator: Emulator) -> None:
    digest = digest_of(DATA)
    chunks = [DATA[:7], DATA[7:1000], DATA[1000:]]
    body = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\nX-T: 1\r\n\r\n"
    raw.send(
        f"POST /api/blobs/{digest} HTTP/1.1\r\nHost: localhost\r\n"
        "Transfer-Encoding: chunked\r\n\r\n".encode()
        + body
    )
    assert raw.read_head()[0] == 201
    assert emulator.blob_path(digest).read_bytes() == DATA
    raw.send(b"GET /api/version HTTP/1.1\r\nHost: localhost\r\n\r\n")  # framing intact
    assert raw.read_head()[0] == 200


def test_empty_body_with_the_empty_digest_is_201(api: Api, emulator: Emulator) -> None:
    assert api.call("POST", f"/api/blobs/{EMPTY_DIGEST}", raw=b"").status == 201
    assert emulator.blob_path(EMPTY_DIGEST).read_bytes() == b""


def test_mismatch_is_400_and_the_content_is_kept_under_its_real_digest(
    api: Api, emulator: Emulator
) -> None:
    claimed = "sha256:" + "0" * 64
    reply = api.call("POST", f"/api/blobs/{claimed}", raw=DATA)
    real = digest_of(DATA)
    assert reply.status == 400
    assert reply.json() == {"error": f'digest mismatch, expected "{claimed}", got "{real}"'}
    assert not emulator.has_blob(claimed)
    assert api.call("HEAD", f"/api/blobs/{real}").status == 200


@pytest.mark.parametrize("spelling", ["dash", "upper"])
def test_dash_or_uppercase_digest_of_new_content_is_a_mismatch(
    api: Api, emulator: Emulator, spelling: str
) -> None:
    real = digest_of(DATA)
    hexpart = real.removeprefix("sha256:")
    url_digest = "sha256-" + hexpart if spelling == "dash" else "sha256:" + hexpart.upper()
    reply = api.call("POST", f"/api/blobs/{url_digest}", raw=DATA)
    assert reply.status == 400
    assert reply.json()["error"] == f'digest mismatch, expected "{url_digest}", got "{real}"'
    assert emulator.has_blob(real)


def test_body_ending_early_is_a_500_with_the_io_error(raw: RawConnection) -> None:
    digest = digest_of(DATA)
    raw.send(
        f"POST /api/blobs/{digest} HTTP/1.1\r\nHost: localhost\r\n"
        f"Content-Length: {len(DATA)}\r\n\r\n".encode()
        + DATA[:100]
    )
    raw.sock.shutdown(1)  # SHUT_WR: the server sees end of input mid-body
    status, headers = raw.read_head()
    assert status == 500
    body = raw.read_exactly(int(headers["content-length"]))
    assert body == b'{"error":"unexpected EOF"}'


def test_large_multi_buffer_upload_is_stored_without_limits(api: Api, emulator: Emulator) -> None:
    data = bytes(range(256)) * (5 * 4096 + 1)  # 5 MiB + 256 B: spans several 1 MiB reads
    digest = digest_of(data)
    assert api.call("POST", f"/api/blobs/{digest}", raw=data).status == 201
    assert emulator.blob_path(digest).stat().st_size == len(data)
    assert Handler.timeout is None  # no read timeout: a slow client is never cut off

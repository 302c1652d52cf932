"""The webhook (issue 16): the event as JSON, a secret header, retried with backoff while the
receiver is down, a bounded queue, and nothing secret in the events."""

from __future__ import annotations

import itertools
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from structlog.testing import capture_logs

from dropzone.fleet.webhook import WebhookSender
from dropzone.testing.waiting import wait_until

EVENT = {
    "event": "artifact.done",
    "path": "/srv/dropzone/qwen.gguf",
    "model": "qwen:latest",
    "host": "http://gpu1:11434",
    "result": "done",
    "digests": ["sha256:" + "a" * 64],
}


class Receiver:
    """A real HTTP receiver on a fixed loopback port, started and stopped by the test."""

    def __init__(self, port: int, failures: int = 0) -> None:
        self.port = port
        self.failures = failures
        self.received: list[tuple[dict[str, str], dict[str, Any]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if outer.failures > 0:
                    outer.failures -= 1
                    self.send_response(503)
                else:
                    outer.received.append((dict(self.headers), json.loads(body)))
                    self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for r in made:
        r.close()


def test_the_event_is_posted_as_json_with_the_secret_header(
    port: int, receivers: list[Receiver]
) -> None:
    receivers.append(Receiver(port))
    sender = WebhookSender(
        f"http://127.0.0.1:{port}/hook", headers={"X-Token": "s3cret"}, first_backoff=0.01
    )
    with capture_logs() as logs:
        sender.offer(EVENT)
        wait_until(lambda: receivers[0].received, what="the POST")
        sender.close()
    headers, body = receivers[0].received[0]
    assert headers["X-Token"] == "s3cret"
    assert headers["Content-Type"] == "application/json"
    assert body["kind"] == "imported" and body["model"] == "qwen:latest"
    assert body["digests"] == EVENT["digests"] and body["event"] == "artifact.done"
    assert "s3cret" not in repr(logs)


def test_a_webhook_is_retried_while_its_receiver_is_down(
    port: int, receivers: list[Receiver]
) -> None:
    sender = WebhookSender(f"http://127.0.0.1:{port}/hook", first_backoff=0.02, max_backoff=0.1)
    with capture_logs() as logs:
        sender.offer(EVENT)
        # Nothing listens: connection refused, retried with backoff.
        wait_until(
            lambda: len([e for e in logs if e["event"] == "webhook.retry"]) >= 2,
            what="two retries while down",
        )
        # Up, but answering 503 once: retried too.
        receivers.append(Receiver(port, failures=1))
        wait_until(lambda: receivers[0].received, timeout=10, what="the POST after recovery")
        sender.close()
    retries = [e for e in logs if e["event"] == "webhook.retry"]
    assert [e["attempts"] for e in retries] == list(range(1, len(retries) + 1))
    assert all(b["retry_in"] <= a["retry_in"] * 2 + 1e-9 for a, b in itertools.pairwise(retries))
    assert any("503" in str(e["error"]) for e in retries)
    (sent,) = [e for e in logs if e["event"] == "webhook.sent"]
    assert sent["attempts"] == len(retries) + 1 and len(receivers[0].received) == 1


def test_a_receiver_that_never_comes_back_is_given_up_on(port: int) -> None:
    sender = WebhookSender(
        f"http://user:pw@127.0.0.1:{port}/hook", first_backoff=0.01, max_attempts=3
    )
    with capture_logs() as logs:
        sender.offer(EVENT)
        failed = wait_until(lambda: [e for e in logs if e["event"] == "webhook.failed"])
        sender.close()
    assert failed[0]["attempts"] == 3
    assert "pw" not in repr(logs)  # the URL's password never reaches an event


def test_the_queue_is_bounded_and_offer_never_blocks(port: int) -> None:
    sender = WebhookSender(f"http://127.0.0.1:{port}/hook", first_backoff=5, queue_size=2)
    with capture_logs() as logs:
        for _ in range(10):
            sender.offer(EVENT)
        sender.close()
    assert [e for e in logs if e["event"] == "webhook.dropped"]


def test_events_that_are_not_notices_are_not_sent(port: int, receivers: list[Receiver]) -> None:
    receivers.append(Receiver(port))
    sender = WebhookSender(f"http://127.0.0.1:{port}/hook", first_backoff=0.01)
    sender.offer({"event": "hash.done", "path": "/x"})
    sender.offer(EVENT)
    wait_until(lambda: receivers[0].received)
    sender.close()
    assert len(receivers[0].received) == 1

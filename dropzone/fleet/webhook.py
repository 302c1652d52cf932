"""The webhook (issue 16): each notice (``hooks.notice``) POSTed as JSON to ``webhook_url``.

One worker thread, a bounded queue (``offer`` never blocks; a full queue drops with
``webhook.dropped``), retries with doubling backoff on a connection error, a timeout, a 5xx or
a 429, up to ``max_attempts``; any other answer is final. Redirects are not followed (the
headers carry a secret), the answer's body is never read, and the URL is shown in events
without its user and password.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Mapping
from typing import Any

import httpx
import structlog

from dropzone.config.hosts import redact_userinfo, split_userinfo
from dropzone.fleet.hooks import Notice, notice

log = structlog.get_logger("dropzone.webhook")

QUEUE_SIZE = 100
MAX_ATTEMPTS = 8  # 1 + 2 + … + 60 s: about four minutes of a receiver being down
FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 60.0
TIMEOUT = httpx.Timeout(10.0)


class WebhookSender:
    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        queue_size: int = QUEUE_SIZE,
        max_attempts: int = MAX_ATTEMPTS,
        first_backoff: float = FIRST_BACKOFF_SECONDS,
        max_backoff: float = MAX_BACKOFF_SECONDS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        plain, credentials = split_userinfo(url)
        self._shown = redact_userinfo(url)
        auth = None
        if credentials is not None:
            user, _, password = credentials.partition(":")
            auth = httpx.BasicAuth(user, password)
        self._client = httpx.Client(
            timeout=TIMEOUT, follow_redirects=False, transport=transport, auth=auth
        )
        self._url = plain
        self._headers = dict(headers or {})
        self._max_attempts = max_attempts
        self._first = first_backoff
        self._max = max_backoff
        self._queue: queue.Queue[Notice | None] = queue.Queue(queue_size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="webhook", daemon=True)
        self._thread.start()

    def offer(self, event: Mapping[str, Any]) -> None:
        n = notice(event)
        if n is None or self._stop.is_set():
            return
        try:
            self._queue.put_nowait(n)
        except queue.Full:
            log.warning(
                "webhook.dropped",
                url=self._shown,
                model=n.fields.get("model"),
                host=n.fields.get("host"),
                error=f"{self._queue.maxsize} notices already queued; the receiver is slow or down",
            )

    def close(self, grace: float = 3.0) -> None:
        """Stop: what is queued gets ``grace`` seconds; a retry wait ends at once."""
        self._stop.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        self._thread.join(grace)
        self._client.close()

    def _work(self) -> None:
        while True:
            try:
                n = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            if n is None:
                return
            self._send(n)

    def _send(self, n: Notice) -> None:
        ctx = {"url": self._shown, "model": n.fields.get("model"), "host": n.fields.get("host")}
        delay = self._first
        for attempt in range(1, self._max_attempts + 1):
            error = self._post(n)
            if error is None:
                log.info("webhook.sent", **ctx, attempts=attempt)
                return
            retry = error.startswith("retry:")
            error = error.removeprefix("retry:")
            if not retry or attempt == self._max_attempts:
                log.warning("webhook.failed", **ctx, attempts=attempt, error=error)
                return
            log.info("webhook.retry", **ctx, attempts=attempt, error=error, retry_in=delay)
            if self._stop.wait(delay):
                log.warning("webhook.failed", **ctx, attempts=attempt, error="stopping")
                return
            delay = min(delay * 2, self._max)

    def _post(self, n: Notice) -> str | None:
        """None when delivered; else the error, prefixed ``retry:`` when worth retrying."""
        try:
            with self._client.stream(
                "POST", self._url, json=n.payload(), headers=self._headers
            ) as response:
                status = response.status_code
        except httpx.HTTPError as exc:
            return f"retry:{type(exc).__name__}: {redact_userinfo(str(exc))}"
        if 200 <= status < 300:
            return None
        text = f"the receiver answered {status}"
        return f"retry:{text}" if status >= 500 or status == 429 else text

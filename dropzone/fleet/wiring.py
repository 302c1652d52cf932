"""What a daemon offers a fleet's operators (issue 16): metrics, hooks and a webhook.

One object the daemon makes, starts and closes, so that ``daemon.py`` knows three lines of
it. Everything here listens to events (``eventtap``) and never blocks the thread that logged
them: metrics update counters in place, hooks and the webhook only enqueue.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import structlog

from dropzone.config.listen import parse_listen
from dropzone.config.settings import Settings
from dropzone.fleet import eventtap
from dropzone.fleet.export import MetricsServer, TextfileWriter
from dropzone.fleet.hooks import HookRunner
from dropzone.fleet.metrics import Metrics
from dropzone.fleet.webhook import WebhookSender
from dropzone.store.state import StateStore

log = structlog.get_logger("dropzone.fleet")


class Fleet:
    def __init__(
        self, settings: Settings, state: StateStore, *, env: Mapping[str, str]
    ) -> None:
        self._settings = settings
        self._env = env
        hosts = [h.url for h in settings.ollama_hosts]
        self.metrics = Metrics(hosts=hosts, drop_dir=Path(settings.drop_dir), state=state)
        self.server: MetricsServer | None = None
        self.textfile: TextfileWriter | None = None
        self._unsubscribe: list[Callable[[], None]] = []
        self.hooks: HookRunner | None = None
        self.webhook: WebhookSender | None = None

    def _on_event(self, event: Mapping[str, Any]) -> None:
        """The eventtap subscriber: this daemon's events to its metrics, hooks and webhook."""
        if not self.metrics.owns(event):
            return
        self.metrics.observe(event)
        if self.hooks is not None:
            self.hooks.offer(event)
        if self.webhook is not None:
            self.webhook.offer(event)

    @property
    def metrics_on(self) -> bool:
        return bool(self._settings.metrics_listen or self._settings.metrics_textfile)

    def start(self) -> None:
        """Subscribe to events and open the exports; a port in use is a warning, not a stop:
        the imports matter more than their metrics."""
        s = self._settings
        if s.on_imported or s.on_refused:
            self.hooks = HookRunner(
                on_imported=s.on_imported, on_refused=s.on_refused, timeout=s.hook_timeout_seconds
            )
        if s.webhook_url:
            headers = {k: v.get_secret_value() for k, v in s.webhook_headers.items()}
            self.webhook = WebhookSender(s.webhook_url, headers=headers)
        self._unsubscribe.append(eventtap.subscribe(self._on_event))
        if not (self.metrics_on or self.hooks or self.webhook):
            return
        if not eventtap.tapped():
            log.warning(
                "metrics.untapped",
                error="the event tap is not in structlog's chain: hooks, webhook and event"
                " metrics see nothing",
            )
        address = parse_listen(self._settings.metrics_listen)
        if address is not None:
            try:
                self.server = MetricsServer(address, self.metrics.registry)
            except OSError as exc:
                log.error(
                    "metrics.listen_failed",
                    address=str(address),
                    error=exc.strerror or str(exc),
                    fix="choose a free port or socket path for metrics_listen",
                )
        if self._settings.metrics_textfile:
            self.textfile = TextfileWriter(
                Path(self._settings.metrics_textfile), self.metrics.registry
            )

    def close(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        if self.hooks is not None:
            self.hooks.close()
            self.hooks = None
        if self.webhook is not None:
            self.webhook.close()
            self.webhook = None
        if self.server is not None:
            self.server.close()
            self.server = None
        if self.textfile is not None:
            self.textfile.close()
            self.textfile = None

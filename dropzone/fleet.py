"""What a daemon offers a fleet's operators (issue 16): metrics, hooks and a webhook.

One object the daemon makes, starts and closes, so that ``daemon.py`` knows three lines of
it. Everything here listens to events (``eventtap``) and never blocks the thread that logged
them: metrics update counters in place, hooks and the webhook only enqueue.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import structlog

from dropzone import eventtap
from dropzone.metrics import Metrics
from dropzone.metrics_export import MetricsServer, TextfileWriter, parse_listen
from dropzone.settings import Settings
from dropzone.state import StateStore

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

    @property
    def metrics_on(self) -> bool:
        return bool(self._settings.metrics_listen or self._settings.metrics_textfile)

    def start(self) -> None:
        """Subscribe to events and open the exports; a port in use is a warning, not a stop:
        the imports matter more than their metrics."""
        self._unsubscribe.append(eventtap.subscribe(self.metrics.observe))
        if not self.metrics_on:
            return
        if not eventtap.tapped():
            log.warning(
                "metrics.untapped",
                error="the event tap is not in structlog's chain: only state gauges will move",
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
        if self.server is not None:
            self.server.close()
            self.server = None
        if self.textfile is not None:
            self.textfile.close()
            self.textfile = None

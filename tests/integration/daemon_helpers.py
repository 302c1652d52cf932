"""The Daemon run on a thread with its events captured, for tests against the emulator."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from structlog.testing import LogCapture

from dropzone.service.daemon import Daemon
from dropzone.testing.builders import build_gguf
from dropzone.testing.waiting import wait_until


class Running:
    """A ``Daemon.run()`` on a thread, its events captured."""

    def __init__(self, daemon: Daemon, capture: LogCapture) -> None:
        self.daemon = daemon
        self._capture = capture
        self._thread = threading.Thread(target=self._run, name="daemon")
        self.exit_code: int | None = None
        self._thread.start()

    def _run(self) -> None:
        self.exit_code = self.daemon.run()

    def find(self, name: str, **fields: Any) -> list[dict[str, Any]]:
        return [
            e
            for e in list(self._capture.entries)
            if e["event"] == name and all(e.get(k) == v for k, v in fields.items())
        ]

    def indexes(self, name: str, **fields: Any) -> list[int]:
        """Positions of the matching events in the capture (the order they happened in)."""
        return [
            i
            for i, e in enumerate(list(self._capture.entries))
            if e["event"] == name and all(e.get(k) == v for k, v in fields.items())
        ]

    def index(self, name: str, **fields: Any) -> int:
        return self.indexes(name, **fields)[0]

    def wait_for(
        self, name: str, timeout: float = 15.0, count: int = 1, **fields: Any
    ) -> dict[str, Any]:
        """The ``count``-th matching event, once there is one."""
        found: list[dict[str, Any]] = wait_until(
            lambda: len(self.find(name, **fields)) >= count and self.find(name, **fields),
            timeout=timeout,
            what=f"{count} x {name} {fields}",
        )
        return found[count - 1]

    def stop(self) -> int | None:
        self.daemon.request_stop()
        self._thread.join(timeout=10)
        assert not self._thread.is_alive(), "the daemon did not stop"
        return self.exit_code


def imported(start: Any, gguf: Path, **overrides: object) -> tuple[Path, Running]:
    """A daemon started with ``overrides`` that has made the model of a new GGUF ``gguf``."""
    build_gguf(gguf)
    daemon = start(**overrides)
    daemon.wait_for("model.created", model=f"{gguf.stem.lower()}:latest")
    return gguf, daemon

"""The daemon's life under systemd: sd_notify READY, STATUS, WATCHDOG and STOPPING, and a
clean stop within seconds on SIGTERM or Ctrl-C."""

from __future__ import annotations

import signal
import socket
import threading
import uuid
from collections.abc import Iterator

import pytest
from e2e_env import Dropzone

from dropzone.testing.builders import build_gguf
from dropzone.testing.waiting import wait_until


class NotifySocket:
    """What systemd listens on: a Unix datagram socket (abstract, so no path length limit)."""

    def __init__(self) -> None:
        self.name = "@dropzone-test-" + uuid.uuid4().hex
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind("\0" + self.name[1:])
        self._sock.settimeout(0.1)
        self._lock = threading.Lock()
        self._messages: list[dict[str, str]] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._receive, name="notify", daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closed.is_set():
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if line)
            with self._lock:
                self._messages.append(fields)

    @property
    def messages(self) -> list[dict[str, str]]:
        with self._lock:
            return list(self._messages)

    def with_key(self, key: str) -> list[dict[str, str]]:
        return [m for m in self.messages if key in m]

    def close(self) -> None:
        self._closed.set()
        self._thread.join()
        self._sock.close()


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    listener = NotifySocket()
    yield listener
    listener.close()


def test_sd_notify_ready_status_watchdog_then_stopping_on_sigterm(
    dropzone: Dropzone, notify: NotifySocket
) -> None:
    build_gguf(dropzone.drop / "Notified.gguf")
    daemon = dropzone.run(
        extra_env={"NOTIFY_SOCKET": notify.name, "WATCHDOG_USEC": "200000"}, wait=False
    )
    wait_until(lambda: notify.with_key("READY"), timeout=15, what="READY=1")
    assert daemon.find("scan.done"), "READY=1 comes after the initial scan"
    # Pinged at half the 0.2 s watchdog period: several pings within a second or two.
    wait_until(lambda: len(notify.with_key("WATCHDOG")) >= 4, timeout=10, what="WATCHDOG=1 x4")
    daemon.wait_for("model.created", model="notified:latest")
    wait_until(
        lambda: any(m.get("STATUS", "").startswith("1 imported") for m in notify.messages),
        timeout=10,
        what="a STATUS line counting the import",
    )

    assert daemon.stop() == 0
    daemon.wait_for("daemon.stopping")
    wait_until(lambda: notify.with_key("STOPPING"), timeout=5, what="STOPPING=1")
    kinds = [next(k for k in ("READY", "WATCHDOG", "STOPPING") if k in m) for m in notify.messages]
    assert kinds[0] == "READY" and kinds.count("READY") == 1
    assert kinds[-1] == "STOPPING" and kinds.count("STOPPING") == 1
    assert all(m["READY"] == "1" for m in notify.with_key("READY"))
    assert all("STATUS" in m for m in notify.messages)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_ends_the_daemon_cleanly_within_seconds(
    dropzone: Dropzone, sig: signal.Signals
) -> None:
    daemon = dropzone.run()
    daemon.send(sig)
    assert daemon.wait_exit(timeout=5) == 0
    stopping = daemon.find("daemon.stopping")
    assert len(stopping) == 1
    assert stopping[0]["path"] == str(dropzone.drop)

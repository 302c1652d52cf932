"""sd_notify: READY/STATUS/WATCHDOG/STOPPING to systemd when ``NOTIFY_SOCKET`` is set.

The protocol is one datagram to a Unix socket (``@`` means the abstract namespace); a few lines
here are simpler than a dependency (sdnotify is unmaintained since 2017 and untyped).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


class Notifier:
    def __init__(self, env: Mapping[str, str]) -> None:
        address = env.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        # Ping at half the watchdog period, as sd_watchdog_enabled(3) advises.
        self.watchdog_interval = int(usec) / 2e6 if usec.isdigit() and mine else None

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def send(self, **fields: str) -> None:
        """``send(READY="1", STATUS="…")``; a lost message must never stop the daemon."""
        if not self._address:
            return
        text = "\n".join(f"{k}={v}" for k, v in fields.items())
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.sendto(text.encode(), self._address)
        except OSError:
            pass

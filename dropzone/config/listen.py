"""``metrics_listen``: where the metrics endpoint listens. Pure parsing, used by the settings
check and by the endpoint itself."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ListenAddress:
    host: str = ""  # an IP address; empty for a Unix socket
    port: int = 0
    unix: Path | None = None

    def __str__(self) -> str:
        if self.unix is not None:
            return f"unix:{self.unix}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_listen(text: str) -> ListenAddress | None:
    """``metrics_listen`` → where to listen; None when off. ``ValueError`` says what is wrong."""
    text = text.strip()
    if not text:
        return None
    if text.startswith(("/", "unix:")):
        path = Path(text.removeprefix("unix:"))
        if not path.is_absolute():
            raise ValueError("a Unix socket path must be absolute")
        return ListenAddress(unix=path)
    if text.isdigit():
        host, port_text = "127.0.0.1", text
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError("must be host:port, a port, or an absolute Unix socket path")
        host = host.strip("[]")
        if host == "":
            raise ValueError(
                "has no host; write 127.0.0.1:PORT for this machine, or 0.0.0.0:PORT"
                " if every interface is really meant"
            )
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"port {port_text!r} is not a number from 0 to 65535")
    if host == "localhost":
        host = "127.0.0.1"
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        raise ValueError(f"{host!r} is not an IP address (names are not resolved here)") from None
    return ListenAddress(host=host, port=int(port_text))

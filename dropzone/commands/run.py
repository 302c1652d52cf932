"""``dropzone run``: the daemon, until SIGTERM/SIGINT (SIGHUP: full rescan)."""

from __future__ import annotations

import argparse
import os
import signal
from types import FrameType

from dropzone.commands._daemon import add_arguments, open_daemon

__all__ = ["add_arguments", "execute"]


def execute(args: argparse.Namespace) -> int:
    with open_daemon(args, once=False) as daemon:
        if isinstance(daemon, int):
            return daemon
        interrupts = 0

        def stop(signum: int, _frame: FrameType | None) -> None:
            nonlocal interrupts
            # Handlers only flip flags; a second Ctrl-C means "now", as uvicorn does it.
            if signum == signal.SIGINT:
                interrupts += 1
                if interrupts > 1:
                    os._exit(130)
            daemon.request_stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, lambda _s, _f: daemon.request_rescan())
        return daemon.run()

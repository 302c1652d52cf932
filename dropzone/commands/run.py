"""``dropzone run``: the daemon, until SIGTERM/SIGINT (SIGHUP: full rescan)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from types import FrameType

from dropzone.commands._common import flag_overrides, load
from dropzone.daemon import Daemon
from dropzone.errors import ConfigError
from dropzone.logs import configure_logging


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--drop-dir", help="override drop_dir")
    parser.add_argument("--state-dir", help="override state_dir")


def execute(args: argparse.Namespace) -> int:
    settings = load(args, overrides=flag_overrides(args))
    if isinstance(settings, int):
        return settings
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    try:
        daemon = Daemon(settings, env=os.environ)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"dropzone: {problem}", file=sys.stderr)
        return 2
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

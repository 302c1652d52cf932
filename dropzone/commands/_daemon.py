"""What ``run`` and ``scan`` share: settings, logging, and the daemon built from them."""

from __future__ import annotations

import argparse
import os
import sys

from dropzone.commands._common import EXIT_CONFIG, flag_overrides, load, report_config_error
from dropzone.daemon import Daemon
from dropzone.errors import ConfigError
from dropzone.logs import configure_logging
from dropzone.progress import Progress


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--drop-dir", help="override drop_dir")
    parser.add_argument("--state-dir", help="override state_dir")


def open_daemon(args: argparse.Namespace, *, once: bool) -> Daemon | int:
    """The daemon for these arguments, or the exit status of a configuration problem."""
    settings = load(args, overrides=flag_overrides(args))
    if isinstance(settings, int):
        return settings
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    try:
        # Bars only when a person watches the terminal and the logs are not JSON for a machine.
        tty = sys.stderr.isatty() and settings.log_format != "json"
        progress = Progress(sys.stderr if tty else None)
        return Daemon(settings, env=os.environ, once=once, progress=progress)
    except ConfigError as exc:
        report_config_error(exc)
        return EXIT_CONFIG

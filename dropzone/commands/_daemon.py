"""What ``run`` and ``scan`` share: settings, logging, the store lock, and the daemon."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dropzone.commands._common import EXIT_CONFIG, flag_overrides, load, report_config_error
from dropzone.commands._local_emulator import local_emulators
from dropzone.errors import ConfigError
from dropzone.imports.progress import Progress
from dropzone.logs import configure_logging
from dropzone.service.daemon import Daemon
from dropzone.store.lock import lock_store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--drop-dir", help="override drop_dir")
    parser.add_argument("--state-dir", help="override state_dir")


@contextmanager
def open_daemon(args: argparse.Namespace, *, once: bool) -> Iterator[Daemon | int]:
    """The daemon for these arguments, or the exit status of a configuration problem.

    The daemon owns its state store alone (design §10.4): the store's lock is taken before
    the store is opened, held while the ``with`` block runs, and released when it ends. A
    store another process holds is a configuration problem: exit 2 at once, never a wait.
    """
    settings = load(args, overrides=flag_overrides(args))
    if isinstance(settings, int):
        yield settings
        return
    # Bars only when a person watches the terminal and the logs are not JSON for a machine;
    # an event logged while a bar is drawn takes the bar off the line first.
    tty = sys.stderr.isatty() and settings.log_format != "json"
    progress = Progress(sys.stderr if tty else None, interval=settings.progress_seconds)
    configure_logging(
        fmt=settings.log_format, level=settings.log_level, before_line=progress.clear_line
    )
    try:
        lock = lock_store(Path(settings.state_dir))
    except ConfigError as exc:
        report_config_error(exc)
        yield EXIT_CONFIG
        return
    with lock, local_emulators(settings) as endpoints:
        try:
            daemon = Daemon(
                settings, env=os.environ, once=once, progress=progress, endpoints=endpoints
            )
        except ConfigError as exc:
            report_config_error(exc)
            yield EXIT_CONFIG
            return
        yield daemon

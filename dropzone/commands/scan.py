"""``dropzone scan``: one pass: import what is ready now, report what is pending, exit.

Exit 0 when everything was imported or is pending, 1 when anything failed or was refused,
2 on bad configuration.
"""

from __future__ import annotations

import argparse
import os
import sys

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
        daemon = Daemon(settings, env=os.environ, once=True)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"dropzone: {problem}", file=sys.stderr)
        return 2
    summary = daemon.scan_once()
    pending = sorted(summary.pending - summary.done)
    print(
        f"dropzone scan: {len(summary.done)} imported, {len(pending)} pending, "
        f"{len(summary.failed)} failed, {len(summary.refused)} refused",
        file=sys.stderr,
    )
    return 1 if summary.failed or summary.refused else 0

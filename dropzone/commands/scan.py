"""``dropzone scan``: one pass: import what is ready now, report what is pending, exit.

Exit 0 when everything was imported or is pending, 1 when anything failed or was refused or
when the drop folder is not the one the store knows (``drop_dir.suspicious``: nothing was
done), 2 on bad configuration or a state store that another dropzone holds.
"""

from __future__ import annotations

import argparse
import sys

from dropzone.commands._daemon import add_arguments, open_daemon

__all__ = ["add_arguments", "execute"]


def execute(args: argparse.Namespace) -> int:
    with open_daemon(args, once=True) as daemon:
        if isinstance(daemon, int):
            return daemon
        summary = daemon.scan_once()
        if daemon.watch.suspicious:
            # An unmounted share looks like an empty folder: a pass that saw nothing is not a
            # clean pass, and a script or timer running scan must be told.
            print(
                "dropzone scan: nothing done: the drop folder is not the one the state store"
                " knows (see the drop_dir.suspicious event for the fix)",
                file=sys.stderr,
            )
            return 1
        pending = sorted(summary.pending - summary.done)
        print(
            f"dropzone scan: {len(summary.done)} imported, {len(pending)} pending, "
            f"{len(summary.failed)} failed, {len(summary.refused)} refused",
            file=sys.stderr,
        )
        return 1 if summary.failed or summary.refused else 0

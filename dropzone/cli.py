"""The ``dropzone`` command line: ``main(argv) -> int``.

Subcommands live in ``dropzone.commands.<name>`` and are imported only when chosen, so
``dropzone check`` does not pay for the daemon's imports.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Protocol, cast

COMMANDS: dict[str, str] = {
    "run": "the daemon: initial scan, then watch until SIGTERM/SIGINT",
    "scan": "one pass: import what is ready now, report what is pending, exit",
    "check": "offline: validate artifacts and sidecars, print the /api/create requests",
    "status": "what the state store knows, per artifact and host",
    "retry": "clear refusals and backoff (all, or the named artifacts); wake the daemon",
    "doctor": "check hosts, drop folder, file system events, limits and state store",
}


class _Command(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...
    def execute(self, args: argparse.Namespace) -> int: ...


def _load(name: str) -> _Command:
    return cast(_Command, importlib.import_module(f"dropzone.commands.{name}"))


def build_parser(command: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dropzone", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--config", metavar="PATH", help="TOML configuration file")
        if name == command:
            _load(name).add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in args_list if a in COMMANDS), None)
    args = build_parser(chosen).parse_args(args_list)
    return _load(args.command).execute(args)


if __name__ == "__main__":
    sys.exit(main())

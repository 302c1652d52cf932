"""The ``dropzone`` command line: ``main(argv) -> int``.

Subcommands live in ``dropzone.commands.<name>`` and are imported only when chosen, so
``dropzone check`` does not pay for the daemon's imports.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Protocol, cast

from dropzone import __version__

COMMANDS: dict[str, str] = {
    "run": "the daemon: initial scan, then watch until SIGTERM/SIGINT",
    "scan": "one pass: import what is ready now, report what is pending, exit",
    "check": "offline: validate artifacts and sidecars, print the /api/create requests",
    "status": "what the state store knows, per artifact and host",
    "retry": "clear refusals and backoff (all, or the named artifacts); wake the daemon",
    "doctor": "check hosts, drop folder, file system events, limits and state store",
}

# What "dropzone COMMAND --help" adds below the options: exit statuses and examples.
_EPILOGS: dict[str, str] = {
    "run": """\
Runs until SIGTERM or SIGINT (a second Ctrl-C stops at once); SIGHUP rescans the
drop folder. Under systemd this is ExecStart=; events go to stdout as JSON lines.

exit status: 0 clean stop, 2 bad configuration or another daemon holds the store

examples:
  dropzone run --config /etc/dropzone/dropzone.toml
  dropzone run --drop-dir ./drop --state-dir ./state""",
    "scan": """\
Imports every artifact that is complete and unmodified for settle_seconds, waits
for that work, and lists what is still pending. Not beside a running daemon.

exit status: 0 all imported or pending, 1 something failed or was refused, or the
             drop folder is not the recorded one (an unmounted share), 2 bad configuration

examples:
  dropzone scan --config /etc/dropzone/dropzone.toml""",
    "check": """\
Reads the same configuration as the daemon (stderr says which) and sends nothing
unless --hosts is given. PATH is a GGUF, a shard, a safetensors folder, a
sidecar, or a whole drop folder.

exit status: 0 valid, 1 invalid, 2 bad configuration

examples:
  dropzone check /srv/dropzone/qwen3-8b-q4_k_m.gguf
  dropzone check --json --no-hash /srv/dropzone""",
    "status": """\
Reads the state store without writing it: any member of the group dropzone may
run it, also while the daemon runs.

exit status: 0, 2 when the state store cannot be read (the message says how to
             fix it) or the configuration is bad

examples:
  dropzone status --config /etc/dropzone/dropzone.toml
  dropzone status --json | jq '.[] | select(.state == "refused")'""",
    "retry": """\
Clears refusals and backoff so the named artifacts (or all) are tried again, and
asks a running daemon to rescan (SIGHUP).

exit status: 0, 2 bad configuration

examples:
  dropzone retry /srv/dropzone/qwen3-8b-q4_k_m.gguf
  dropzone retry""",
    "doctor": """\
Asks each Ollama host for its version, tries a file in the drop folder, probes
file system events, reads inotify limits, free space and the state store, and
prints a fix for each problem.

exit status: 0 all good, 1 a problem found, 2 bad configuration

examples:
  dropzone doctor --config /etc/dropzone/dropzone.toml""",
}

_DESCRIPTION = "dropzone: turn model files dropped into a folder into Ollama models."
_EPILOG = """\
configuration: --config PATH, else $DROPZONE_CONFIG, else /etc/dropzone/dropzone.toml
if it exists, else the defaults; DROPZONE_<KEY> variables override the file.
Run "dropzone COMMAND --help" for a command's options, exit status and examples."""


class _Command(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...
    def execute(self, args: argparse.Namespace) -> int: ...


def _load(name: str) -> _Command:
    return cast(_Command, importlib.import_module(f"dropzone.commands.{name}"))


def build_parser(command: str | None) -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="dropzone", description=_DESCRIPTION, epilog=_EPILOG, formatter_class=raw
    )
    parser.add_argument("--version", action="version", version=f"dropzone {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text[:1].upper() + help_text[1:] + ".",
            epilog=_EPILOGS[name],
            formatter_class=raw,
        )
        p.add_argument(
            "--config",
            metavar="PATH",
            help="the TOML configuration file (default: $DROPZONE_CONFIG, else"
            " /etc/dropzone/dropzone.toml if it exists)",
        )
        if name == command:
            _load(name).add_arguments(p)
    return parser


def _version() -> str:
    try:
        return metadata.version("dropzone")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return __version__


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in args_list if a in COMMANDS), None)
    args = build_parser(chosen).parse_args(args_list)
    return _load(args.command).execute(args)


if __name__ == "__main__":
    sys.exit(main())

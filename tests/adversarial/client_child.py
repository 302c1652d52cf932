"""Runs one Ollama client call in a child process, so the test can read that process's peak
RSS alone (its own ``VmHWM``): ``python client_child.py URL OPERATION`` prints one JSON object with
the error class and message, or the result's size."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from dropzone.ollama.client import OllamaClient, make_http_client


def main(url: str, operation: str) -> None:
    client = OllamaClient(url, make_http_client())
    outcome: dict[str, object] = {}
    try:
        if operation == "version":
            outcome["result"] = client.version()
        elif operation == "show":
            outcome["result"] = sorted(client.show("m"))
        elif operation == "tags":
            outcome["result"] = len(client.tags())
        elif operation == "create":
            outcome["result"] = len(list(client.create({"model": "m"})))
        else:
            raise SystemExit(f"unknown operation {operation}")
    except Exception as exc:
        outcome["error"] = type(exc).__name__
        outcome["message"] = str(exc)[:2000]
        outcome["message_chars"] = len(str(exc))
    outcome["peak_rss"] = _own_peak()
    print(json.dumps(outcome))


def _own_peak() -> int:
    """This process's peak RSS in bytes, from ``VmHWM``. Not ``ru_maxrss`` of ``wait4``: at
    ``exec`` Linux carries over the high-water mark of the address space it replaces, and a
    vforked child's is the parent's, so a large pytest process made every child look large."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

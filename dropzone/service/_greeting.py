"""Learning each host's version at start, off the main thread (issue 13).

Greeting once ran on the main thread, host after host, before the first scan and ``READY=1``:
one host that dripped its answer held every host and stop. Now each host is asked on its own
thread and the caller waits at most ``GREETING_SECONDS`` in all. A host that has not answered by
then stays "unknown version": the importer asks it again before its first import (within the
client's own deadline, ``Timeouts.quick``), as it does for a host that was down. A late answer
still lands in ``Host.version``; the thread is a daemon thread, so it never delays the exit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import structlog

from dropzone.errors import DropzoneError
from dropzone.imports.importer import Host

log = structlog.get_logger("dropzone.greeting")

# Long enough for a server across a WAN behind TLS (a few round trips), short enough that the
# first scan and READY=1 come well inside systemd's start timeout whatever the hosts do.
GREETING_SECONDS = 5.0
# How often the wait looks at ``stopping``: a signal handler can only set a flag, not wake us.
_STOP_CHECK_SECONDS = 0.1


def greet_hosts(
    hosts: Sequence[Host],
    stopping: Callable[[], bool] = lambda: False,
    seconds: float = GREETING_SECONDS,
) -> None:
    """Ask every host its version in parallel; return once all answered, ``seconds`` passed,
    or ``stopping()`` is true (SIGTERM during the greeting is answered at once)."""
    threads = [
        threading.Thread(target=_greet, args=(host,), name=f"greet-{i}", daemon=True)
        for i, host in enumerate(hosts)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + seconds
    for thread in threads:
        while thread.is_alive() and not stopping():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            thread.join(min(left, _STOP_CHECK_SECONDS))
    if stopping():
        return
    for host, thread in zip(hosts, threads, strict=True):
        if thread.is_alive():
            log.warning(
                "ollama.unreachable",
                host=host.url,
                error=f"no version within {seconds:g} s; asked again before its first import",
            )


def _greet(host: Host) -> None:
    try:
        host.version = host.client.version()
        log.info("ollama.version", host=host.url, version=host.version)
    except DropzoneError as exc:
        log.warning("ollama.unreachable", host=host.url, error=str(exc))

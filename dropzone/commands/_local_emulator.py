"""The bundled Ollama emulator as a host (``emulator:DIR``), for trying dropzone out on a
machine with no Ollama: started in this process, on a free loopback port, with its model
store in DIR. ``loading.emulator_refusal`` keeps it out of services and the system
configuration; here it is only started and stopped."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import structlog

from dropzone.config.settings import Settings

log = structlog.get_logger("dropzone.local_emulator")


@contextmanager
def local_emulators(settings: Settings) -> Iterator[dict[str, str]]:
    """Start an emulator for each ``emulator:`` host; yield ``{host url: its http URL}``."""
    wanted = [(h.url, h.emulator_store) for h in settings.ollama_hosts if h.emulator_store]
    if not wanted:
        yield {}
        return
    # Imported only when asked for: a production daemon never loads the emulator.
    from dropzone.testing.ollama import Emulator  # noqa: PLC0415

    with ExitStack() as running:
        endpoints: dict[str, str] = {}
        for host, store in wanted:
            emulator = running.enter_context(Emulator(store))
            endpoints[host] = emulator.url
            log.info(
                "emulator.started",
                host=host,
                url=emulator.url,
                store=str(store),
                models=f"curl -s {emulator.url}/api/tags",
            )
        yield endpoints

"""The Ollama hosts of the settings, each with its client and its blob placement."""

from __future__ import annotations

import httpx

from dropzone.importer import Host
from dropzone.ollama import OllamaClient, Timeouts, make_http_client
from dropzone.placement import placer_for
from dropzone.settings import Settings


def connect_hosts(settings: Settings) -> tuple[list[Host], list[httpx.Client]]:
    """The hosts, and the HTTP clients the service closes at a clean stop."""
    clients = [make_http_client(verify=h.verify) for h in settings.ollama_hosts]
    timeouts = Timeouts(create_total=settings.create_timeout_seconds)
    hosts = [
        Host(
            h.url,
            OllamaClient(h.url, http, headers=h.header_values(), timeouts=timeouts),
            placer=placer_for(h.url, h.models_dir, h.local_import_mode, settings.on_success),
        )
        for h, http in zip(settings.ollama_hosts, clients, strict=True)
    ]
    return hosts, clients

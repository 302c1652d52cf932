"""The Ollama hosts of the settings, each with its client and its blob placement."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from dropzone.config.settings import Settings
from dropzone.imports.importer import Host
from dropzone.imports.placement import placer_for
from dropzone.ollama.client import OllamaClient, Timeouts, make_http_client


def connect_hosts(
    settings: Settings, endpoints: Mapping[str, str] | None = None
) -> tuple[list[Host], list[httpx.Client]]:
    """The hosts, and the HTTP clients the service closes at a clean stop. ``endpoints`` maps
    a host's URL to where it really answers: the bundled emulator's port for an ``emulator:``
    host (its URL stays its identity in the store and events)."""
    endpoints = endpoints or {}
    clients = [make_http_client(verify=h.verify) for h in settings.ollama_hosts]
    timeouts = Timeouts(create_total=settings.create_timeout_seconds)
    hosts = [
        Host(
            h.url,
            OllamaClient(
                endpoints.get(h.url, h.url),
                http,
                headers=h.header_values(),
                timeouts=timeouts,
            ),
            placer=placer_for(h.url, h.models_dir, h.local_import_mode, settings.on_success),
            verify=h.verify_model,
        )
        for h, http in zip(settings.ollama_hosts, clients, strict=True)
    ]
    for host in hosts:
        if host.placer is not None:
            host.placer.sweep_leftovers()  # a killed daemon's temporaries in the server's store
    return hosts, clients

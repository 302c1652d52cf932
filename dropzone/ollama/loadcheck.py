"""The load check after create (issue 16, ``verify = "load"``).

``POST /api/create`` succeeding says the server stored the model, not that it can run it: an
architecture its runtime cannot load, or a template that fails, shows only when a user first
runs it. With ``verify = "load"`` the importer, right after the ``/api/show`` confirmation,
asks the server to load the model (an empty generate request), records ``model.loaded`` or
``model.load_failed`` with the server's text, and unloads it again (``keep_alive: 0``) so an
import does not hold GPU memory that users need.

Any answer other than 200 to the load is a refusal with the server's text (``dropzone retry``
or touching the artifact tries again); no answer at all (unreachable, a timeout) is raised to
the importer, which retries it like any transient failure.
"""

from __future__ import annotations

from collections.abc import Mapping

import structlog

from dropzone.errors import OllamaError
from dropzone.ollama.client import OllamaClient

log = structlog.get_logger("dropzone.loadcheck")


def check_load(
    client: OllamaClient, model: str, verify: str, ctx: Mapping[str, object]
) -> str | None:
    """None when the model loads (or ``verify`` is ``show``); else why the server refused."""
    if verify != "load":
        return None
    try:
        client.load(model)
    except OllamaError as exc:
        if exc.status is None:
            raise
        reason = f"the server could not load the model: {exc.message}"
        log.error("model.load_failed", **ctx, error=exc.message, status=exc.status)
        return reason
    unloaded = True
    try:
        client.load(model, keep_alive=0)
    except OllamaError as exc:  # loaded is what was asked; an unload failing is only noted
        unloaded = False
        log.warning("model.unload_failed", **ctx, error=exc.message, status=exc.status)
    log.info("model.loaded", **ctx, unloaded=unloaded)
    return None

"""What a host would certainly refuse in a create ``from`` a model, asked before sending.

The server quantizes only F16, BF16 and F32 sources (``ollama-api.md`` §4.10): ``/api/show`` of
the base tells its ``quantization_level``. A base the host lacks is pulled inside the create
(§4.4.1), so nothing is known about it here: the create goes out and the server decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dropzone.errors import OllamaError
from dropzone.ollama.client import OllamaClient
from dropzone.recipes.parameters import QUANTIZABLE_SOURCES

QUANTIZE_REFUSAL = "quantization is only supported for F16, BF16 and F32 models"


def quantize_refusal(show: Mapping[str, Any], base: str) -> str | None:
    """The server's reason (and the fix) when quantizing the base ``show`` describes fails."""
    details = show.get("details")
    level = details.get("quantization_level") if isinstance(details, Mapping) else None
    if not isinstance(level, str) or not level or level.upper() in QUANTIZABLE_SOURCES:
        return None
    return f"{QUANTIZE_REFUSAL} ({base} is {level}); fix: remove quantize, or name an F16 base"


def base_refusal(request: Mapping[str, Any], client: OllamaClient) -> str | None:
    """Why ``request`` would certainly fail on this host, or None. Transient errors raise."""
    base = request.get("from")
    if not isinstance(base, str) or not request.get("quantize") or request.get("files"):
        return None
    try:
        show = client.show(base)
    except OllamaError as exc:
        if exc.status == 404:
            return None  # pulled inside the create: nothing to tell before
        raise
    return quantize_refusal(show, base)

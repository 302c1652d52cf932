"""What a create derives from a GGUF's architecture, as Ollama v0.33.0-rc2 does it: renderer
and parser defaults (``createModel`` in ``server/create.go``) and the llava projector type
(``needsDefaultLlavaProjectorType`` in ``server/quantization.go``)."""

from __future__ import annotations

from typing import Any

from dropzone.testing.emulator.config import Config

MLP_KEY = "clip.projector_type"

# architecture → (renderer, parser), each used only where the request gave none.
_DEFAULTS = {
    "gemma4": ("gemma4", "gemma4"),
    "laguna": ("laguna", "laguna"),
    "nemotron_h": ("nemotron-3-nano", "nemotron-3-nano"),
    "nemotron_h_moe": ("nemotron-3-nano", "nemotron-3-nano"),
    "nemotron_h_omni": ("nemotron-3-nano", "nemotron-3-nano"),
}
# architecture → the stop parameter added when the request's parameters have none.
_STOPS = {"gemma4": ["<turn|>"]}


def arch_defaults(config: Config, architecture: str) -> list[str] | None:
    """Fill in ``config``'s renderer and parser for ``architecture``; the default stop
    parameter to add, if any. The server decides only when one of the two is still empty."""
    if config.renderer and config.parser:
        return None
    renderer, parser = _DEFAULTS.get(architecture, ("", ""))
    config.renderer = config.renderer or renderer
    config.parser = config.parser or parser
    stop = _STOPS.get(architecture)
    return list(stop) if stop else None


def needs_mlp(header: Any) -> bool:
    """A llava-style CLIP projector (a vision encoder) that names no projector type: the
    server writes ``clip.projector_type = "mlp"`` into it, the type llava's projectors had
    before the key existed."""
    meta = header.metadata
    if header.architecture != "clip" or meta.get("clip.has_vision_encoder") is not True:
        return False
    return MLP_KEY not in meta and "clip.vision.projector_type" not in meta

"""How long a complete file is: the one rule, by format. Pure.

A format's header says how long the complete file is, either exactly or as a minimum; a file
is SHORT of it (still arriving), COMPLETE, or LONG (more bytes than the format allows:
refused). The scanner judges every file with it; whatever runs after (the hasher, ``check``)
works from the size the scanner judged complete, never from a header length (issue 11).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Fit(StrEnum):
    SHORT = "short"  # bytes are missing: the file is still arriving (or was cut)
    COMPLETE = "complete"
    LONG = "long"  # more bytes than an exact length allows


@dataclass(frozen=True, slots=True)
class Expected:
    """The length a complete file has: ``size`` exactly, or at least ``size`` bytes."""

    size: int
    minimum: bool = False

    def fit(self, have: int) -> Fit:
        if have < self.size:
            return Fit.SHORT
        if have > self.size and not self.minimum:
            return Fit.LONG
        return Fit.COMPLETE

    def complete(self, have: int) -> bool:
        return self.fit(have) is Fit.COMPLETE

    def __str__(self) -> str:
        return f"at least {self.size}" if self.minimum else str(self.size)


def for_gguf(tensor_data_end: int) -> Expected:
    """A GGUF is complete once it reaches the end of its last tensor's data; bytes after it
    do not make it incomplete or invalid. gguf-py pads after every tensor, the last one too,
    so a file whose last tensor is not a multiple of the alignment is longer than that end.

    This is what Ollama does: ``ggufLayersWithMediaType`` (server/create.go) decodes the blob
    with ``ggml.Decode`` (fs/ggml/ggml.go), whose ``gguf.Decode`` (fs/ggml/gguf.go) refuses a
    tensor only when ``tensorOffset + offset + size`` exceeds the file size, and then makes
    the whole blob the layer, trailing bytes included (``manifest.NewLayerFromLayer``).
    Older servers' ``gguf.Decode`` only seeks past each tensor, checking nothing. llama.cpp
    (v0.30+ validates with llama-quantize) also refuses only tensor data past the end of
    the file (``llama_tensor_weight``, src/llama-model-loader.h).
    """
    return Expected(tensor_data_end, minimum=True)


def for_safetensors(length: int) -> Expected:
    """A safetensors file is exactly 8 + header length + the largest tensor end offset."""
    return Expected(length)


def as_is(size: int) -> Expected:
    """A file complete as it is (a JSON file that parses): its own size, exactly."""
    return Expected(size)


def total(parts: Iterable[Expected]) -> Expected:
    """What several files need together: the sum, a minimum if any part is one."""
    items = list(parts)
    return Expected(sum(p.size for p in items), minimum=any(p.minimum for p in items))

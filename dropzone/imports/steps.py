"""Pure decisions for one (artifact, host): skip, wait, or go; and when to retry.

No I/O here: the importer asks, then acts, so the rules are tested with tables and a clock.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from dropzone.recipes.types import ArtifactKind

# Server features by version (design §5): split GGUF and GGUF validation arrived in v0.30.
SPLIT_GGUF_SINCE = (0, 30, 0)

BACKOFF_BASE_SECONDS = 2.0
BACKOFF_MAX_SECONDS = 600.0


class Step(StrEnum):
    SKIP = "skip"  # already done with this exact request
    WAIT = "wait"  # a retry is scheduled later
    REFUSED = "refused"  # failed permanently with this exact request; wait for a change
    GO = "go"


@dataclass(frozen=True)
class Recorded:
    """What the state store remembers of one (artifact, host)."""

    state: str
    request_fingerprint: str | None
    next_retry_at: float | None


def next_step(recorded: Recorded | None, fingerprint: str, now: float) -> Step:
    if recorded is None:
        return Step.GO
    same = recorded.request_fingerprint == fingerprint
    if recorded.state == "done" and same:
        return Step.SKIP
    # "failed": a row of schema 3 or older, read by its retry time (``state.settled_state``).
    if recorded.state in ("waiting", "refused", "failed") and same:
        if recorded.next_retry_at is None:
            return Step.REFUSED
        if recorded.next_retry_at > now:
            return Step.WAIT
    return Step.GO


def backoff_seconds(attempts: int, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in [base/2, min(cap, base·2^(n-1))]."""
    ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(attempts - 1, 0))
    return rng.uniform(min(BACKOFF_BASE_SECONDS / 2, ceiling), ceiling)


def parse_version(text: str) -> tuple[int, int, int] | None:
    """``0.33.0-rc2`` → (0, 33, 0); None when the server does not say (e.g. a dev build)."""
    core = text.lstrip("v").split("-", 1)[0].split("+", 1)[0]
    parts = core.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return None
    major, minor, patch = (int(p) for p in parts)
    return (major, minor, patch)


def unsupported_feature(kind: ArtifactKind, version: str) -> str | None:
    """Why a host of this version cannot take this artifact, or None if it can."""
    parsed = parse_version(version)
    # "0.0.0" is a source build: assume it is current rather than refuse everything.
    if parsed is None or parsed == (0, 0, 0):
        return None
    if kind is ArtifactKind.GGUF_SPLIT and parsed < SPLIT_GGUF_SINCE:
        return f"split GGUF needs Ollama 0.30.0 or newer; this host runs {version}"
    return None

import random

import pytest

from dropzone.imports.steps import (
    BACKOFF_MAX_SECONDS,
    Recorded,
    Step,
    backoff_seconds,
    next_step,
    parse_version,
    unsupported_feature,
)
from dropzone.recipes.types import ArtifactKind

FP = "fp1"


@pytest.mark.parametrize(
    ("recorded", "expected"),
    [
        (None, Step.GO),
        (Recorded("done", FP, None), Step.SKIP),
        (Recorded("done", "other", None), Step.GO),  # sidecar changed: re-create
        (Recorded("failed", FP, None), Step.REFUSED),  # permanent until inputs change
        (Recorded("failed", "other", None), Step.GO),
        (Recorded("failed", FP, 200.0), Step.WAIT),
        (Recorded("failed", FP, 50.0), Step.GO),  # retry time has come
        (Recorded("uploading", FP, None), Step.GO),  # interrupted: resume
        (Recorded("creating", FP, None), Step.GO),
    ],
)
def test_next_step(recorded: Recorded | None, expected: Step) -> None:
    assert next_step(recorded, FP, now=100.0) is expected


def test_backoff_grows_and_is_capped() -> None:
    rng = random.Random(1)
    highs = [max(backoff_seconds(n, rng) for _ in range(200)) for n in range(1, 15)]
    assert highs[0] <= 2.0
    assert highs[3] > highs[0]
    assert all(h <= BACKOFF_MAX_SECONDS for h in highs)
    assert all(backoff_seconds(n, rng) >= 1.0 for n in range(1, 15))


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("0.33.0-rc2", (0, 33, 0)), ("v0.29.1", (0, 29, 1)), ("0.0.0", (0, 0, 0)), ("dev", None)],
)
def test_parse_version(text: str, parsed: tuple[int, int, int] | None) -> None:
    assert parse_version(text) == parsed


def test_split_gguf_is_refused_before_0_30_only() -> None:
    assert unsupported_feature(ArtifactKind.GGUF_SPLIT, "0.29.9") is not None
    assert unsupported_feature(ArtifactKind.GGUF_SPLIT, "0.30.0") is None
    assert unsupported_feature(ArtifactKind.GGUF_SPLIT, "0.0.0") is None
    assert unsupported_feature(ArtifactKind.GGUF, "0.20.0") is None

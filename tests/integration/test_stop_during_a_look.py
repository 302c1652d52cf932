"""A stop requested while a look reads the headers of a large drop folder ends the look there:
100,000 files took 16 s to stop, all read first (seen by hand)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dropzone.errors import StoppedError
from dropzone.scan.ignore import IgnoreRules
from dropzone.service.folder_view import FolderView
from dropzone.testing.builders import build_gguf


def test_a_look_stops_reading_headers_once_a_stop_is_requested(tmp_path: Path) -> None:
    for i in range(40):
        build_gguf(tmp_path / f"m{i:02d}.gguf", seed=i)
    asked: list[int] = []

    def stopping() -> bool:
        asked.append(1)
        return len(asked) > 5  # a stop arrives after five header reads

    view = FolderView(tmp_path, IgnoreRules(()), stopping=stopping)
    with pytest.raises(StoppedError):
        view.refresh(full=True, units=())
    assert len(asked) == 6, "headers were read after the stop"


def test_without_a_stop_every_header_is_read(tmp_path: Path) -> None:
    for i in range(3):
        build_gguf(tmp_path / f"m{i}.gguf", seed=i)
    view = FolderView(tmp_path, IgnoreRules(()), stopping=lambda: False)
    affected, _ = view.refresh(full=True, units=())
    result, _ = view.unit(next(iter(affected)))
    assert sorted(sa.rel_path for sa in result.artifacts) == ["m0.gguf", "m1.gguf", "m2.gguf"]

"""What tests look for in a server's store that dropzone places blobs in (issue 17): its
temporaries (``.dropzone-PID-….partial``), not the short-lived probes it makes of the folder."""

from __future__ import annotations

import contextlib
from pathlib import Path


def temporaries(store: Path) -> list[Path]:
    return list((store / "blobs").glob(".dropzone-*.partial"))


def copied_at_least(store: Path, size: int) -> bool:
    """Has a temporary in ``store`` reached ``size`` bytes (a copy made as a file arrives)?"""
    for path in temporaries(store):
        with contextlib.suppress(FileNotFoundError):  # removed since it was listed
            if path.stat().st_size >= size:
                return True
    return False

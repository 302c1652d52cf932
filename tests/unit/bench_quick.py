"""Run a benchmark script in ``--quick`` mode for the smoke tests (no timing asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_quick(script: str, tmp_path: Path, *extra: str) -> str:
    """Run ``bench/<script> --quick [extra]``; it must exit 0 and leave its scratch folder
    empty."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--quick", "--dir", str(tmp_path), *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert list(tmp_path.iterdir()) == [], "scratch files left behind"
    return result.stdout

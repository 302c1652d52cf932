"""The benchmark scripts still run: each in ``--quick`` mode on tiny files, end to end.

No timing is asserted (shared machines make that flaky); a script passes when it exits 0,
prints a ratio line for each comparison it makes, and leaves nothing behind in its folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from bench_quick import run_quick

pytestmark = pytest.mark.bench  # behind the marker: plain pytest leaves them to .ci/run


@pytest.mark.parametrize(
    ("script", "lines"),
    [
        (
            "hash_pass.py",
            [
                "ratio sha256_file / openssl dgst:",
                "ratio hash_file / ceiling:",
                "ratio sha256_file / openssl dgst, cold:",
                "ratio 2-thread throughput / 1-thread throughput:",
            ],
        ),
        (
            "hash_follow.py",
            [
                "ratio follow / hash-after-close latency, 100 MB/s:",
                "ratio follow / hash-after-close latency, full speed:",
            ],
        ),
        (
            "upload.py",
            [
                "ratio push_blob / curl, emulator:",
                "ratio push_blob / curl, discarding receiver:",
                "push_blob peak RSS",
            ],
        ),
    ],
)
def test_bench_script_completes_in_quick_mode_and_prints_its_ratios(
    tmp_path: Path, script: str, lines: list[str]
) -> None:
    out = run_quick(script, tmp_path)
    for line in lines:
        assert line in out, out

"""The daemon-level benchmarks still run: each in ``--quick`` mode (tiny tree, small file, a few
seconds of idle) against the real ``dropzone run`` process and the emulator.

No timing is asserted; a script passes when it exits 0, prints each figure and ratio line it
promises, and leaves nothing behind in its scratch folder.
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
            "end_to_end.py",
            [
                "ratio dropzone / sequential, close -> model:",
                "upload (hash.done -> blob.uploaded)",
                "ratio floor (upload + create) / sequential:",
                "ratio dropzone / floor:",
            ],
        ),
        (
            "scale.py",
            [
                # the import and the arrival at once: every artifact created, none lost
                "models on the server: 50 of 50; lost 0; exit 0",
                "models on the server: 50 of 50; lost 0; exit 0",
                "start -> idle:",
                "hash.done 0, blob.uploaded 0, model.created 0",
                "idle CPU over",
                "peak RSS",
                "one full rescan (SIGHUP)",
                "throughput:",
            ],
        ),
        (
            "stop_time.py",
            [
                f"stop time {case}: median"
                for case in (
                    "idle",
                    "hashing",
                    "upload-stalled",
                    "create-forever",
                    "dripping-version",
                    "fifo-swapped",
                )
            ]
            + ["stop time, worst of all cases:"],
        ),
        (
            "polling.py",
            ["ratio polling / native idle CPU:", "polling costs"],
        ),
        (
            # Same host (issue 17): every method that applies here, against http and sequential.
            "local_import.py",
            [
                "sequential close -> model",
                "http       close -> model",
                "copy       close -> model",
                "link       close -> model",
                "ratio http / sequential, close -> model:",
                "ratio copy / sequential, close -> model:",
                "ratio link / sequential, close -> model:",
                "blob (hash.done -> blob.placed)",
            ],
        ),
    ],
)
def test_daemon_benchmark_runs_and_prints_its_figures(
    script: str, lines: list[str], tmp_path: Path
) -> None:
    out = run_quick(script, tmp_path)
    missing = [line for line in set(lines) if out.count(line) < lines.count(line)]
    assert not missing, f"{script} did not print {missing}:\n{out}"
    if script == "end_to_end.py":  # 96 MiB: over EARLY_UPLOAD_MIN_BYTES, uploaded while settling
        assert "not early" not in out, out


def test_local_import_runs_every_case_on_the_loop_mounted_xfs_too(tmp_path: Path) -> None:
    out = run_quick("local_import.py", tmp_path, "--cow-all")
    if "reflink case left out" in out:
        pytest.skip(out.split("reflink case left out: ", 1)[1].splitlines()[0])
    for line in (
        "sequential@xfs close -> model",
        "ratio copy / sequential, close -> model:",
        "ratio reflink / sequential@xfs, close -> model:",
        "ratio copy@xfs / sequential@xfs, close -> model:",
        "ratio link@xfs / sequential@xfs, close -> model:",
        "ratio http@xfs / sequential@xfs, close -> model:",
    ):
        assert line in out, f"local_import.py --cow-all did not print {line!r}:\n{out}"
    assert "ratio reflink / sequential, close -> model:" not in out  # not against ext4's
    assert "ratio reflink / http," not in out

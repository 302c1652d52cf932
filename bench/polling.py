"""Polling mode: the idle CPU cost of ``poll_interval = 2`` over a 10,000-file tree, vs native
events (inotify) over the same tree.

The real ``python -m dropzone run`` process; the same tree as ``scale.py`` (tiny GGUFs, 10 per
folder). Each run starts a daemon, waits until it is idle (initial ``scan.done``, then
``--quiet`` seconds without a work event), reads its CPU for a few seconds as started, sends
SIGHUP (a full rescan) and waits for idle again, then reads its CPU time (``/proc/PID/stat``
utime+stime) over ``--idle`` seconds. Native and polling runs alternate (ABBA).

The tree must give the daemon nothing to do, so that the idle CPU is the watcher's and the
main loop's alone. By default it is made inert with ``require_sidecar = true`` (no artifact has
a sidecar, so each is reported pending once and left alone): that needs no import, and the
watcher walks the same 11,000 entries either way. ``--import-first`` imports the tree instead
(a native daemon until every artifact is done) and measures over the imported tree, as an
operator would have it; at 10,000 artifacts that import takes long (see RESULTS.md).

    .venv/bin/python bench/polling.py [--artifacts 10000] [--idle 60] [--runs 2] [--quick]
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
from pathlib import Path

from common import check_space, print_header, print_ratio, quiet_logs, workdir
from end_to_end import (
    WORK_EVENTS,
    DaemonRun,
    EmulatorProcess,
    add_source_argument,
    span,
    use_source,
)
from scale import add_tree_arguments, idle_window, print_profile, sampled, write_tree

POLL_INTERVAL = "2"


def idle_run(
    work: Path,
    drop: Path,
    state: Path,
    url: str,
    *,
    settings: dict[str, str],
    quiet: float,
    idle: float,
    profile: Path | None,
) -> tuple[float, float, float, int]:
    """Start a daemon; (start -> idle seconds, CPU % of one core in the first seconds of idle,
    idle CPU % after a rescan, work events seen during that window).

    The window is measured after a SIGHUP rescan, and the first seconds as started are reported
    apart: before commit 16d0d3d the daemon as started spun at 100 % on a machine up for over an
    hour (see RESULTS.md), which hid the watcher's cost; the two columns now agree."""
    daemon = DaemonRun(work, drop=drop, state=state, hosts=[url], settings=settings)
    try:
        went_idle = daemon.wait_idle(quiet, timeout=600)
        as_started, _ = idle_window(daemon, min(idle, 5.0))
        mark = daemon.mark()
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_event("scan.done", since=mark, timeout=600)
        daemon.wait_idle(quiet, timeout=600)
        with sampled(daemon.pid, profile, idle):
            idle_pct, during = idle_window(daemon, idle)
        busy = sum(n for name, n in during.items() if name in WORK_EVENTS)
    finally:
        code = daemon.stop(timeout=120)
    if code != 0:
        raise SystemExit(f"dropzone exited {code}\n{daemon.tail()}")
    return went_idle - daemon.started, as_started, idle_pct, busy


def import_tree(work: Path, drop: Path, state: Path, url: str, count: int) -> float:
    daemon = DaemonRun(work, drop=drop, state=state, hosts=[url], settings={"settle_seconds": "1"})
    try:
        last = daemon.wait_count("artifact.done", count, timeout=120 + count, result="done")
    finally:
        code = daemon.stop(timeout=120)
    if code != 0:
        raise SystemExit(f"dropzone exited {code}\n{daemon.tail()}")
    return last - daemon.started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_tree_arguments(parser)
    parser.add_argument("--runs", type=int, default=2, help="runs of each mode")
    parser.add_argument("--import-first", action="store_true", help="import the tree first")
    parser.add_argument("--profile", action="store_true", help="py-spy the idle windows")
    parser.add_argument("--quick", action="store_true", help="50 artifacts, 3 s idle, 1 run")
    parser.add_argument("--dir", type=Path, default=None, help="scratch folder (default: tmp)")
    add_source_argument(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.artifacts, args.per_folder, args.idle, args.quiet, args.runs = 50, 5, 3.0, 1.0, 1
    print_header(argv)
    use_source(args)
    quiet_logs()
    modes = {"native": "0", f"polling ({POLL_INTERVAL} s)": POLL_INTERVAL}
    results: dict[str, list[tuple[float, float, float, int]]] = {name: [] for name in modes}
    with workdir(args.dir, "bench-polling-") as work:
        check_space(work, 64 * 1024 * args.artifacts)
        drop, state = work / "drop", work / "state"
        drop.mkdir()
        wrote = write_tree(drop, args.artifacts, args.per_folder)
        folders = -(-args.artifacts // args.per_folder)
        print(f"\ntree: {args.artifacts:,} GGUFs in {folders:,} folders, written in {wrote:.2f} s")
        emulator = EmulatorProcess(work / "ollama")
        try:
            settings = {"settle_seconds": "1"}
            if args.import_first:
                took = import_tree(work, drop, state, emulator.url, args.artifacts)
                print(f"imported first: {args.artifacts:,} artifacts in {took:.1f} s")
            else:
                settings["require_sidecar"] = "true"
                print("inert tree: require_sidecar = true and no sidecars (nothing to import)")
            for run in range(args.runs):
                for name in list(modes) if run % 2 == 0 else reversed(list(modes)):
                    raw = work / f"{name.split()[0]}-{run}.raw" if args.profile else None
                    result = idle_run(
                        work,
                        drop,
                        state,
                        emulator.url,
                        settings={**settings, "poll_interval": modes[name]},
                        quiet=args.quiet,
                        idle=args.idle,
                        profile=raw,
                    )
                    results[name].append(result)
                    print(f"  run {run + 1}  {name:14s} start -> idle {result[0]:6.2f} s,"
                          f" as started {result[1]:6.2f} %, after a rescan {result[2]:6.3f} %"
                          f" of one core over {args.idle:g} s, work events meanwhile"
                          f" {result[3]}", flush=True)  # fmt: skip
                    if raw is not None:
                        print_profile(f"{name}, idle", raw)
        finally:
            emulator.stop()
    print(f"\nidle over {args.artifacts:,} files, median (min-max)")
    print(f"  {'mode':16s} {'start -> idle s':>22s} {'CPU % as started':>24s}"
          f" {'idle CPU % of one core':>26s}")  # fmt: skip
    for name, rows in results.items():
        starts = span([r[0] for r in rows], digits=2)
        spins = span([r[1] for r in rows], digits=2)
        cpus = span([r[2] for r in rows], digits=3)
        print(f"  {name:16s} {starts:>22s} {spins:>24s} {cpus:>26s}")
    native = statistics.median(r[2] for r in results["native"])
    polling = statistics.median(r[2] for r in results[f"polling ({POLL_INTERVAL} s)"])
    print(f"polling costs {polling - native:.3f} % of one core more than native events")
    print_ratio("polling / native idle CPU", polling / native if native > 0 else float("inf"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

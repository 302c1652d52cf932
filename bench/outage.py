"""An Ollama outage: what a daemon holding N waiting artifacts costs while its host is down.

The real ``python -m dropzone run`` process; N tiny GGUFs (aged, so nothing settles) in the drop
folder; the only host a loopback port where nothing listens (connection refused, as a stopped
``ollama serve``). Once every artifact has met the outage (hashed, the host ``host.down``), the
daemon's CPU time (``/proc/PID/stat``) and its events are counted over ``--outage`` seconds.
The reference, measured in the same run: the same daemon over an empty drop folder (idle) over
the same window. Reported: CPU as a share of one core for both, and events per retry during the
outage (issue #11: events and state writes grow with retries, not with time; under 2 % of a
core).

    .venv/bin/python bench/outage.py [--artifacts 100] [--outage 120]
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from pathlib import Path

from common import cpu_seconds, free_port, print_header, quiet_logs, workdir
from end_to_end import DaemonRun, add_source_argument, use_source

from dropzone.testing.builders import build_gguf


def measure(work: Path, artifacts: int, window: float) -> tuple[float, Counter[str], int]:
    """CPU seconds, events by name and retries over ``window`` seconds of an outage."""
    drop, state = work / "drop", work / "state"
    drop.mkdir()
    aged = time.time() - 3600
    for i in range(artifacts):
        path = build_gguf(drop / f"m{i:04d}.gguf", seed=i)
        os.utime(path, (aged, aged))
    down = f"http://127.0.0.1:{free_port()}"
    daemon = DaemonRun(work, drop=drop, state=state, hosts=[down])
    try:
        daemon.wait_event("scan.done", timeout=60)
        if artifacts:  # every artifact hashed and met the outage; the host marked down
            daemon.wait_count("hash.done", artifacts, timeout=120)
            daemon.wait_event("host.down", timeout=120)
        since = daemon.mark()
        cpu0 = cpu_seconds(daemon.pid)
        time.sleep(window)  # the outage itself: a benchmark measures over wall time
        cpu = cpu_seconds(daemon.pid) - cpu0
        names = daemon.names(since)
    finally:
        daemon.stop()
    return cpu, names, names["retry.scheduled"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=int, default=100)
    parser.add_argument("--outage", type=float, default=120.0, help="seconds measured")
    add_source_argument(parser)
    args = parser.parse_args()
    use_source(args)
    print_header()
    quiet_logs()
    with workdir(None, "outage-idle") as work:
        idle_cpu, idle_events, _ = measure(work, 0, args.outage)
    with workdir(None, "outage") as work:
        cpu, events, retries = measure(work, args.artifacts, args.outage)
    total = sum(events.values())
    print(f"idle daemon, empty folder: {100 * idle_cpu / args.outage:.2f} % of a core, "
          f"{sum(idle_events.values())} events in {args.outage:.0f} s")
    print(f"{args.artifacts} artifacts, host down: {100 * cpu / args.outage:.2f} % of a core, "
          f"{total} events in {args.outage:.0f} s, {retries} retries "
          f"({total / max(retries, 1):.2f} events per retry)")
    print("events:", ", ".join(f"{k} {v}" for k, v in events.most_common()))
    print(f"ratio to idle: {cpu / max(idle_cpu, 1e-9):.2f}x CPU")


if __name__ == "__main__":
    main()

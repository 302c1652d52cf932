"""Metrics scrape (issue 16): how long one scrape of a daemon holding N artifacts takes.

A state store with ``--artifacts`` (artifact, host) rows in a mix of states, a ``Metrics`` on
it, and the time of ``generate_latest`` (what the endpoint and the textfile do per scrape)
over ``--runs`` scrapes. Bar: the median under 50 ms at 10,000 artifacts.

    .venv/bin/python bench/metrics_scrape.py [--artifacts 10000] [--runs 20]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from prometheus_client import generate_latest

from dropzone.fleet.metrics import Metrics
from dropzone.store.state import HostState, StateStore

HOST = "http://127.0.0.1:11434"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--artifacts", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, StateStore.open(Path(tmp)) as store:
        with store.batch():
            for i in range(args.artifacts):
                state = (HostState.DONE, HostState.FAILED, HostState.PENDING)[i % 3]
                retry = time.time() + 60 if i % 6 == 1 else None
                store.set_host_state(f"m{i}.gguf", HOST, state, error="x", next_retry_at=retry)
        metrics = Metrics(hosts=[HOST], drop_dir=Path(tmp), state=store)
        times = []
        for _ in range(args.runs):
            started = time.perf_counter()
            generate_latest(metrics.registry)
            times.append(time.perf_counter() - started)
    median = statistics.median(times) * 1000
    worst = max(times) * 1000
    print(f"{args.artifacts} artifacts: scrape median {median:.1f} ms, max {worst:.1f} ms")


if __name__ == "__main__":
    main()

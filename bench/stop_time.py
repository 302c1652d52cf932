"""Stop time: SIGTERM -> exit of the real ``dropzone run`` in the adversarial suite's situations.

Each case starts ``python -m dropzone run`` (a fresh drop folder and state store), brings it into
its situation, sends SIGTERM and measures until the process has exited (``waitpid``), over
``--rounds`` rounds, alternated (ABBA). The cases (issue 13):

- ``idle``: the first scan done, nothing to do.
- ``hashing``: a ``--size`` GGUF (1 GiB) just ready: SIGTERM as its hash begins.
- ``upload-stalled``: the emulator holds the blob upload (``stall``) after its headers.
- ``create-forever``: a host whose create streams the same status line for ever.
- ``dripping-version``: the only host answers ``GET /api/version`` one byte every 0.5 s.
- ``fifo-swapped``: a half-written GGUF being followed is replaced by a FIFO of its name.

Reported per case: median and max seconds. The hostile host is the adversarial suite's
(``tests/adversarial/hostile_server.py``).

    .venv/bin/python bench/stop_time.py [--rounds 5] [--size 1G]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from common import ROOT, alternate, fmt_size, parse_size, print_header, quiet_logs, workdir
from end_to_end import DaemonRun
from hash_follow import make_gguf_like

sys.path.insert(0, str(ROOT / "tests" / "adversarial"))

from hostile_server import (
    HostileServer,
    answer,
    drip_forever,
    json_answer,
    statuses_forever,
)

from dropzone.imports.hashing import sha256_file
from dropzone.testing.builders import build_gguf
from dropzone.testing.ollama import Emulator

SETTINGS = {"settle_seconds": "0.5"}
AGED = time.time() - 3600  # long settled: ready at the first look


def timed_stop(daemon: DaemonRun) -> float:
    """SIGTERM -> exit, in seconds; a stop that is not clean (exit 0) ends the benchmark."""
    started = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    code = daemon.proc.wait(timeout=60)
    seconds = time.monotonic() - started
    daemon.stop()  # collects the event reader and stderr
    if code != 0:
        raise SystemExit(f"dropzone exited {code}\n{daemon.tail()}")
    return seconds


@contextmanager
def daemon_in(parent: Path, name: str, hosts: list[str]) -> Iterator[tuple[Path, DaemonRun]]:
    with workdir(parent, f"stop-{name}-") as work:
        drop = work / "drop"
        drop.mkdir()
        daemon = DaemonRun(work, drop=drop, state=work / "state", hosts=hosts, settings=SETTINGS)
        try:
            yield drop, daemon
        finally:
            daemon.stop()


def cases(parent: Path, big: Path, emulator: Emulator) -> dict[str, Callable[[], float]]:
    tiny = parent / "tiny.gguf"
    build_gguf(tiny)
    tiny_digest = sha256_file(tiny)

    def idle() -> float:
        with daemon_in(parent, "idle", [emulator.url]) as (_, daemon):
            daemon.wait_event("scan.done")
            return timed_stop(daemon)

    def hashing() -> float:
        with daemon_in(parent, "hashing", [emulator.url]) as (drop, daemon):
            daemon.wait_event("scan.done")
            since = daemon.mark()
            os.link(big, drop / big.name)  # aged: ready at once, then hashed
            daemon.wait_event("artifact.ready", since=since)
            return timed_stop(daemon)

    def upload_stalled() -> float:
        emulator.faults.stall(path_prefix="/api/blobs/", method="POST")
        try:
            with daemon_in(parent, "upload", [emulator.url]) as (drop, daemon):
                daemon.wait_event("scan.done")
                path = drop / f"up{time.monotonic_ns()}.gguf"
                build_gguf(path, n_tensors=8, tensor_elems=4096, seed=time.monotonic_ns() % 1000)
                if not emulator.faults.wait_held(1, timeout=60):
                    raise SystemExit(f"no upload held by the emulator\n{daemon.tail()}")
                return timed_stop(daemon)
        finally:
            emulator.faults.release()

    def create_forever() -> float:
        routes = {
            "/api/version": lambda *_: json_answer({"version": "0.33.0"}),
            "/api/tags": lambda *_: json_answer({"models": []}),
            "/api/show": lambda *_: json_answer({"error": "model not found"}, 404),
            f"/api/blobs/{tiny_digest}": lambda *_: answer(200, b""),
            "/api/create": lambda *_: statuses_forever(every=0.2),
        }
        with HostileServer(routes) as host, daemon_in(parent, "create", [host.url]) as (drop, d):
            d.wait_event("scan.done")
            os.link(tiny, drop / "forever.gguf")
            d.wait_event("model.create.status", timeout=60)
            return timed_stop(d)

    def dripping_version() -> float:
        routes = {"/api/version": lambda *_: drip_forever(every=0.5)}
        with HostileServer(routes) as host, daemon_in(parent, "drip", [host.url]) as (_, d):
            host.wait_for_requests(1)  # the greeting is under way
            d.wait_event("daemon.started")
            return timed_stop(d)

    def fifo_swapped() -> float:
        with daemon_in(parent, "fifo", [emulator.url]) as (drop, daemon):
            daemon.wait_event("scan.done")
            whole = parent / "whole.gguf"
            build_gguf(whole, n_tensors=8, tensor_elems=4096)
            model = drop / "half.gguf"
            model.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
            daemon.wait_event("artifact.pending")  # followed while it "arrives"
            model.unlink()
            os.mkfifo(model)
            since = daemon.mark()
            daemon.proc.send_signal(signal.SIGHUP)  # a rescan meets the FIFO
            daemon.wait_event("scan.done", since=since)
            return timed_stop(daemon)

    return {
        "idle": idle,
        "hashing": hashing,
        "upload-stalled": upload_stalled,
        "create-forever": create_forever,
        "dripping-version": dripping_version,
        "fifo-swapped": fifo_swapped,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size", type=parse_size, default=parse_size("1G"))
    parser.add_argument("--dir", type=Path, default=None, help="scratch folder (default: /tmp)")
    parser.add_argument("--quick", action="store_true", help="1 round, a 32 MiB file")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.size = 1, parse_size("32M")
    print_header()
    quiet_logs()
    with workdir(args.dir, "stop-time-") as parent:
        big = parent / "big.gguf"
        made = make_gguf_like(big, args.size)
        os.utime(big, (AGED, AGED))
        print(f"hashing case: a {fmt_size(made)} GGUF; {args.rounds} rounds", flush=True)
        emulator = Emulator(parent / "ollama", validate_gguf=False).start()
        try:
            results = alternate(
                args.rounds,
                cases(parent, big, emulator),
                show=lambda run, name, s: print(f"  run {run + 1}  {name:18s} {s:6.3f} s"),
            )
        finally:
            emulator.stop()
    print("\nSIGTERM -> exit, seconds")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"stop time {name}: median {median:.3f} s, max {max(values):.3f} s "
              f"({len(values)} rounds)")  # fmt: skip
    worst = max(max(v) for v in results.values())
    print(f"stop time, worst of all cases: {worst:.3f} s")


if __name__ == "__main__":
    main()

"""Hash pass: dropzone's hasher vs ``openssl dgst -sha256`` and the ``openssl speed`` ceiling.

Four parts, each alternated within the run:

1. warm: the file in page cache; ``sha256_file`` and ``hash_file`` (the daemon's path: a
   ``FollowingHasher`` with its checks) vs ``openssl dgst -sha256`` on the same file, and the
   ceiling ``openssl speed -evp sha256 -bytes 16384 -seconds N`` (pure hashing, no I/O).
   Bars: >= 1.1x ``openssl dgst``, >= 0.9x the ceiling.
2. chunk sizes (``--chunks``): ``sha256_file`` with other read sizes, to choose CHUNK_SIZE.
3. cold: the file evicted before each run (``--evict drop_caches`` as root, the default then).
4. two files in two threads vs one file in one thread: the scaling factor (2.0 = perfect).

The warm and two-file passes also time the hasher as it was before the read-ahead
(``serial_sha256``: one thread, ``readinto`` one 4 MiB buffer), the before/after reference.

``--metrics SECONDS`` adds ``sha256_file`` and ``hash_file`` with a daemon's metrics on in
the same process (served on loopback, scraped every SECONDS by another process, fed the
hash's events: ``metrics_load.py``), alternated with the plain ones: metrics on / off.

    .venv/bin/python bench/hash_pass.py [--size 2G] [--runs 5] [--quick] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from common import (
    alternate,
    check_space,
    default_evict,
    evict,
    fmt_size,
    parse_size,
    print_footer,
    print_header,
    print_ratio,
    print_times,
    quiet_logs,
    show_run,
    size_list,
    speed_ratio,
    warm,
    workdir,
    write_random,
)
from metrics_load import hash_events, metrics_on

from dropzone.imports.hashing import CHUNK_SIZE, hash_file, sha256_file

SPEED_BLOCK = 16384
SERIAL_CHUNK = 4 << 20
SERIAL = "serial readinto (before)"
SHA_METRICS = "sha256_file +metrics"
HASH_METRICS = "hash_file +metrics"


def openssl_dgst(path: Path) -> tuple[float, str]:
    started = time.perf_counter()
    out = subprocess.run(
        ["openssl", "dgst", "-sha256", "-r", str(path)], check=True, capture_output=True, text=True
    ).stdout
    return time.perf_counter() - started, "sha256:" + out.split()[0]


def openssl_speed(seconds: int) -> float:
    """The ceiling in bytes/s: ``openssl speed`` at 16 KiB blocks (SHA-256 over memory)."""
    command = ["openssl", "speed", "-evp", "sha256", "-bytes", str(SPEED_BLOCK)]
    out = subprocess.run(
        [*command, "-seconds", str(seconds)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    match = re.search(r"^sha256\s+([0-9.]+)k\s*$", out, re.MULTILINE)
    if not match:
        raise SystemExit(f"cannot parse openssl speed output:\n{out}")
    return float(match.group(1)) * 1000


def serial_sha256(path: Path, chunk_size: int = SERIAL_CHUNK) -> str:
    """dropzone's ``sha256_file`` before the read-ahead: one thread, ``readinto`` one reused
    4 MiB buffer, then ``update``. Kept as the before/after reference."""
    digest = hashlib.sha256()
    view = memoryview(bytearray(chunk_size))
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(view):
            digest.update(view[:n])
    return "sha256:" + digest.hexdigest()


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def check(label: str, got: str, want: str) -> None:
    if got != want:
        raise SystemExit(f"{label} digest {got} differs from openssl's {want}")


def warm_pass(
    path: Path, size: int, runs: int, speed_seconds: int, metrics: float | None = None
) -> None:
    _, want = openssl_dgst(path)
    scrapes: list[int] = []

    def with_metrics(label: str, hasher: Callable[[], str]) -> Callable[[], float]:
        """``hasher`` in a process with metrics served, scraped and fed (``metrics_load``)."""
        assert metrics is not None

        def run() -> float:
            with metrics_on(metrics, scrapes=scrapes) as emit:
                started = time.perf_counter()
                got = hasher()
                hash_events(emit, path, got, size, time.perf_counter() - started)
                seconds = time.perf_counter() - started
            check(label, got, want)
            return seconds

        return run

    def dropzone_sha256_file() -> float:
        started = time.perf_counter()
        got = sha256_file(path)
        seconds = time.perf_counter() - started
        check("sha256_file", got, want)
        return seconds

    def dropzone_hash_file() -> float:
        started = time.perf_counter()
        got = hash_file(path).digest
        seconds = time.perf_counter() - started
        check("hash_file", got, want)
        return seconds

    def dgst() -> float:
        seconds, got = openssl_dgst(path)
        check("openssl dgst", got, want)
        return seconds

    def ceiling() -> float:
        return size / openssl_speed(speed_seconds)  # seconds the ceiling needs for this size

    def serial() -> float:
        started = time.perf_counter()
        got = serial_sha256(path)
        seconds = time.perf_counter() - started
        check(SERIAL, got, want)
        return seconds

    cases = {
        "sha256_file": dropzone_sha256_file,
        "hash_file": dropzone_hash_file,
        SERIAL: serial,
        "openssl dgst -sha256": dgst,
        "openssl speed (ceiling)": ceiling,
    }
    if metrics is not None:
        cases[SHA_METRICS] = with_metrics(SHA_METRICS, lambda: sha256_file(path))
        cases[HASH_METRICS] = with_metrics(HASH_METRICS, lambda: hash_file(path).digest)
    print(f"\n== warm: {fmt_size(size)} in page cache, CHUNK_SIZE {fmt_size(CHUNK_SIZE)}")
    results = alternate(runs, cases, show=show_run(size))
    print_times("warm (page cache)", size, results)
    dgst_name, ceiling_name = "openssl dgst -sha256", "openssl speed (ceiling)"
    for name in ("sha256_file", "hash_file"):
        print_ratio(f"{name} / openssl dgst", speed_ratio(results, name, dgst_name), 1.1)
        print_ratio(f"{name} / ceiling", speed_ratio(results, name, ceiling_name), 0.9)
    print_ratio("openssl dgst / ceiling", speed_ratio(results, dgst_name, ceiling_name))
    print_ratio(f"sha256_file / {SERIAL}", speed_ratio(results, "sha256_file", SERIAL))
    print_ratio(f"{SERIAL} / openssl dgst", speed_ratio(results, SERIAL, dgst_name))
    if metrics is not None:
        print(f"metrics on: scraped every {metrics:g} s, {sum(scrapes)} scrapes in all")
        for on, off in ((SHA_METRICS, "sha256_file"), (HASH_METRICS, "hash_file")):
            print_ratio(f"{on} / {off}", speed_ratio(results, on, off))


def chunk_pass(path: Path, size: int, runs: int, chunks: list[int]) -> None:
    def with_chunk(chunk: int) -> Callable[[], float]:
        return lambda: timed(lambda: sha256_file(path, chunk_size=chunk))

    cases = {f"sha256_file chunk {fmt_size(c)}": with_chunk(c) for c in chunks}
    cases["openssl dgst -sha256"] = lambda: openssl_dgst(path)[0]
    print(f"\n== chunk sizes: {fmt_size(size)} in page cache")
    results = alternate(runs, cases, show=show_run(size))
    print_times("read size of sha256_file", size, results)
    for name in cases:
        if name != "openssl dgst -sha256":
            print_ratio(
                f"{name} / openssl dgst", speed_ratio(results, name, "openssl dgst -sha256")
            )


def cold_pass(path: Path, size: int, runs: int, how: str) -> None:
    def cold(fn: Callable[[], object]) -> Callable[[], float]:
        def run() -> float:
            evict(path, how)
            return timed(fn)

        return run

    cases = {
        "sha256_file (cold)": cold(lambda: sha256_file(path)),
        "openssl dgst (cold)": cold(lambda: openssl_dgst(path)),
    }
    print(f"\n== cold: evicted before each run ({how})")
    results = alternate(runs, cases, show=show_run(size))
    print_times(f"cold cache ({how})", size, results)
    ratio = speed_ratio(results, "sha256_file (cold)", "openssl dgst (cold)")
    print_ratio("sha256_file / openssl dgst, cold", ratio)
    warm(path)


def threads_pass(first: Path, second: Path, size: int, runs: int) -> None:
    def both(hasher: Callable[[Path], str]) -> float:
        errors: list[BaseException] = []

        def work(p: Path) -> None:
            try:
                hasher(p)
            except BaseException as exc:  # reported after join
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(p,)) for p in (first, second)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - started
        if errors:
            raise errors[0]
        return seconds

    one, two = "1 file, 1 thread", "2 files, 2 threads"
    two_serial = f"2 files, 2 threads, {SERIAL}"
    cases = {
        one: lambda: timed(lambda: sha256_file(first)),
        two: lambda: both(sha256_file),
        two_serial: lambda: both(serial_sha256),
    }
    print(f"\n== two files at once: 2 x {fmt_size(size)} in page cache")
    results = alternate(runs, cases, show=show_run(size))
    print_times("one vs two threads (GB/s column is per file)", size, results)
    # Scaling: total bytes per second with two threads over one thread's.
    print_ratio("2-thread throughput / 1-thread throughput", 2 * speed_ratio(results, two, one))
    # Both cores busy: the read-ahead has no idle core to use, and must not cost anything.
    print_ratio(f"2 files at once, sha256_file / {SERIAL}", speed_ratio(results, two, two_serial))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", type=parse_size, default=parse_size("2G"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="8 MiB, 2 runs, 1 s speed (smoke)")
    parser.add_argument("--dir", type=Path, default=None, help="scratch folder (default: tmp)")
    parser.add_argument("--speed-seconds", type=int, default=3)
    parser.add_argument("--chunks", type=size_list, default=[], help="e.g. 256K,1M,4M,8M")
    parser.add_argument("--evict", choices=["drop_caches", "fadvise"], default=default_evict())
    parser.add_argument("--skip", default="", help="comma list of: warm,cold,threads")
    parser.add_argument(
        "--metrics",
        type=float,
        default=None,
        metavar="SECONDS",
        help="also hash with metrics served and scraped every SECONDS (metrics_load.py)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.runs, args.speed_seconds = 8 << 20, 2, 1
        args.evict = "fadvise"  # do not empty the page cache of everyone else on the machine
    skip = set(args.skip.split(","))
    print_header(argv)
    quiet_logs()
    with workdir(args.dir, "bench-hash-") as work:
        check_space(work, 2 * args.size)
        first, second = work / "a.bin", work / "b.bin"
        write_random(first, args.size)
        warm(first)
        if "warm" not in skip:
            warm_pass(first, args.size, args.runs, args.speed_seconds, args.metrics)
        if args.chunks:
            chunk_pass(first, args.size, args.runs, args.chunks)
        if "cold" not in skip:
            cold_pass(first, args.size, args.runs, args.evict)
        if "threads" not in skip:
            write_random(second, args.size)
            warm(second)
            threads_pass(first, second, args.size, args.runs)
    print("\nGB/s = 1e9 bytes/s; every ratio compares median throughputs of the same run")
    print_footer()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Hash while copying: time from the writer's close to the digest, following vs hashing after.

A writer process copies a GGUF-like file (a real GGUF header, random tensor bytes; in page
cache) into a drop folder, paced at each ``--rates`` value in MB/s (``0`` = as fast as it can),
and prints the monotonic time just after its ``close()``. Two cases, alternated per rate:

* ``follow``: the daemon's path. ``Followers.follow(path)`` is called as the copy starts (the
  daemon does so on the first event), a ``Follower`` thread feeds a ``FollowingHasher`` every
  ``follow.POLL_SECONDS``; at the writer's close, ``take(path).finish(size)`` gives the digest.
* ``hash after close``: ``sha256_file`` started at the close (what ``ollama create`` does).

Reported: latency = digest known - writer closed (the daemon's readiness wait is not part of
it), and the copy rate achieved. Bar: follow <= 50 ms when the copy is slower than the hash.

    .venv/bin/python bench/hash_follow.py [--size 2G] [--rates 200,0] [--runs 5] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import gguf
from common import (
    MiB,
    check_space,
    finish_f16_header,
    fmt_size,
    parse_size,
    print_footer,
    print_header,
    print_latencies,
    print_ratio,
    python,
    quiet_logs,
    warm,
    workdir,
    write_random,
)

from dropzone.imports.follow import POLL_SECONDS, Followers
from dropzone.imports.hashing import sha256_file

BAR_SECONDS = 0.05
# The writer: a separate process with nothing imported, copying in 1 MiB writes and sleeping
# to stay on its schedule; it prints "<close monotonic> <bytes> <copy seconds>" after close().
WRITER = """
import sys, time
src, dst, rate = sys.argv[1], sys.argv[2], float(sys.argv[3])
view = memoryview(bytearray(1 << 20))
written = 0
started = time.monotonic()
with open(src, "rb", buffering=0) as fin, open(dst, "wb", buffering=0) as fout:
    while n := fin.readinto(view):
        done = 0
        while done < n:
            done += fout.write(view[done:n])
        written += n
        if rate > 0:
            ahead = started + written / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
closed = time.monotonic()
print(repr(closed), written, repr(closed - started), flush=True)
"""


def make_gguf_like(path: Path, size: int) -> int:
    """A GGUF header whose tensors end near ``size``, then random tensor bytes; its length."""
    names = [f"blk.{b}.{t}.weight" for b in range(4) for t in ("ffn_up", "ffn_down")]
    per = max(64, (size - MiB) // len(names) // 64 * 64)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_file_type(1)
    expected = finish_f16_header(writer, path, names, per)
    header = path.read_bytes()
    body = path.with_suffix(".body")
    write_random(body, expected - len(header))
    with path.open("ab") as out, body.open("rb") as data:
        while chunk := data.read(8 * MiB):
            out.write(chunk)
    body.unlink()
    return expected


class Copy:
    """One paced copy by the writer process; ``closed()`` blocks until it has closed."""

    def __init__(self, src: Path, dst: Path, rate: float) -> None:
        command = [python(), "-c", WRITER, str(src), str(dst), str(rate)]
        self._proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)

    def closed(self) -> tuple[float, int, float]:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        self._proc.stdout.close()
        if self._proc.wait() != 0 or not line:
            raise SystemExit(f"writer failed with {self._proc.returncode}")
        closed, written, seconds = line.split()
        return float(closed), int(written), float(seconds)


def run_rate(
    src: Path, drop: Path, *, size: int, want: str, rate_mb: float, runs: int
) -> dict[str, list[float]]:
    rate = rate_mb * 1e6
    dst = drop / "model.gguf"
    copy_seconds: list[float] = []
    followers = Followers(threading.Semaphore(2), threading.Event())

    def follow() -> float:
        dst.unlink(missing_ok=True)
        copy = Copy(src, dst, rate)
        followers.follow(dst)  # as the daemon does on the first event for the path
        closed, written, seconds = copy.closed()
        follower = followers.take(dst)
        assert follower is not None
        result = follower.finish(written)
        latency = time.monotonic() - closed
        if result.digest != want or result.restarts:
            raise SystemExit(f"follow: {result.digest} restarts={result.restarts}, want {want}")
        copy_seconds.append(seconds)
        return latency

    def after_close() -> float:
        dst.unlink(missing_ok=True)
        copy = Copy(src, dst, rate)
        closed, _, seconds = copy.closed()
        digest = sha256_file(dst)
        latency = time.monotonic() - closed
        if digest != want:
            raise SystemExit(f"after close: {digest}, want {want}")
        copy_seconds.append(seconds)
        return latency

    cases: dict[str, Callable[[], float]] = {"follow": follow, "hash after close": after_close}
    label = f"{rate_mb:g} MB/s" if rate_mb > 0 else "full speed"
    print(f"\n== copy at {label}: {fmt_size(size)} GGUF-like, poll {POLL_SECONDS * 1e3:g} ms")
    results: dict[str, list[float]] = {name: [] for name in cases}
    for run in range(runs):
        for name in list(cases) if run % 2 == 0 else reversed(list(cases)):
            latency = cases[name]()
            results[name].append(latency)
            took = copy_seconds[-1]
            print(f"  run {run + 1}  {name:18s} close->digest {latency * 1e3:9.1f} ms"
                  f"   (copy {took:6.2f} s, {size / 1e9 / took:.2f} GB/s)", flush=True)  # fmt: skip
    dst.unlink(missing_ok=True)
    copy_rate = size / 1e9 / statistics.median(copy_seconds)
    print_latencies(f"close -> digest, copy at {label} (median copy {copy_rate:.2f} GB/s)", results)
    follow_s = statistics.median(results["follow"])
    after_s = statistics.median(results["hash after close"])
    print_ratio(f"follow / hash-after-close latency, {label}", follow_s / after_s)
    hash_rate = size / 1e9 / after_s
    if copy_rate < hash_rate:
        met = "met" if follow_s <= BAR_SECONDS else "MISSED"
        print(f"follow latency {follow_s * 1e3:.1f} ms, copy slower than hash"
              f" (bar <= {BAR_SECONDS * 1e3:g} ms: {met})")  # fmt: skip
    else:
        print(f"copy at {copy_rate:.2f} GB/s is not slower than hashing at {hash_rate:.2f} GB/s:"
              " the 50 ms bar does not apply")  # fmt: skip
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", type=parse_size, default=parse_size("2G"))
    parser.add_argument("--rates", default="200,0", help="MB/s list; 0 = full speed")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="16 MiB at 100 MB/s and full, 2 runs")
    parser.add_argument("--dir", type=Path, default=None, help="scratch folder (default: tmp)")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.runs, args.rates = 16 * MiB, 2, "100,0"
    print_header(argv)
    quiet_logs()
    with workdir(args.dir, "bench-follow-") as work:
        check_space(work, 2 * args.size)
        src, drop = work / "source.gguf", work / "drop"
        drop.mkdir()
        size = make_gguf_like(src, args.size)
        warm(src)
        want = sha256_file(src)
        for rate in (float(r) for r in args.rates.split(",")):
            run_rate(src, drop, size=size, want=want, rate_mb=rate, runs=args.runs)
    print_footer()
    return 0


if __name__ == "__main__":
    sys.exit(main())

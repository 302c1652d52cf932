"""Upload: dropzone's ``OllamaClient.push_blob`` vs ``curl -T``, to the emulator and to a
receiver that discards the body (the transport ceiling); and the sender's peak RSS by size.

Every sender runs as its own child process (peak RSS from ``wait4``), one after the other,
alternated in ABBA order within each target:

* ``push_blob``: a child that builds ``make_http_client()`` + ``OllamaClient`` and times
  ``push_blob(digest, file)`` (connect included, interpreter start-up and imports excluded).
* ``curl``: ``curl -sS -X POST -T FILE -H 'Expect:'``, timed by curl's ``%{time_total}``. The
  ``Expect:`` header is removed so that curl sends what push_blob sends (httpx never sends
  ``Expect: 100-continue``); ``curl+expect`` keeps curl's default for large files, costing one
  round trip (both receivers answer 100 as soon as the handler starts reading).

Targets: the emulator (``python -m dropzone.testing.ollama``; its blob is deleted before each
run so the body is really read, hashed and written) and ``bench/discard_receiver.py``.
Bars: push_blob >= 0.95x curl to the emulator and >= 1.0x curl to the discarding receiver.
RSS: push_blob to the discarding receiver at each ``--rss-sizes`` (the largest sparse);
bar: peak <= 64 MiB and the same at every size.

``--metrics SECONDS`` adds ``push_blob +metrics``: the same sender with a daemon's metrics on
in its process (served on loopback, scraped every SECONDS by another process, fed the upload's
events: ``metrics_load.py``), alternated with the others; ``--no-rss`` skips the RSS pass.

    .venv/bin/python bench/upload.py [--size 2G] [--runs 5] [--rss-sizes 256M,2G,8G] [--quick]
        [--metrics 1] [--no-rss]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

from common import (
    ROOT,
    ChildResult,
    MiB,
    Summary,
    alternate,
    check_space,
    fmt_size,
    free_port,
    parse_size,
    print_footer,
    print_header,
    print_ratio,
    print_times,
    python,
    run_child,
    server,
    show_run,
    size_list,
    speed_ratio,
    warm,
    workdir,
    write_random,
    write_sparse,
)

from dropzone.imports.hashing import sha256_file

RSS_BAR = 64 * MiB
# "The same at every size": what a few more pages of interpreter heap may add, not one chunk.
RSS_SPREAD = 2 * MiB
ANY_DIGEST = "sha256:" + "0" * 64  # the discarding receiver never checks it
PUSH_METRICS = "push_blob +metrics"


# The push_blob sender: a child importing only what the daemon's upload path needs, so its
# peak RSS is the interpreter, httpx, dropzone.ollama.client and the upload itself.
# The client is built before the clock starts, as the daemon builds it once (loading the CA
# bundle alone takes ~50 ms); the connection is opened inside, as curl's is.
# An optional fourth argument overrides dropzone.ollama.client.CHUNK_BYTES (``--chunks``; 0: not);
# a fifth turns a daemon's metrics on around the upload (``--metrics``, ``metrics_load.py``).
PUSH = """
import contextlib, re, sys, time
from pathlib import Path
import dropzone.ollama.client
from dropzone.ollama.client import OllamaClient, make_http_client
url, digest, path = sys.argv[1:4]
if len(sys.argv) > 4 and int(sys.argv[4]):
    dropzone.ollama.client.CHUNK_BYTES = int(sys.argv[4])
metrics = contextlib.nullcontext(None)
if len(sys.argv) > 5:
    sys.path.insert(0, "bench")
    from common import quiet_logs
    from metrics_load import metrics_on, upload_events
    quiet_logs()  # the endpoint's metrics.listening would land in the output parsed here
    metrics = metrics_on(float(sys.argv[5]))
with make_http_client() as http, metrics as emit:
    client = OllamaClient(url, http)
    cpu = time.process_time()
    started = time.perf_counter()
    created = client.push_blob(digest, path)
    if emit is not None:
        upload_events(emit, Path(path), digest, Path(path).stat().st_size,
                      time.perf_counter() - started)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu
status = open("/proc/self/status").read()
peak = int(re.search(r"^VmHWM:\\s+(\\d+) kB", status, re.MULTILINE).group(1)) * 1024
print(repr(seconds), 201 if created else 200, peak, repr(cpu))
"""


def push_blob(
    url: str, digest: str, path: Path, chunk: int | None = None, metrics: float | None = None
) -> ChildResult:
    extra = [] if chunk is None else [str(chunk)]
    if metrics is not None:
        extra = [str(chunk or 0), str(metrics)]
    return run_child([python(), "-c", PUSH, url, digest, str(path), *extra], cwd=ROOT)


def curl(url: str, digest: str, path: Path, *, expect: bool) -> ChildResult:
    command = ["curl", "-sS", "-o", "/dev/null", "-w", "%{time_total} %{http_code}"]
    command += ["-X", "POST", "-T", str(path)]
    if not expect:
        command += ["-H", "Expect:"]
    return run_child([*command, f"{url}/api/blobs/{digest}"])


def seconds_of(label: str, result: ChildResult) -> float:
    """The sender's own timing; the upload must have been read (201), not skipped (200)."""
    fields = result.stdout.split()
    if result.returncode != 0 or len(fields) < 2 or fields[1] != "201":
        raise SystemExit(f"{label} failed ({result.returncode}): {result.stdout} {result.stderr}")
    return float(fields[0])


def peak_of(result: ChildResult) -> int:
    """The peak RSS the sender printed itself (exact), else the sampled one."""
    fields = result.stdout.split()
    return int(fields[2]) if len(fields) > 2 else result.peak_rss


def cpu_of(result: ChildResult) -> float:
    """CPU seconds of the upload: as the sender measured it around the upload, else the whole
    child's (curl's start-up is a few milliseconds)."""
    fields = result.stdout.split()
    return float(fields[3]) if len(fields) > 3 else result.cpu_seconds


def upload_pass(
    title: str,
    url: str,
    digest: str,
    path: Path,
    *,
    runs: int,
    warmup: int,
    chunks: list[int],
    before: Callable[[], None],
    metrics: float | None = None,
) -> dict[str, list[float]]:
    size = path.stat().st_size
    rss: dict[str, int] = {}
    cpu: dict[str, list[float]] = {}

    def case(name: str, send: Callable[[], ChildResult]) -> Callable[[], float]:
        def run() -> float:
            before()
            result = send()
            rss[name] = max(rss.get(name, 0), peak_of(result))
            cpu.setdefault(name, []).append(cpu_of(result))
            return seconds_of(name, result)

        return run

    def with_chunk(chunk: int) -> Callable[[], ChildResult]:
        return lambda: push_blob(url, digest, path, chunk)

    cases = {
        "push_blob": case("push_blob", lambda: push_blob(url, digest, path)),
        "curl": case("curl", lambda: curl(url, digest, path, expect=False)),
        "curl+expect": case("curl+expect", lambda: curl(url, digest, path, expect=True)),
    }
    for chunk in chunks:
        name = chunk_case(chunk)
        cases[name] = case(name, with_chunk(chunk))
    if metrics is not None:
        sent = case(PUSH_METRICS, lambda: push_blob(url, digest, path, metrics=metrics))
        cases[PUSH_METRICS] = sent
    print(f"\n== upload to {title}: {fmt_size(size)}")
    results = alternate(runs, cases, show=show_run(size), warmup=warmup)
    print_times(f"upload to {title}", size, results)
    # Sender CPU is steadier than wall time on a shared machine: what the sender itself costs.
    print(f"  {'sender':28s} {'CPU s (median)':>15s} {'min-max':>13s} {'peak RSS MiB':>13s}")
    for name, peak in rss.items():
        s = Summary.of(cpu[name][warmup:])
        span = f"{s.low:.3f}-{s.high:.3f}"
        print(f"  {name:28s} {s.median:15.3f} {span:>13s} {peak / MiB:13.1f}")
    return results


def chunk_case(chunk: int) -> str:
    return f"push_blob {fmt_size(chunk)} chunks"


def rss_pass(url: str, work: Path, sizes: list[int], payload: Path) -> bool:
    """push_blob's peak RSS per file size, next to an empty upload (the interpreter's share)."""
    print("\n== sender peak RSS, push_blob to the discarding receiver (largest file sparse)")
    print(f"  {'file':>10s} {'push_blob MiB':>14s} {'curl MiB':>9s} {'push_blob s':>12s}")
    empty = work / "empty.bin"
    empty.write_bytes(b"")
    peaks = []
    for index, size in enumerate([0, *sizes]):
        if size == 0:
            path = empty
        elif size == payload.stat().st_size:
            path = payload
        else:
            path = work / f"rss-{size}.bin"
            if index == len(sizes):
                write_sparse(path, size)
            else:
                write_random(path, size)
                warm(path)
        pushed = push_blob(url, ANY_DIGEST, path)
        seconds = seconds_of("push_blob", pushed)
        curled = curl(url, ANY_DIGEST, path, expect=False)
        seconds_of("curl", curled)
        peak = peak_of(pushed)
        print(f"  {fmt_size(size) if size else '0 B':>10s} {peak / MiB:14.1f}"
              f" {peak_of(curled) / MiB:9.1f} {seconds:12.3f}", flush=True)  # fmt: skip
        if size:
            peaks.append(peak)
        if path not in (empty, payload):
            path.unlink()
    highest, spread = max(peaks), max(peaks) - min(peaks)
    low = highest <= RSS_BAR
    flat = spread <= RSS_SPREAD
    print(f"push_blob peak RSS {highest / MiB:.1f} MiB (bar <= {RSS_BAR // MiB} MiB:"
          f" {'met' if low else 'MISSED'}); spread over sizes {spread / MiB:.1f} MiB"
          f" (bar <= {RSS_SPREAD // MiB} MiB: {'met' if flat else 'MISSED'})")  # fmt: skip
    return low and flat


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", type=parse_size, default=parse_size("2G"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1, help="uncounted rounds per target")
    parser.add_argument(
        "--chunks", type=size_list, default=[], help="also push_blob with these CHUNK_BYTES"
    )
    parser.add_argument("--rss-sizes", type=size_list, default=size_list("256M,2G,8G"))
    parser.add_argument("--quick", action="store_true", help="8 MiB, 2 runs, RSS at 1M,4M")
    parser.add_argument("--dir", type=Path, default=None, help="scratch folder (default: tmp)")
    parser.add_argument(
        "--metrics",
        type=float,
        default=None,
        metavar="SECONDS",
        help="also push_blob with metrics served and scraped every SECONDS (metrics_load.py)",
    )
    parser.add_argument("--no-rss", action="store_true", help="skip the peak RSS pass")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.runs, args.rss_sizes, args.warmup = 8 * MiB, 2, [MiB, 4 * MiB], 0
    print_header(argv)
    with workdir(args.dir, "bench-upload-") as work:
        real = sum(s for s in args.rss_sizes[:-1] if s != args.size)
        check_space(work, 2 * args.size + real)  # the payload and the emulator's copy
        payload = work / "payload.bin"
        write_random(payload, args.size)
        warm(payload)
        digest = sha256_file(payload)
        store = work / "store"
        blob = store / "blobs" / digest.replace(":", "-")
        emu_port, discard_port = free_port(), free_port()
        emulator = [python(), "-m", "dropzone.testing.ollama", "--port", str(emu_port)]
        discard = [python(), str(ROOT / "bench/discard_receiver.py"), "--port", str(discard_port)]
        with server([*emulator, "--store", str(store)], emu_port), server(discard, discard_port):
            emu_url = f"http://127.0.0.1:{emu_port}"
            discard_url = f"http://127.0.0.1:{discard_port}"
            to_emulator = upload_pass(
                "the emulator", emu_url, digest, payload, runs=args.runs, warmup=args.warmup,
                chunks=args.chunks, before=lambda: blob.unlink(missing_ok=True),
                metrics=args.metrics,
            )  # fmt: skip
            to_discard = upload_pass(
                "the discarding receiver", discard_url, digest, payload, runs=args.runs,
                warmup=args.warmup, chunks=args.chunks, before=lambda: None,
                metrics=args.metrics,
            )  # fmt: skip
            blob.unlink(missing_ok=True)
            print()
            for title, results, bar in (
                ("emulator", to_emulator, 0.95),
                ("discarding receiver", to_discard, 1.0),
            ):
                ratio = speed_ratio(results, "push_blob", "curl")
                print_ratio(f"push_blob / curl, {title}", ratio, bar)
                ratio = speed_ratio(results, "push_blob", "curl+expect")
                print_ratio(f"push_blob / curl+expect, {title}", ratio)
                for chunk in args.chunks:
                    ratio = speed_ratio(results, chunk_case(chunk), "curl")
                    print_ratio(f"{chunk_case(chunk)} / curl, {title}", ratio)
                if args.metrics is not None:
                    ratio = speed_ratio(results, PUSH_METRICS, "push_blob")
                    print_ratio(f"{PUSH_METRICS} / push_blob, {title}", ratio)
            # Not a bar: how far the emulator sits below the transport ceiling (for curl).
            ceiling = statistics.median(to_discard["curl"]) / statistics.median(to_emulator["curl"])
            print_ratio("curl to emulator / curl to discarding receiver", ceiling)
            if not args.no_rss:
                rss_pass(discard_url, work, args.rss_sizes, payload)
    print_footer()
    return 0


if __name__ == "__main__":
    sys.exit(main())

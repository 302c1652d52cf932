"""Same host, no upload (issue 17): close -> model with the blob placed in the server's store
(reflink, hard link, in-kernel copy) vs the HTTP upload and vs the sequential pattern.

Each case is ``end_to_end.py``'s: a GGUF and a TOML sidecar copied at ``--rate`` MB/s into the
drop folder of the real ``python -m dropzone run`` process, a fresh emulator process, store,
drop and state folder per run, timed from the writer's close to ``model.created``. The host is
given as ``{url, models_dir = <the emulator's store>, local_import = <method>}``, as an operator
on the server's machine would set it:

* ``http``: no ``models_dir`` (the upload, today's behaviour);
* ``copy``: ``local_import = "copy"`` (``copy_file_range``, then the copy hashed back);
* ``link``: ``local_import = "link"`` with ``on_success = "delete"``;
* ``reflink``: ``local_import = "reflink"``, run on a loop-mounted XFS image (root and
  ``mkfs.xfs`` needed; left out, with the reason, where it cannot be mounted);
* ``sequential``: ``end_to_end.py``'s baseline (hash, ``push_blob``, ``create`` after the close).

``--cow-all`` also runs ``sequential``, ``http``, ``copy`` and ``link`` on the loop-mounted XFS
(``sequential@xfs`` …), drop folder and emulator's store both on the image, so that ``reflink``
has a reference on its own file system: a create on the loop device costs more than on the
disk below it, and a reflink measured against a sequential pattern on ext4 measures that too.
Each set's ratios are to its own ``sequential``.

``--before DIR`` adds ``copy@before``, ``link@before`` and ``reflink@before``: the same cases
with the daemon run from another checkout (a ``git worktree`` of an older commit), alternated
in the same run, to measure a change of the placement path.

Also printed: the peak disk used on the case's file system during the case, above what it
used at its start (the source file excluded): a reflink or a link adds no second copy.

    .venv/bin/python bench/local_import.py [--size 256M] [--rate 200] [--runs 1] [--quick]
        [--cow-all] [--before DIR] [--no-validate-gguf]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from common import (
    MiB,
    fmt_size,
    parse_size,
    print_header,
    print_ratio,
    quiet_logs,
    workdir,
)
from end_to_end import (
    DAEMON_SOURCE,
    SIDECAR,
    Case,
    DaemonRun,
    at,
    prepare_source,
    sequential_case,
    span,
)
from hash_follow import Copy

from dropzone.testing.cowfs import CowUnavailableError, loop_mounted_cow

BAR_PLACED = 0.5  # reflink, link: close -> model <= 0.5x sequential
BAR_COPY = 0.75
XFS = "@xfs"  # the case on the loop-mounted XFS image (reflink is always there)
Result = tuple[float, dict[str, float]]


def method_of(name: str) -> str:
    """``copy@xfs`` -> ``copy``; ``link@before`` -> ``link``."""
    return name.split("@", 1)[0]


def on_cow(name: str) -> bool:
    return name.startswith("reflink") or name.endswith(XFS)


class DiskPeak:
    """Samples the used bytes of a file system every 20 ms; ``peak`` above the start."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.peak = folder, 0
        self.start = self._used()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _used(self) -> int:
        st = os.statvfs(self.folder)
        return (st.f_blocks - st.f_bfree) * st.f_frsize

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._used() - self.start)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak, self._used() - self.start)


def daemon_case(method: str, source: Path | None = None) -> Callable[..., Result]:
    def run(case: Case, src: Path, want: str, rate: float, settle: float) -> Result:
        here = DAEMON_SOURCE["dir"]
        DAEMON_SOURCE["dir"] = source or here
        try:
            return measure(case, src, want, rate, settle)
        finally:
            DAEMON_SOURCE["dir"] = here

    def measure(case: Case, src: Path, want: str, rate: float, settle: float) -> Result:
        host: dict[str, str] = {"url": case.emulator.url}
        settings = {"settle_seconds": str(settle), "rescan_interval": "0"}
        if method != "http":
            host |= {"models_dir": str(case.root / "ollama"), "local_import": method}
        if method == "link":
            settings["on_success"] = "delete"
        settings["ollama_hosts"] = json.dumps([host])
        daemon = DaemonRun(
            case.root, drop=case.drop, state=case.state, hosts=[case.emulator.url],
            settings=settings,
        )  # fmt: skip
        try:
            daemon.wait_event("scan.done", timeout=60)
            (case.drop / "model.toml").write_text(SIDECAR.format(model=case.model))
            closed, _, _ = Copy(src, case.drop / "model.gguf", rate).closed()
            created = daemon.wait_count("model.created", 1, timeout=600)
            events = list(daemon.events)
            done = next(e for _, e in events if e.get("event") == "hash.done")
            if done["digest"] != want:
                raise SystemExit(f"dropzone hashed {done}, want {want}")
            moved = "blob.uploaded" if method == "http" else "blob.placed"
            got = [e for _, e in events if e.get("event") == moved]
            if not got or (method != "http" and got[0]["method"] != method):
                raise SystemExit(f"{method}: no {moved} with that method\n{daemon.tail()}")
            hashed, blob = at(events, "hash.done"), at(events, moved)
            ready = at(events, "artifact.ready")
            phases = {
                "hash finish (close -> hash.done)": hashed - closed,
                "settle (close -> artifact.ready)": ready - closed,
                f"blob (hash.done -> {moved})": blob - hashed,
                f"  of which the {moved} itself (its seconds)": float(got[0]["seconds"]),
                "create (later of ready, blob -> model.created)": created - max(ready, blob),
            }
            if any(e.get("event") == "blob.staged" for _, e in events):
                # Copied early, while the file settled; committed by the import of record.
                phases["  early copy done (hash.done -> blob.staged)"] = (
                    at(events, "blob.staged") - hashed
                )
            return created - closed, phases
        finally:
            daemon.stop_cleanly()

    return run


def print_ratios(
    order: list[str], totals: dict[str, list[float]], sequential: str, http: str
) -> None:
    """Each case of one set against that set's ``sequential`` (with the issue's bars) and
    its ``http``."""
    seq = statistics.median(totals[sequential])
    for name in (n for n in order if n != sequential):
        method = method_of(name)
        bar = BAR_COPY if method == "copy" else None if method == "http" else BAR_PLACED
        value = statistics.median(totals[name]) / seq
        label = f"{name} / {sequential}, close -> model"
        if bar is None:
            print_ratio(label, value)
        else:
            print_ratio(label, value, bar, at_most=True)
    base = statistics.median(totals[http])
    for name in (n for n in order if n not in (sequential, http)):
        print_ratio(f"{name} / {http}, close -> model", statistics.median(totals[name]) / base)


@contextlib.contextmanager
def cow_work(parent: Path, size: int) -> Iterator[Path | None]:
    try:
        with workdir(parent, "bench-cow-") as outer, loop_mounted_cow(outer, 5 * size) as mnt:
            yield mnt
    except CowUnavailableError as exc:
        print(f"reflink case left out: {exc}")
        yield None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", type=parse_size, default=parse_size("256M"))
    parser.add_argument("--rate", type=float, default=200.0, help="copy rate, MB/s (0 = full)")
    parser.add_argument("--runs", type=int, default=1, help="runs of each case")
    parser.add_argument("--settle", type=float, default=1.0, help="settle_seconds of the daemon")
    parser.add_argument("--quick", action="store_true", help="96 MiB, 1 run each")
    parser.add_argument("--no-reflink", action="store_true", help="skip the loop-mounted XFS")
    parser.add_argument(
        "--cow-all",
        action="store_true",
        help="also run sequential, http, copy and link on the loop-mounted XFS (a fair reflink)",
    )
    parser.add_argument("--dir", type=Path, default=None, help="scratch folder (default: tmp)")
    parser.add_argument(
        "--before", type=Path, default=None, help="also run the placement cases from this checkout"
    )
    parser.add_argument(
        "--no-validate-gguf",
        action="store_true",
        help="emulate a pre-0.30 server: its create reads the GGUF header only, copies nothing",
    )
    args = parser.parse_args(argv)
    if args.before is not None and not (args.before / "dropzone" / "__main__.py").exists():
        raise SystemExit(f"--before {args.before}: no dropzone/__main__.py there")
    if args.quick:
        args.size, args.runs = 96 * MiB, 1
    print_header(argv)
    quiet_logs()
    names = ["sequential", "http", "copy", "link", "reflink"]
    placed = names[2:]
    if args.before is not None:
        names += [f"{n}@before" for n in placed]
    if args.cow_all and not args.no_reflink:
        names += [f"{n}{XFS}" for n in names[:4]]
    totals: dict[str, list[float]] = {n: [] for n in names}
    disk: dict[str, list[int]] = {n: [] for n in names}
    phases: dict[str, dict[str, list[float]]] = {n: {} for n in names}
    cases: dict[str, Callable[..., Result]] = {"sequential": sequential_case}
    cases |= {n: daemon_case(n) for n in names[1:5]}
    cases |= {n: sequential_case if n == f"sequential{XFS}" else daemon_case(method_of(n))
              for n in names if n.endswith(XFS)}  # fmt: skip
    cases |= {f"{n}@before": daemon_case(n, args.before.resolve()) for n in placed if args.before}
    parent = args.dir or Path(os.environ.get("TMPDIR", "/tmp"))
    reflink = contextlib.nullcontext(None) if args.no_reflink else cow_work(parent, args.size)
    with workdir(args.dir, "bench-local-") as work, reflink as cow:
        src, size, want, rate, label = prepare_source(work, args.size, args.rate)
        where = "a loop-mounted XFS" if cow else "-"
        server = "pre-0.30 (no validation copy)" if args.no_validate_gguf else "v0.33"
        print(f"\n== {fmt_size(args.size)} GGUF ({size:,} B) + TOML sidecar, copied at {label},"
              f" settle_seconds={args.settle:g}; reflink case on {where};"
              f" server {server}")  # fmt: skip
        order = [n for n in names if not on_cow(n) or cow is not None]
        run = 0
        for i in range(args.runs):
            for name in order if i % 2 == 0 else list(reversed(order)):
                base = cow if on_cow(name) and cow is not None else work
                case = Case(base, run, validate_gguf=not args.no_validate_gguf)
                run += 1
                peak = DiskPeak(base)
                try:
                    total, parts = cases[name](case, src, want, rate, args.settle)
                finally:
                    used = peak.stop()
                    case.close()
                totals[name].append(total)
                disk[name].append(used)
                for part, seconds in parts.items():
                    phases[name].setdefault(part, []).append(seconds)
                print(f"  run {i + 1}  {name:10s} close -> model {total:7.3f} s"
                      f"   peak disk +{used / MiB:,.0f} MiB", flush=True)  # fmt: skip
    print("\nclose -> model created, seconds: median (min-max); peak disk above the start")
    for name in order:
        print(f"  {name:12s} {span(totals[name])}   +{max(disk[name]) / MiB:,.0f} MiB")
        for part, times in phases[name].items():
            print(f"    {part:48s} {span(times)}")
    # With the XFS set measured, reflink is read against it only (not against ext4's).
    reflinks = [n for n in order if n.startswith("reflink")]
    ext4 = [n for n in order if not n.endswith(XFS) and not (args.cow_all and n in reflinks)]
    print_ratios(ext4, totals, "sequential", "http")
    xfs = [n for n in order if n.endswith(XFS) or n in reflinks]
    if f"sequential{XFS}" in xfs:
        print(f"\nthe same on the loop-mounted XFS (each to sequential{XFS}):")
        print_ratios(xfs, totals, f"sequential{XFS}", f"http{XFS}")
    for name in (n for n in order if f"{n}@before" in order):
        now, before = (statistics.median(totals[n]) for n in (name, f"{name}@before"))
        print_ratio(f"{name} / {name}@before, close -> model", now / before)
    return 0


if __name__ == "__main__":
    sys.exit(main())

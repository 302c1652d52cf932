"""Scale: 10,000 small artifacts in 1,000 folders, imported, restarted over, and arriving at once.

The real ``python -m dropzone run`` process against the emulator in its own process (request
counts fetched from it), ``settle_seconds`` 1, every other setting at its default. Phases:

1. **import**: the tree is in the drop folder before the daemon starts (tiny GGUFs, 10 per
   folder, each with distinct bytes and a distinct derived name; dated an hour back, so
   nothing is still settling). Time from spawn to the last
   ``artifact.done`` (result ``done``); throughput; every model present on the server.
2. **restart**: the same state and server, a new daemon. *Idle* = the initial ``scan.done``
   has arrived and no work event (``artifact.ready``, ``hash.done``, ``blob.*``, ``model.*``,
   ``artifact.done``/``pending``/``error`` …) for ``--quiet`` seconds after it; start to idle is
   spawn -> the last of those events. Counted: hashes, uploads, creates, and every request the
   server saw (a HEAD per file would be a storm). Then CPU while idle for ``--idle`` seconds
   (``/proc/PID/stat`` utime+stime), one SIGHUP rescan's CPU (what every ``rescan_interval``
   costs), and the peak RSS (``VmHWM``). Bars: start to idle <= 10 s, idle CPU <= 1 % of a
   core, peak RSS <= 200 MiB.
3. **at once**: a fresh server, state and drop folder; the daemon idles on the empty folder,
   then the whole tree is written into it as fast as this script can. Time from the first
   write to the last ``artifact.done``; throughput; none lost.

With ``--profile``, py-spy samples the daemon during each phase and the heaviest functions
(inclusive share of samples) are printed; ``--cprofile`` also runs the daemon's
``reconcile(full=True)`` in this process under cProfile on the restart's state.

    .venv/bin/python bench/scale.py [--artifacts 10000] [--per-folder 10] [--idle 60] [--quick]
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import os
import pstats
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common import MiB, check_space, cpu_seconds, print_header, quiet_logs, workdir
from end_to_end import (
    WORK_EVENTS,
    DaemonRun,
    EmulatorProcess,
    Event,
    add_source_argument,
    span,
    use_source,
)

from dropzone.config.hosts import OllamaHost
from dropzone.config.settings import Settings
from dropzone.service.daemon import Daemon
from dropzone.testing.builders import build_gguf

START_IDLE_BAR = 10.0
IDLE_CPU_BAR = 1.0  # percent of one core
RSS_BAR = 200 * MiB
SETTLE = "1"
PY_SPY = Path(sys.executable).parent / "py-spy"


# --- the tree ---------------------------------------------------------------------------------


def template_gguf() -> bytes:
    """A valid 320-byte GGUF (one 64-element f16 tensor, data last)."""
    with tempfile.TemporaryDirectory() as tmp:
        return build_gguf(Path(tmp) / "m.gguf", n_tensors=1, tensor_elems=64).read_bytes()


def tree_files(count: int, per_folder: int) -> Iterator[tuple[str, str, bytes]]:
    """(folder, file name, bytes) of ``count`` artifacts: the template with its last 8 tensor
    bytes set to the artifact's number, so every blob differs; names differ, so every derived
    model name does (two artifacts claiming one name would both be refused)."""
    template = template_gguf()
    for i in range(count):
        folder = f"d{i // per_folder:04d}"
        yield folder, f"m{i:05d}.gguf", template[:-8] + i.to_bytes(8, "little")


def age_tree(drop: Path, seconds: float = 3600.0) -> None:
    """Date every file back: a tree that was "already there" is long settled."""
    when = time.time() - seconds
    for path in drop.rglob("*.gguf"):
        os.utime(path, (when, when))


def step_times(events: list[tuple[float, Event]]) -> dict[str, list[float]]:
    """Per artifact, the seconds between its consecutive work events (by arrival here)."""
    steps = ("artifact.ready", "hash.done", "blob.uploaded", "model.created", "artifact.done")
    seen: dict[str, dict[str, float]] = {}
    for t, e in events:
        name, path = e.get("event"), e.get("path")
        if name in steps and isinstance(path, str):
            seen.setdefault(path, {}).setdefault(str(name), t)
    out: dict[str, list[float]] = {}
    for times in seen.values():
        for a, b in itertools.pairwise(steps):
            if a in times and b in times:
                out.setdefault(f"{a} -> {b}", []).append(times[b] - times[a])
        if "artifact.ready" in times and "artifact.done" in times:
            out.setdefault("ready -> done", []).append(
                times["artifact.done"] - times["artifact.ready"]
            )
    return out


def print_steps(events: list[tuple[float, Event]], wall: float) -> None:
    steps = step_times(events)
    print("  per artifact, ms: median (min-max)")
    for name, values in steps.items():
        print(f"    {name:34s} {span(values, 1e3, 1)}")
    if "ready -> done" in steps:
        busy = sum(steps["ready -> done"])
        print(f"    artifacts in progress at once, on average: {busy / wall:.2f}")


def model_names(count: int) -> set[str]:
    return {f"m{i:05d}:latest" for i in range(count)}


def write_tree(drop: Path, count: int, per_folder: int) -> float:
    """Write the tree; the seconds it took."""
    started = time.monotonic()
    made: set[str] = set()
    for folder, name, data in tree_files(count, per_folder):
        if folder not in made:
            (drop / folder).mkdir()
            made.add(folder)
        (drop / folder / name).write_bytes(data)
    return time.monotonic() - started


# --- profiling --------------------------------------------------------------------------------


@contextmanager
def sampled(pid: int, out: Path | None, seconds: float) -> Iterator[None]:
    """py-spy, sampling ``pid`` for at most ``seconds``: only samples of the thread holding
    the GIL (``--gil``), so shares are of the Python CPU time, not of threads waiting."""
    if out is None:
        yield
        return
    command = [str(PY_SPY), "record", "--pid", str(pid), "--format", "raw", "--rate", "100"]
    command += ["--gil"]
    command += ["--duration", str(max(1, int(seconds))), "--output", str(out), "--nonblocking"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)  # py-spy writes what it has on SIGINT
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# Frames every sample of a thread passes through: they say nothing about where time goes.
_PLUMBING = re.compile(
    r"^(_run_module_as_main|_run_code|<module>|main|execute|Thread\.\w+|Workers\._work"
    r"|Workers\.submit\.<locals>\.<lambda>|BaseServer\.\w+|EventEmitter\.run) "
)


def top_functions(raw: Path, n: int = 18) -> list[tuple[float, float, str]]:
    """(inclusive %, own %, function) from py-spy's collapsed stacks, plumbing left out."""
    if not raw.exists():
        return []
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_frame(f) for f in stack.split(";") if " (" in f]
        for frame in set(frames):
            inclusive[frame] += count
        if frames:
            own[frames[-1]] += count
    if not total:
        return []
    ranked = [(f, c) for f, c in inclusive.most_common() if not _PLUMBING.match(f)]
    return [(100.0 * c / total, 100.0 * own[f] / total, f) for f, c in ranked[:n]]


def _frame(text: str) -> str:
    """``Daemon.reconcile (dropzone/service/daemon.py:301)`` -> ``Daemon.reconcile (daemon.py)``."""
    name, _, where = text.partition(" (")
    return f"{name} ({where.split(':')[0].split('/')[-1].rstrip(')')})"


def print_profile(title: str, raw: Path | None) -> None:
    if raw is None:
        return
    print(f"\n  py-spy --gil, {title}: % of samples (the thread holding the GIL)")
    print(f"    {'inclusive':>9s} {'own':>6s}  function")
    for share, mine, frame in top_functions(raw):
        print(f"    {share:8.1f}% {mine:5.1f}%  {frame}")


def profile_reconcile(drop: Path, state: Path, url: str, count: int) -> None:
    """cProfile of the daemon's ``reconcile(full=True)`` in this process, on the restart's
    state (every artifact done, so it starts no work): a cold pass (empty header cache, as
    at start) and a warm one (as every later hint and rescan)."""
    print(f"\n== in-process Daemon.reconcile(full=True) over {count:,} imported artifacts")
    host = OllamaHost(url=url)
    settings = Settings(drop_dir=drop, state_dir=state, ollama_hosts=(host,), settle_seconds=1)
    daemon = Daemon(settings, env={})
    try:
        for label in ("cold", "warm"):
            profiler = cProfile.Profile()
            started = time.perf_counter()
            profiler.enable()
            daemon.reconcile(full=True)
            profiler.disable()
            took = time.perf_counter() - started
            busy = len(daemon.dispatcher.busy())
            print(f"  {label}: {took:.3f} s ({took / count * 1e3:.3f} ms per artifact; under"
                  f" cProfile), jobs started {busy}")  # fmt: skip
            stats = pstats.Stats(profiler)
            rows = sorted(stats.stats.items(), key=lambda kv: kv[1][3], reverse=True)  # type: ignore[attr-defined]
            print(f"    {'cumulative s':>12s} {'own s':>8s} {'calls':>9s}  function")
            for (file, line, name), (_, calls, own, cum, _) in rows[:18]:
                where = f"{Path(file).parent.name}/{Path(file).name}:{line}" if line else file
                print(f"    {cum:12.3f} {own:8.3f} {calls:9d}  {name} ({where})")
    finally:
        daemon._shutdown()


# --- phases -----------------------------------------------------------------------------------


def import_phase(work: Path, drop: Path, state: Path, emulator: EmulatorProcess, *, count: int,
                 timeout: float, profile: Path | None) -> None:  # fmt: skip
    print(f"\n== 1. import: {count:,} artifacts already in the drop folder, daemon starts")
    server_cpu = cpu_seconds(emulator.pid)
    daemon = DaemonRun(work, drop=drop, state=state, hosts=[emulator.url],
                       settings={"settle_seconds": SETTLE})  # fmt: skip
    try:
        with sampled(daemon.pid, profile, timeout):
            last = daemon.wait_count("artifact.done", count, timeout=timeout, result="done")
        server_cpu = cpu_seconds(emulator.pid) - server_cpu
        started = daemon.wait_event("daemon.started")[0]
        scanned, scan = daemon.wait_event("scan.done")
        cpu = cpu_seconds(daemon.pid)
        rss = daemon.peak_rss()
        events = daemon.names()
        timeline = list(daemon.events)
    finally:
        code = daemon.stop(timeout=120)
    models = set(emulator.models())
    lost = model_names(count) - models
    took = last - daemon.started
    print(f"  spawn -> daemon.started {started - daemon.started:.2f} s, -> scan.done"
          f" {scanned - daemon.started:.2f} s (scan {scan['seconds']} s),"
          f" -> last artifact.done {took:.1f} s")  # fmt: skip
    print(f"  throughput: {count / took:.1f} artifacts/s (spawn to last done);"
          f" {count / (last - started):.1f} artifacts/s from daemon.started")  # fmt: skip
    print(f"  daemon CPU {cpu:.1f} s ({cpu / took:.0%} of one core, {cpu / count * 1e3:.1f} ms"
          f" per artifact), peak RSS {rss / MiB:.1f} MiB (bar <= {RSS_BAR // MiB} MiB:"
          f" {'met' if rss <= RSS_BAR else 'MISSED'})")  # fmt: skip
    print(f"  emulator CPU {server_cpu:.1f} s ({server_cpu / took:.0%} of one core)")
    print(f"  events: {dict(sorted((k, v) for k, v in events.items() if k in WORK_EVENTS))}")
    print_steps(timeline, last - scanned)
    print(f"  models on the server: {len(models & model_names(count)):,} of {count:,};"
          f" lost {len(lost)}; exit {code}")  # fmt: skip
    print_profile("import", profile)
    if lost or code != 0:
        raise SystemExit(f"import lost {sorted(lost)[:10]} or exited {code}")


def idle_window(daemon: DaemonRun, seconds: float) -> tuple[float, Counter[str]]:
    """CPU of the daemon over ``seconds`` (percent of one core) and the events meanwhile.
    The fixed window is the measurement itself, not a wait for something."""
    mark, cpu0, t0 = daemon.mark(), cpu_seconds(daemon.pid), time.monotonic()
    time.sleep(seconds)
    cpu1, t1 = cpu_seconds(daemon.pid), time.monotonic()
    return 100 * (cpu1 - cpu0) / (t1 - t0), daemon.names(mark)


def restart_phase(work: Path, drop: Path, state: Path, emulator: EmulatorProcess, *,
                  count: int, quiet: float, idle: float, profile: Path | None) -> None:  # fmt: skip
    print(f"\n== 2. restart over {count:,} imported artifacts")
    emulator.reset()
    daemon = DaemonRun(work, drop=drop, state=state, hosts=[emulator.url],
                       settings={"settle_seconds": SETTLE})  # fmt: skip
    try:
        with sampled(daemon.pid, profile, 120 + count * 0.2):
            went_idle = daemon.wait_idle(quiet, timeout=300 + count * 0.2)
        start_idle = went_idle - daemon.started
        started = daemon.wait_event("daemon.started")[0]
        scanned, scan = daemon.wait_event("scan.done")
        requests = emulator.requests()
        busy = daemon.names()
        spun = profile.with_suffix(".idle.raw") if profile else None
        with sampled(daemon.pid, spun, min(idle, 10)):
            idle_pct, during = idle_window(daemon, idle)
        idle_requests = emulator.requests() - requests
        mark = daemon.mark()
        before = cpu_seconds(daemon.pid)
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_event("scan.done", since=mark, timeout=120 + count * 0.2)
        rescan_cpu = cpu_seconds(daemon.pid) - before
        rescan = daemon.names(mark)
        seconds = next(e for _, e in daemon.events[mark:] if e.get("event") == "scan.done")
        after_pct, after_events = idle_window(daemon, idle)
        rss = daemon.peak_rss()
    finally:
        code = daemon.stop(timeout=120)
    work_seen = {k: v for k, v in busy.items() if k in WORK_EVENTS}
    print(f"  spawn -> daemon.started {started - daemon.started:.2f} s, -> scan.done"
          f" {scanned - daemon.started:.2f} s (reconcile {scan['seconds']} s),"
          f" idle ({quiet:g} s without work) from {start_idle:.2f} s")  # fmt: skip
    met = "met" if start_idle <= START_IDLE_BAR else "MISSED"
    print(f"  start -> idle: {start_idle:.2f} s (bar <= {START_IDLE_BAR:g} s: {met})")
    print(f"  work events until idle: {work_seen or 'none'};"
          f" hash.done {busy['hash.done']}, blob.uploaded {busy['blob.uploaded']},"
          f" model.created {busy['model.created']}")  # fmt: skip
    heads = sum(v for k, v in requests.items() if k.startswith("HEAD"))
    print(f"  server requests until idle: {dict(requests)} (HEAD: {heads})")
    met = "met" if idle_pct <= IDLE_CPU_BAR else "MISSED"
    print(f"  idle CPU over {idle:g} s: {idle_pct:.2f} % of one core (bar <= {IDLE_CPU_BAR:g} %:"
          f" {met}); events meanwhile: {dict(during) or 'none'};"
          f" requests meanwhile: {dict(idle_requests) or 'none'}")  # fmt: skip
    after = {k: v for k, v in rescan.items() if k in WORK_EVENTS}
    print(f"  one full rescan (SIGHUP): reconcile {seconds['seconds']} s, daemon CPU"
          f" {rescan_cpu:.2f} s = {100 * rescan_cpu / 300:.2f} % of a core at the default"
          f" rescan_interval 300 s; work events after it: {after or 'none'}")  # fmt: skip
    met = "met" if after_pct <= IDLE_CPU_BAR else "MISSED"
    print(f"  idle CPU over {idle:g} s after that rescan: {after_pct:.2f} % of one core"
          f" (bar: {met}); events meanwhile: {dict(after_events) or 'none'}")  # fmt: skip
    met = "met" if rss <= RSS_BAR else "MISSED"
    print(f"  peak RSS {rss / MiB:.1f} MiB (bar <= {RSS_BAR // MiB} MiB: {met}); exit {code}")
    print_profile("restart until idle", profile)
    print_profile("idle (first 10 s)", spun)


def at_once_phase(work: Path, count: int, per_folder: int, timeout: float,
                  profile: Path | None) -> None:  # fmt: skip
    print(f"\n== 3. the same {count:,} arriving at once into a watched, empty drop folder")
    root = work / "at-once"
    drop, state = root / "drop", root / "state"
    drop.mkdir(parents=True)
    emulator = EmulatorProcess(root / "ollama")
    try:
        daemon = DaemonRun(root, drop=drop, state=state, hosts=[emulator.url],
                           settings={"settle_seconds": SETTLE})  # fmt: skip
        try:
            daemon.wait_event("scan.done", timeout=60)
            server_cpu = cpu_seconds(emulator.pid)
            first = time.monotonic()
            wrote = write_tree(drop, count, per_folder)
            with sampled(daemon.pid, profile, timeout):
                last = daemon.wait_count("artifact.done", count, timeout=timeout, result="done")
            server_cpu = cpu_seconds(emulator.pid) - server_cpu
            rss = daemon.peak_rss()
            cpu = cpu_seconds(daemon.pid)
            events = daemon.names()
            timeline = list(daemon.events)
        finally:
            code = daemon.stop(timeout=120)
        models = set(emulator.models())
    finally:
        emulator.stop()
    lost = model_names(count) - models
    took = last - first
    print(f"  writing the tree took {wrote:.2f} s;"
          f" first write -> last artifact.done {took:.1f} s")  # fmt: skip
    print(f"  throughput: {count / took:.1f} artifacts/s; daemon CPU {cpu:.1f} s; peak RSS"
          f" {rss / MiB:.1f} MiB; full scans (scan.done) {events['scan.done']}")  # fmt: skip
    print(f"  emulator CPU {server_cpu:.1f} s ({server_cpu / took:.0%} of one core)")
    print(f"  events: {dict(sorted((k, v) for k, v in events.items() if k in WORK_EVENTS))}")
    print_steps(timeline, took)
    print(f"  models on the server: {len(models & model_names(count)):,} of {count:,};"
          f" lost {len(lost)}; exit {code}")  # fmt: skip
    print_profile("arrival at once", profile)
    if lost or code != 0:
        raise SystemExit(f"arrival lost {sorted(lost)[:10]} or exited {code}")


def add_tree_arguments(parser: argparse.ArgumentParser) -> None:
    """The tree of ``write_tree`` and the idle window: shared with ``polling.py``."""
    parser.add_argument("--artifacts", type=int, default=10_000)
    parser.add_argument("--per-folder", type=int, default=10)
    parser.add_argument("--idle", type=float, default=60.0, help="idle CPU window, seconds")
    parser.add_argument("--quiet", type=float, default=2.0, help="seconds without work = idle")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_tree_arguments(parser)
    parser.add_argument("--skip", default="", help="comma list of: import,restart,at-once")
    parser.add_argument("--profile", action="store_true", help="sample the daemon with py-spy")
    parser.add_argument(
        "--cprofile", action="store_true", help="also cProfile reconcile in this process"
    )
    parser.add_argument("--quick", action="store_true", help="50 artifacts, 3 s idle")
    parser.add_argument("--dir", type=Path, default=None, help="scratch folder (default: tmp)")
    add_source_argument(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.artifacts, args.per_folder, args.idle, args.quiet = 50, 5, 3.0, 1.0
    skip = set(args.skip.split(","))
    print_header(argv)
    use_source(args)
    quiet_logs()
    timeout = 120 + args.artifacts * 0.5
    with workdir(args.dir, "bench-scale-") as work:
        check_space(work, 64 * 1024 * args.artifacts)  # files, blobs, manifests: ~4 KiB pages
        drop, state = work / "drop", work / "state"
        drop.mkdir()
        wrote = write_tree(drop, args.artifacts, args.per_folder)
        age_tree(drop)
        print(f"\ntree: {args.artifacts:,} GGUFs of 320 B in {args.artifacts // args.per_folder:,}"
              f" folders, written in {wrote:.2f} s")  # fmt: skip
        emulator = EmulatorProcess(work / "ollama")
        try:
            if "import" not in skip:
                profile = work / "import.raw" if args.profile else None
                import_phase(work, drop, state, emulator, count=args.artifacts, timeout=timeout,
                             profile=profile)  # fmt: skip
            if "restart" not in skip:
                profile = work / "restart.raw" if args.profile else None
                restart_phase(work, drop, state, emulator, count=args.artifacts,
                              quiet=args.quiet, idle=args.idle, profile=profile)  # fmt: skip
            if args.cprofile:
                profile_reconcile(drop, state, emulator.url, args.artifacts)
        finally:
            emulator.stop()
        if "at-once" not in skip:
            profile = work / "at-once.raw" if args.profile else None
            at_once_phase(work, args.artifacts, args.per_folder, timeout, profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())

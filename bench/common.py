"""Shared helpers for dropzone's benchmarks: sizes, alternated runs, medians, child processes.

Every benchmark alternates its cases within one run (ABBA order) and reports ratios against a
reference measured in that same run: absolute rates drift on a shared machine, ratios hold.
The scripts run as ``.venv/bin/python bench/<name>.py``, so this module is imported as
``common`` (the script's own folder is first on ``sys.path``).
"""

from __future__ import annotations

import logging
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import structlog

from dropzone.formats.gguf import read_header_file

if TYPE_CHECKING:
    import gguf

ROOT = Path(__file__).resolve().parent.parent
KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
_UNITS = {"": 1, "K": KiB, "M": MiB, "G": GiB, "T": 1 << 40}
# One random block repeated: incompressible enough for SHA-256 and sockets, cheap to write.
_BLOCK = 64 * MiB


def parse_size(text: str) -> int:
    """``"2G"``, ``"256M"``, ``"64K"``, ``"1.5G"`` or plain bytes (binary units)."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]?)(?:i?B)?\s*", text.upper())
    if not match:
        raise ValueError(f"not a size: {text!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def size_list(text: str) -> list[int]:
    return [parse_size(part) for part in text.split(",") if part.strip()]


def fmt_size(n: int) -> str:
    for unit in ("T", "G", "M", "K"):
        if n >= _UNITS[unit] and n % _UNITS[unit] == 0:
            return f"{n // _UNITS[unit]} {unit}iB"
    for unit in ("T", "G", "M", "K"):
        if n >= _UNITS[unit]:
            return f"{n / _UNITS[unit]:.2f} {unit}iB ({n} B)"
    return f"{n} B"


def gb_s(size: int, seconds: float) -> float:
    """Decimal GB/s, the unit of ``openssl speed`` and of the issue's figures."""
    return size / 1e9 / seconds


@dataclass(frozen=True)
class Summary:
    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        return cls(statistics.median(values), min(values), max(values), len(values))


def alternate(
    runs: int,
    cases: Mapping[str, Callable[[], float]],
    *,
    show: Callable[[int, str, float], None] | None = None,
    warmup: int = 0,
) -> dict[str, list[float]]:
    """Run every case ``runs`` times, forward order on even runs and reversed on odd ones, so
    neither warms up nor cools down the machine for the other. Each case returns its own
    measured seconds (setup such as dropping caches or deleting a blob stays outside it).
    ``warmup`` rounds run first and are not counted (first connections, a server's first
    request, files entering the page cache)."""
    for _ in range(warmup):
        for name, case in cases.items():
            seconds = case()
            print(f"  warm-up  {name:28s} {seconds:8.3f} s (not counted)", flush=True)
    results: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for run in range(runs):
        for name in names if run % 2 == 0 else reversed(names):
            seconds = cases[name]()
            results[name].append(seconds)
            if show is not None:
                show(run, name, seconds)
    return results


def show_run(size: int) -> Callable[[int, str, float], None]:
    def show(run: int, name: str, seconds: float) -> None:
        print(f"  run {run + 1}  {name:28s} {seconds:8.3f} s  {gb_s(size, seconds):6.2f} GB/s",
              flush=True)  # fmt: skip

    return show


def print_times(title: str, size: int, results: Mapping[str, Sequence[float]]) -> None:
    """One row per case: median seconds, min-max, and the rate at the median."""
    print(f"\n{title}")
    print(f"  {'case':28s} {'median s':>9s} {'min-max s':>17s} {'GB/s':>6s} {'GB/s range':>13s}")
    for name, values in results.items():
        s = Summary.of(values)
        span = f"{s.low:.3f}-{s.high:.3f}"
        rates = f"{gb_s(size, s.high):.2f}-{gb_s(size, s.low):.2f}"
        print(f"  {name:28s} {s.median:9.3f} {span:>17s} {gb_s(size, s.median):6.2f} {rates:>13s}")


def print_latencies(title: str, results: Mapping[str, Sequence[float]]) -> None:
    """One row per case: median and min-max, in milliseconds."""
    print(f"\n{title}")
    print(f"  {'case':28s} {'median ms':>10s} {'min-max ms':>19s}")
    for name, values in results.items():
        s = Summary.of(values)
        span = f"{s.low * 1e3:.1f}-{s.high * 1e3:.1f}"
        print(f"  {name:28s} {s.median * 1e3:10.1f} {span:>19s}")


def print_ratio(
    label: str, value: float, bar: float | None = None, *, at_most: bool = False
) -> bool:
    """Print ``ratio <label>: <value>`` and whether the bar is met; return that."""
    if bar is None:
        print(f"ratio {label}: {value:.3f}")
        return True
    met = value <= bar if at_most else value >= bar
    sign = "<=" if at_most else ">="
    print(f"ratio {label}: {value:.3f} (bar {sign} {bar}: {'met' if met else 'MISSED'})")
    return met


def speed_ratio(results: Mapping[str, Sequence[float]], fast: str, reference: str) -> float:
    """Throughput of ``fast`` over ``reference`` (same bytes), from median times."""
    return statistics.median(results[reference]) / statistics.median(results[fast])


# --- the machine ------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    model = re.search(r"^model name\s*:\s*(.+)$", info, re.MULTILINE)
    sha_ni = re.search(r"^flags\s*:.*\bsha_ni\b", info, re.MULTILINE)
    name = model.group(1).strip() if model else "unknown CPU"
    return name + (" (SHA-NI)" if sha_ni else "")


def machine() -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"nproc={os.cpu_count()}, {cpu_model()}, Linux {platform.release()}, "
        f"Python {platform.python_version()}, load average {load}"
    )


def print_footer() -> None:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average at the end: {load}", flush=True)


def quiet_logs() -> None:
    """Only warnings from dropzone's structlog events: debug lines would interleave the table."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def print_header(argv: Sequence[str] | None = None) -> None:
    """Print the command line and the machine; make SIGTERM unwind, so that scratch files are
    deleted (a background job of a non-interactive shell ignores SIGINT)."""
    signal.signal(signal.SIGTERM, _terminated)
    args = " ".join(argv if argv is not None else sys.argv[1:])
    print(f"command: .venv/bin/python {Path(sys.argv[0]).as_posix()} {args}".rstrip())
    print(f"machine: {machine()}", flush=True)


# --- files and caches -------------------------------------------------------------------------


@contextmanager
def workdir(parent: Path | None, prefix: str) -> Iterator[Path]:
    """A scratch directory, removed afterwards (big files must not outlive the benchmark)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def check_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed + GiB:
        raise SystemExit(f"{folder}: {fmt_size(free)} free, need {fmt_size(needed)} + 1 GiB")


def write_random(path: Path, size: int, *, block: int = _BLOCK) -> None:
    """``size`` bytes: one random block, repeated (each copy tagged with its index)."""
    data = bytearray(os.urandom(min(block, max(size, 1))))
    with open(path, "wb", buffering=0) as f:
        written = index = 0
        while written < size:
            data[:8] = index.to_bytes(8, "little")
            n = min(len(data), size - written)
            f.write(memoryview(data)[:n])
            written += n
            index += 1


def finish_f16_header(writer: gguf.GGUFWriter, path: Path, names: Sequence[str], per: int) -> int:
    """Add ``names`` to ``writer`` (opened on ``path``) as F16 tensors of ``per`` bytes each (a
    multiple of 64: whole aligned blocks), write the header and close; the expected file length,
    as dropzone reads it. The caller writes or allocates the tensor data."""
    for name in names:
        writer.add_tensor_info(name, (per // 2,), np.dtype(np.float16), per)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    return read_header_file(path).expected_length


def write_sparse(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        f.truncate(size)


def warm(path: Path) -> None:
    """Read the file once so it sits in the page cache."""
    view = memoryview(bytearray(4 * MiB))
    with open(path, "rb", buffering=0) as f:
        while f.readinto(view):
            pass


def evict(path: Path, how: str) -> None:
    """Make the next read of ``path`` come from disk.

    ``drop_caches`` (root): ``sync; echo 3 > /proc/sys/vm/drop_caches``, the whole machine.
    ``fadvise``: ``POSIX_FADV_DONTNEED`` on this file only, after an fsync (no root needed,
    leaves other processes' caches alone; used by ``--quick``).
    """
    if how == "drop_caches":
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def default_evict() -> str:
    return "drop_caches" if os.geteuid() == 0 else "fadvise"


# --- child processes --------------------------------------------------------------------------


@dataclass(frozen=True)
class ChildResult:
    returncode: int
    stdout: str
    stderr: str
    peak_rss: int  # bytes: the child's VmHWM, last read before it exited
    seconds: float  # wall clock from spawn to exit
    cpu_seconds: float  # user + system time of the child (wait4), start-up included


def vm_hwm(pid: int | str) -> int | None:
    """Peak resident set (``VmHWM``) of a live process in bytes; None once it has exited."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) * KiB if match else None


def run_child(command: Sequence[str], *, cwd: Path | None = None) -> ChildResult:
    """Run ``command`` and return its output and its own peak RSS.

    Neither ``getrusage(RUSAGE_CHILDREN)`` nor ``wait4`` can give the peak: ``ru_maxrss`` keeps
    the high-water mark of the memory image replaced by ``exec``, and subprocess's vfork child
    execs from this process's image, so every child would report at least our own peak. The
    child's ``VmHWM`` starts afresh at ``exec``; it only grows, so reading it every few
    milliseconds until the child exits loses at most a peak reached in its last moments
    (a sender that knows better prints ``VmHWM`` itself; see ``own_peak``).
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(list(command), stdout=out, stderr=err, cwd=cwd)
        peak = 0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            peak = max(peak, vm_hwm(proc.pid) or 0)
            time.sleep(0.005)  # sampling a running process: there is no event to wait on
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return ChildResult(
            proc.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            peak,
            seconds,
            usage.ru_utime + usage.ru_stime,
        )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (all its threads), from ``/proc/PID/stat``."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def own_peak() -> int:
    """This process's ``VmHWM`` in bytes (for a child to print just before it exits)."""
    return vm_hwm("self") or 0


def python() -> str:
    return sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"server on port {port} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)  # polling a port that is not listening yet: nothing to wait on


@contextmanager
def server(command: Sequence[str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    """Start a loopback server process, wait until it accepts connections, stop it after."""
    proc = subprocess.Popen(list(command), cwd=ROOT, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

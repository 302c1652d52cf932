"""End to end, drop to model: a GGUF with a TOML sidecar copied into a running ``dropzone run``,
timed from the writer's close to ``model.created``, vs the same steps done after the close.

Two cases per run, alternated (ABBA), each with a fresh emulator store, drop folder and state
folder, so every run really hashes, uploads and creates:

* ``dropzone``: the real ``python -m dropzone run`` process (JSON events on stdout, each stamped
  on arrival here) watches an empty drop folder; the sidecar is written, then a writer process
  copies the GGUF in at ``--rate`` MB/s. Time = arrival of ``model.created`` - writer's close.
  The events split it: close -> ``hash.done`` (the follower's last bytes) -> ``blob.uploaded``
  (HEAD + upload, started early: during the settle wait); close -> ``artifact.ready`` (the
  settle wait, ``settle_seconds`` or the 1 s close-after-write shortcut, and any upload still
  running then); the later of the two -> ``model.created`` (HEAD again, create, show).
* ``sequential``: the same copy; after its close this script does what ``ollama create`` does:
  ``sha256_file``, then ``OllamaClient.push_blob``, then ``OllamaClient.create`` (the same
  request dropzone sends: name, system, parameters, files).

The emulator runs as its own process (``python -m dropzone.testing.ollama``), so neither case
shares a GIL with it. Bar: dropzone <= 0.7x sequential. Also printed: the floor for any design
that must know the digest before uploading (upload + create, from the sequential runs).

    .venv/bin/python bench/end_to_end.py [--size 2G] [--rate 200] [--runs 3] [--settle 1] [--quick]

This module also holds the process drivers that ``scale.py`` and ``polling.py`` use
(``DaemonRun``, ``EmulatorProcess``, ``add_source_argument``): the daemon and the emulator as
child processes, which only these three need (``common.py`` serves every script).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from common import (
    ROOT,
    MiB,
    Summary,
    check_space,
    fmt_size,
    free_port,
    parse_size,
    print_header,
    print_ratio,
    python,
    quiet_logs,
    vm_hwm,
    wait_listening,
    warm,
    workdir,
)
from hash_follow import Copy, make_gguf_like

from dropzone.imports.hashing import sha256_file
from dropzone.ollama.client import OllamaClient, make_http_client

BAR_RATIO = 0.7
Event = dict[str, Any]
# Where ``python -m dropzone`` runs from (its working directory is first on sys.path): this
# checkout, or another one given with ``--src`` to compare two versions of the daemon.
DAEMON_SOURCE = {"dir": ROOT}
# Events that mean the daemon is doing (or deciding) work for an artifact; "idle" is their
# absence. artifact.detected is not one: a restart logs it once per artifact while it lists.
WORK_EVENTS = frozenset(
    {
        "artifact.ready",
        "artifact.pending",
        "artifact.invalid",
        "sidecar.invalid",
        "hash.progress",
        "hash.done",
        "blob.exists",
        "blob.upload.progress",
        "blob.uploaded",
        "model.create.status",
        "model.created",
        "model.failed",
        "artifact.done",
        "artifact.error",
        "retry.scheduled",
    }
)


# --- the daemon and emulator processes (shared with scale.py and polling.py) -----------------


class DaemonRun:
    """``python -m dropzone run`` configured through ``DROPZONE_*`` only, its JSON events read
    by a thread and stamped with ``time.monotonic()`` on arrival (the clock the writer and
    this script use too)."""

    def __init__(
        self,
        work: Path,
        *,
        drop: Path,
        state: Path,
        hosts: Sequence[str],
        settings: Mapping[str, str] | None = None,
    ) -> None:
        config = work / "dropzone.toml"
        config.write_text("")  # a stray /etc/dropzone/dropzone.toml must not leak in
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DROPZONE_", "OLLAMA_", "NOTIFY_SOCKET", "WATCHDOG_"))
        }
        env.update(
            PYTHONUNBUFFERED="1",
            DROPZONE_CONFIG=str(config),
            DROPZONE_DROP_DIR=str(drop),
            DROPZONE_STATE_DIR=str(state),
            DROPZONE_OLLAMA_HOSTS=",".join(hosts),
            DROPZONE_LOG_FORMAT="json",
        )
        env.update({f"DROPZONE_{k.upper()}": v for k, v in (settings or {}).items()})
        self._cond = threading.Condition()
        self.events: list[tuple[float, Event]] = []
        self._stderr = (work / "dropzone.stderr").open("wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [python(), "-m", "dropzone", "run"],
            cwd=DAEMON_SOURCE["dir"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        self.pid = self.proc.pid
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout as out:
            for raw in out:
                now = time.monotonic()
                try:
                    event = json.loads(raw)
                except json.JSONDecodeError:
                    continue
                if isinstance(event, dict):
                    with self._cond:
                        self.events.append((now, event))
                        self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def mark(self) -> int:
        with self._cond:
            return len(self.events)

    def wait_until(
        self, found: Callable[[list[tuple[float, Event]]], Any], timeout: float, what: str
    ) -> Any:
        """The first truthy ``found(events)``; re-checked on every event and every 0.1 s."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (value := found(self.events)):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.proc.poll() is not None:
                    raise SystemExit(f"dropzone: no {what} within {timeout:g} s\n{self.tail()}")
                self._cond.wait(min(remaining, 0.1))
            return value

    def wait_event(
        self, name: str, *, since: int = 0, timeout: float = 60.0
    ) -> tuple[float, Event]:
        def found(events: list[tuple[float, Event]]) -> tuple[float, Event] | None:
            return next(((t, e) for t, e in events[since:] if e.get("event") == name), None)

        result: tuple[float, Event] = self.wait_until(found, timeout, name)
        return result

    def wait_count(self, name: str, count: int, *, timeout: float, **fields: Any) -> float:
        """Wait for ``count`` events ``name`` (with ``fields``); the arrival of the last one."""
        seen = [0, 0]  # events looked at, matches among them: each event is looked at once

        def found(events: list[tuple[float, Event]]) -> float | None:
            for t, e in events[seen[0] :]:
                seen[0] += 1
                if e.get("event") == name and all(e.get(k) == v for k, v in fields.items()):
                    seen[1] += 1
                    if seen[1] >= count:
                        return t
            return None

        result: float = self.wait_until(found, timeout, f"{count} x {name}")
        return result

    def wait_idle(self, quiet: float, *, timeout: float) -> float:
        """Wait for the first full scan (``scan.done``) and then ``quiet`` seconds without a
        work event; return the arrival time of the last of them (the moment it went idle)."""
        self.wait_event("scan.done", timeout=timeout)

        def found(events: list[tuple[float, Event]]) -> float | None:
            last = max(t for t, e in events if e.get("event") in WORK_EVENTS | {"scan.done"})
            return last if time.monotonic() - last >= quiet else None

        result: float = self.wait_until(found, timeout, "idle")
        return result

    def count(self, name: str, *, since: int = 0, **fields: Any) -> int:
        with self._cond:
            return sum(
                1
                for _, e in self.events[since:]
                if e.get("event") == name and all(e.get(k) == v for k, v in fields.items())
            )

    def names(self, since: int = 0) -> Counter[str]:
        with self._cond:
            return Counter(str(e.get("event")) for _, e in self.events[since:])

    def peak_rss(self) -> int:
        return vm_hwm(self.pid) or 0

    def tail(self, n: int = 20) -> str:
        with self._cond:
            lines = [json.dumps(e) for _, e in self.events[-n:]]
        if not self._stderr.closed:
            self._stderr.flush()
        err = Path(self._stderr.name).read_text(errors="replace")[-2000:]
        return "\n".join(lines) + ("\n--- stderr ---\n" + err if err.strip() else "")

    def stop_cleanly(self) -> None:
        """Stop it; a daemon that does not exit 0 ends the benchmark with its last lines."""
        code = self.stop()
        if code != 0:
            raise SystemExit(f"dropzone exited {code}\n{self.tail()}")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; the exit status (a stop must be clean: 0)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._reader.join(timeout=10)
        self._stderr.close()
        return code


# The emulator in its own process, driven over stdin: "reset" clears its counters, "requests"
# prints one JSON line with the requests seen since (method and path class -> count).
# Unless run "as is", a cost of the emulator that Ollama does not have is taken away, so that
# the figures are dropzone's: ``existing_name`` looks names up in an index kept up to date by
# ``write_manifest``/``delete_model`` instead of globbing every manifest on each create and show
# (O(models) per request: at 2,000 models it was 80 % of the emulator's CPU). Same answers; the
# benchmarks use neither copy nor rename. (The tests keep the glob: they may edit the store's
# folders directly.) TCP_NODELAY, once also set here, is the emulator's own default now.
EMULATOR = """
import json, re, sys
from collections import Counter
from pathlib import Path
from dropzone.testing.ollama import Emulator
from dropzone.testing.emulator.store import Store
store, port, validate = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
if sys.argv[4] == "1":
    scan_names, write_manifest, delete_model = Store.names, Store.write_manifest, Store.delete_model
    def index(self):
        if "_bench_index" not in self.__dict__:
            self._bench_index = {n.key(): n for n in scan_names(self)}
        return self._bench_index
    def existing_name(self, name):
        return index(self).get(name.key(), name)
    def indexed_write(self, name, *args, **kwargs):
        raw = write_manifest(self, name, *args, **kwargs)
        index(self).setdefault(name.key(), name)
        return raw
    def indexed_delete(self, model):
        delete_model(self, model)
        self.__dict__.pop("_bench_index", None)
    Store.existing_name, Store.write_manifest = existing_name, indexed_write
    Store.delete_model = indexed_delete
emulator = Emulator(Path(store), port=port, validate_gguf=validate).start()
print(emulator.port, flush=True)
for line in sys.stdin:
    command = line.strip()
    if command == "reset":
        emulator.counters.reset()
        print("{}", flush=True)
    elif command == "requests":
        kinds = Counter()
        for r in emulator.counters.requests:
            path = re.sub(r"sha256[:-][0-9a-f]{64}", "<digest>", r.path)
            kinds[f"{r.method} {path} {r.status}"] += 1
        print(json.dumps(kinds), flush=True)
    elif command == "models":
        print(json.dumps(emulator.models()), flush=True)
emulator.stop()
"""


class EmulatorProcess:
    """The Ollama emulator as a child process (its own GIL), with its counters on request."""

    # Set from the command line (--emulator-as-is) before any emulator starts.
    lighter = True

    def __init__(self, store: Path, *, validate_gguf: bool = True) -> None:
        port = free_port()
        flags = ["1" if validate_gguf else "0", "1" if self.lighter else "0"]
        self.proc = subprocess.Popen(
            [python(), "-c", EMULATOR, str(store), str(port), *flags],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        wait_listening(port, self.proc)  # type: ignore[arg-type]  # text-mode Popen
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        self.url = f"http://127.0.0.1:{self.port}"
        self.pid = self.proc.pid

    def _ask(self, command: str) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def reset(self) -> None:
        self._ask("reset")

    def requests(self) -> Counter[str]:
        return Counter(self._ask("requests"))

    def models(self) -> list[str]:
        return list(self._ask("models"))

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def span(values: Sequence[float], scale: float = 1.0, digits: int = 3) -> str:
    """``median (min-max)``."""
    s = Summary.of(values)
    return f"{s.median * scale:.{digits}f} ({s.low * scale:.{digits}f}-{s.high * scale:.{digits}f})"


# --- end to end -------------------------------------------------------------------------------

SIDECAR = """\
model = "{model}"
system = "You are a benchmark."

[parameters]
temperature = 0.2
num_ctx = 4096
"""


def create_request(model: str, digest: str) -> dict[str, Any]:
    """What dropzone sends for the sidecar above (``Recipe.request``), for the baseline."""
    return {
        "model": model,
        "files": {"model.gguf": digest},
        "system": "You are a benchmark.",
        "parameters": {"temperature": 0.2, "num_ctx": 4096},
    }


class Case:
    """Fresh emulator store, drop and state folders for one run; removed afterwards."""

    def __init__(self, work: Path, run: int, validate_gguf: bool) -> None:
        self.root = work / f"run{run}"
        self.drop, self.state = self.root / "drop", self.root / "state"
        self.drop.mkdir(parents=True)
        self.emulator = EmulatorProcess(self.root / "ollama", validate_gguf=validate_gguf)
        self.model = f"bench-e2e-{run}:latest"

    def close(self) -> None:
        self.emulator.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def at(events: list[tuple[float, Event]], name: str) -> float:
    return next(t for t, e in events if e.get("event") == name)


def dropzone_case(
    case: Case, src: Path, want: str, rate: float, settle: float
) -> tuple[float, dict[str, float]]:
    daemon = DaemonRun(
        case.root,
        drop=case.drop,
        state=case.state,
        hosts=[case.emulator.url],
        settings={"settle_seconds": str(settle), "rescan_interval": "0"},
    )
    try:
        daemon.wait_event("scan.done", timeout=60)
        (case.drop / "model.toml").write_text(SIDECAR.format(model=case.model))
        copy = Copy(src, case.drop / "model.gguf", rate)
        closed, _, _ = copy.closed()
        created = daemon.wait_count("model.created", 1, timeout=600)
        events = list(daemon.events)
        done = next(e for _, e in events if e.get("event") == "hash.done")
        if done["digest"] != want or done.get("restarts"):
            raise SystemExit(f"dropzone hashed {done}, want {want}")
        if not done.get("followed"):
            print("  (the file was not followed: hashed after its close)")
        uploaded = next(e for _, e in events if e.get("event") == "blob.uploaded")
        if not uploaded.get("early"):
            print("  (the upload waited for readiness: not early)")
        # With an early upload the upload runs during the settle wait, so ``artifact.ready``
        # may come after ``blob.uploaded``: each phase is timed from its own start.
        ready, hashed = at(events, "artifact.ready"), at(events, "hash.done")
        blob = at(events, "blob.uploaded")
        phases = {
            "hash finish (close -> hash.done)": hashed - closed,
            "upload (hash.done -> blob.uploaded)": blob - hashed,
            "ready (close -> artifact.ready)": ready - closed,
            "create (later of both -> model.created)": created - max(ready, blob),
        }
        return created - closed, phases
    finally:
        daemon.stop_cleanly()


def sequential_case(
    case: Case, src: Path, want: str, rate: float, settle: float
) -> tuple[float, dict[str, float]]:
    del settle  # a script that runs after the copy needs no quiet period
    dst = case.drop / "model.gguf"
    with make_http_client() as http:
        client = OllamaClient(case.emulator.url, http)
        client.version()  # connect before the clock starts, as the daemon greets its host
        copy = Copy(src, dst, rate)
        closed, _, _ = copy.closed()
        digest = sha256_file(dst)
        hashed = time.monotonic()
        client.push_blob(digest, dst)
        uploaded = time.monotonic()
        for _ in client.create(create_request(case.model, digest)):
            pass
        created = time.monotonic()
    if digest != want:
        raise SystemExit(f"sequential hashed {digest}, want {want}")
    phases = {
        "hash (sha256_file)": hashed - closed,
        "upload (push_blob)": uploaded - hashed,
        "create (create)": created - uploaded,
    }
    return created - closed, phases


def prepare_source(work: Path, size: int, rate_mb_s: float) -> tuple[Path, int, str, float, str]:
    """The GGUF to copy in, warm in the page cache: (path, its size, its digest, the copy rate
    in bytes/s (0: full speed), that rate as a label)."""
    # source + the copy in the drop folder + the uploaded blob + the server's validated copy
    check_space(work, 4 * size)
    src = work / "source.gguf"
    made = make_gguf_like(src, size)
    warm(src)
    rate = rate_mb_s * 1e6
    return src, made, sha256_file(src), rate, f"{rate_mb_s:g} MB/s" if rate else "full speed"


def add_source_argument(parser: argparse.ArgumentParser) -> None:
    """``--src`` (which daemon) and ``--emulator-as-is`` (see ``EMULATOR``)."""
    parser.add_argument(
        "--src",
        type=Path,
        default=ROOT,
        help="run the daemon from this checkout (a folder holding dropzone/); default: this one",
    )
    parser.add_argument(
        "--emulator-as-is",
        action="store_true",
        help="no name index in the emulator (default: an index, as Ollama has)",
    )


def use_source(args: argparse.Namespace) -> None:
    src: Path = args.src
    if not (src / "dropzone" / "__main__.py").exists():
        raise SystemExit(f"--src {src}: no dropzone/__main__.py there")
    DAEMON_SOURCE["dir"] = src.resolve()
    EmulatorProcess.lighter = not args.emulator_as_is
    emulator = "as is" if args.emulator_as_is else "with a name index"
    print(f"daemon source: {DAEMON_SOURCE['dir']}; emulator {emulator}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", type=parse_size, default=parse_size("2G"))
    parser.add_argument("--rate", type=float, default=200.0, help="copy rate, MB/s (0 = full)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each case")
    parser.add_argument("--settle", type=float, default=1.0, help="settle_seconds of the daemon")
    parser.add_argument(
        "--no-validate-gguf",
        action="store_true",
        help="emulate a pre-0.30 server (no GGUF validation copy at create)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="96 MiB (uploaded early) at 200 MB/s, 1 run each"
    )
    parser.add_argument("--dir", type=Path, default=None, help="scratch folder (default: tmp)")
    add_source_argument(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.runs = 96 * MiB, 1
    print_header(argv)
    use_source(args)
    quiet_logs()
    cases: dict[str, Callable[..., tuple[float, dict[str, float]]]] = {
        "dropzone": dropzone_case,
        "sequential": sequential_case,
    }
    totals: dict[str, list[float]] = {name: [] for name in cases}
    phases: dict[str, dict[str, list[float]]] = {name: {} for name in cases}
    with workdir(args.dir, "bench-e2e-") as work:
        src, size, want, rate, label = prepare_source(work, args.size, args.rate)
        print(f"\n== {fmt_size(args.size)} GGUF ({size:,} B) + TOML sidecar, copied at {label},"
              f" settle_seconds={args.settle:g}")  # fmt: skip
        run = 0
        for i in range(args.runs):
            for name in list(cases) if i % 2 == 0 else reversed(list(cases)):
                case = Case(work, run, validate_gguf=not args.no_validate_gguf)
                run += 1
                try:
                    total, parts = cases[name](case, src, want, rate, args.settle)
                finally:
                    case.close()
                totals[name].append(total)
                for part, seconds in parts.items():
                    phases[name].setdefault(part, []).append(seconds)
                detail = ", ".join(f"{k.split(' ')[0]} {v:.3f}" for k, v in parts.items())
                print(f"  run {i + 1}  {name:10s} close -> model {total:7.3f} s   ({detail})",
                      flush=True)  # fmt: skip
    print("\nclose -> model created, seconds: median (min-max)")
    for name, values in totals.items():
        print(f"  {name:34s} {span(values)}")
        for part, times in phases[name].items():
            print(f"    {part:32s} {span(times)}")
    dz, seq = statistics.median(totals["dropzone"]), statistics.median(totals["sequential"])
    print_ratio("dropzone / sequential, close -> model", dz / seq, BAR_RATIO, at_most=True)
    floor = statistics.median(
        [u + c for u, c in zip(phases["sequential"]["upload (push_blob)"],
                               phases["sequential"]["create (create)"], strict=True)]
    )  # fmt: skip
    print_ratio("floor (upload + create) / sequential", floor / seq)
    print_ratio("dropzone / floor", dz / floor)
    return 0


if __name__ == "__main__":
    sys.exit(main())

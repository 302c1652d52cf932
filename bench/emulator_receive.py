"""Emulator receive rate: ``curl`` uploads of one file to the emulator's blob endpoint vs the
plain reference receiver (bench/reference_receiver.py), alternated in one run.

Both servers run as separate processes on loopback; each run uploads a new blob (the previous
one is deleted first, so the emulator really reads the body). Reported: per-run seconds,
median and min-max per server, and the ratio of emulator to reference throughput (1.0 = as
fast; the bar is 0.9). The servers' own CPU seconds per upload are reported too: unlike wall
time they do not depend on what else the machine is doing.

    .venv/bin/python bench/emulator_receive.py [--size-mib 1024] [--runs 5] [--expect]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

from common import ROOT, MiB, cpu_seconds, free_port, machine, server, workdir, write_random

from dropzone.imports.hashing import sha256_file


def upload(payload: Path, url: str, expect: bool) -> float:
    command = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total}"]
    command += ["-X", "POST", "-T", str(payload)]
    if not expect:
        command += ["-H", "Expect:"]
    out = subprocess.run([*command, url], check=True, capture_output=True, text=True).stdout
    status, seconds = out.split()
    if status != "201":
        raise SystemExit(f"unexpected status {status} from {url}")
    return float(seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--expect", action="store_true", help="let curl send Expect: 100-continue")
    parser.add_argument("--dir", type=Path, default=None, help="scratch directory (default: tmp)")
    args = parser.parse_args()

    with workdir(args.dir, "bench-emulator-") as work:
        payload = work / "payload.bin"
        write_random(payload, args.size_mib * MiB)
        hex_digest = sha256_file(payload).removeprefix("sha256:")
        ref_port, emu_port = free_port(), free_port()
        ref_dir, store = work / "ref", work / "store"
        blob_name = "sha256-" + hex_digest
        targets = {
            "reference": (f"http://127.0.0.1:{ref_port}/upload", ref_dir / blob_name),
            "emulator": (
                f"http://127.0.0.1:{emu_port}/api/blobs/sha256:{hex_digest}",
                store / "blobs" / blob_name,
            ),
        }
        python = sys.executable
        reference = [python, str(ROOT / "bench/reference_receiver.py"), "--port", str(ref_port)]
        emulator = [python, "-m", "dropzone.testing.ollama", "--port", str(emu_port)]
        with (
            server([*reference, "--dir", str(ref_dir)], ref_port) as ref_proc,
            server([*emulator, "--store", str(store)], emu_port) as emu_proc,
        ):
            pids = {"reference": ref_proc.pid, "emulator": emu_proc.pid}
            return measure(args, payload, targets, pids)


def measure(
    args: argparse.Namespace,
    payload: Path,
    targets: dict[str, tuple[str, Path]],
    pids: dict[str, int],
) -> int:
    """Alternate the uploads to each target (URL, where its blob lands), print the figures."""
    times: dict[str, list[float]] = {name: [] for name in targets}
    cpu: dict[str, list[float]] = {name: [] for name in targets}
    for run in range(args.runs):
        order = list(targets) if run % 2 == 0 else list(reversed(targets))
        for name in order:
            url, blob = targets[name]
            blob.unlink(missing_ok=True)
            cpu_before = cpu_seconds(pids[name])
            seconds = upload(payload, url, args.expect)
            cpu[name].append(cpu_seconds(pids[name]) - cpu_before)
            times[name].append(seconds)
            rate = args.size_mib / seconds
            print(
                f"run {run + 1} {name:9s} {seconds:7.3f} s  {rate:7.1f} MiB/s"
                f"  server CPU {cpu[name][-1]:.2f} s",
                flush=True,
            )
            blob.unlink(missing_ok=True)
    print()
    print(f"machine: {machine()}")
    print(f"payload: {args.size_mib} MiB, {args.runs} runs each, alternated, "
          f"Expect: 100-continue {'on' if args.expect else 'off'}")  # fmt: skip
    medians = {}
    for name, values in times.items():
        medians[name] = statistics.median(values)
        rate = args.size_mib / medians[name]
        print(
            f"{name:9s} median {medians[name]:.3f} s ({rate:.1f} MiB/s)"
            f", min {min(values):.3f} s, max {max(values):.3f} s"
            f", server CPU median {statistics.median(cpu[name]):.2f} s"
        )
    ratio = medians["reference"] / medians["emulator"]
    best = min(times["reference"]) / min(times["emulator"])
    cpu_ratio = statistics.median(cpu["reference"]) / statistics.median(cpu["emulator"])
    print(f"ratio emulator/reference throughput: {ratio:.3f} (bar: >= 0.9)")
    print(f"  same ratio from the fastest runs: {best:.3f}; from server CPU: {cpu_ratio:.3f}")
    return 0 if ratio >= 0.9 else 1


if __name__ == "__main__":
    sys.exit(main())

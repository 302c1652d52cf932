"""Header read cost vs file size: dropzone's GGUF reader on sparse multi-gigabyte files.

Writes real GGUF headers with gguf-py (a tiny one, and a Llama-3-like one with a 128,256-token
vocabulary and 280,147 merges), then extends each file with ``truncate`` to 1 GiB and 8 GiB
(sparse: only the header occupies disk). For each file it reports the read time (median of
``--runs`` warm reads), the peak Python allocation during a read (tracemalloc) and the
process's max RSS, next to one read by gguf-py's ``GGUFReader`` (in a child process) as the
reference.

    .venv/bin/python bench/header_read.py [--runs 7] [--sizes 1,8]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import gguf
from common import finish_f16_header

from dropzone.formats.gguf import read_header_file

GIB = 1 << 30
N_VOCAB, N_MERGES, N_LAYERS = 128_256, 280_147, 32


def build(path: Path, kind: str, size: int) -> None:
    """Write a header whose tensors end exactly at ``size``, then extend the file sparsely."""
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_file_type(1)
    if kind == "llama3":
        writer.add_tokenizer_model("gpt2")
        writer.add_token_list([f"tok{i}" for i in range(N_VOCAB)])
        writer.add_token_types([1] * N_VOCAB)
        writer.add_token_merges([f"t{i} k{i}" for i in range(N_MERGES)])
        writer.add_chat_template("{% for m in messages %}{{ m.content }}{% endfor %}" * 20)
        names = ["token_embd.weight", "output_norm.weight", "output.weight"] + [
            f"blk.{b}.{t}.weight"
            for b in range(N_LAYERS)
            for t in (
                "attn_q",
                "attn_k",
                "attn_v",
                "attn_output",
                "attn_norm",
                "ffn_gate",
                "ffn_up",
                "ffn_down",
                "ffn_norm",
            )
        ]
    else:
        names = ["a.weight", "b.weight", "c.weight"]
    # Equal F16 tensors, each a whole number of 32-byte aligned blocks, close to ``size``.
    per = (size - (64 << 20)) // len(names) // 64 * 64
    expected = finish_f16_header(writer, path, names, per)
    subprocess.run(["truncate", "-s", str(expected), str(path)], check=True)


def measure(path: Path, runs: int) -> dict[str, float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        header = read_header_file(path)
        times.append(time.perf_counter() - t0)
    assert header.expected_length == path.stat().st_size
    tracemalloc.start()
    read_header_file(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # The reference maps every metadata array: run it in a child so our RSS stays ours.
    cmd = [sys.executable, __file__, "--reference", str(path)]
    ref_time = float(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    return {
        "ms": statistics.median(times) * 1e3,
        "peak_kib": peak / 1024,
        "header_bytes": header.data_offset,
        "ref_ms": ref_time,
        "maxrss_mib": maxrss,  # before the reference read, which maps every array
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--sizes", default="1,8", help="file sizes in GiB")
    parser.add_argument(
        "--build", nargs=3, metavar=("PATH", "KIND", "SIZE"), help=argparse.SUPPRESS
    )
    parser.add_argument("--reference", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.reference:
        t0 = time.perf_counter()
        ref = gguf.GGUFReader(args.reference)
        elapsed = time.perf_counter() - t0
        assert len(ref.tensors) == len(read_header_file(args.reference).tensors)
        print(elapsed * 1e3)
        return 0
    if args.build:
        build(Path(args.build[0]), args.build[1], int(args.build[2]))
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="dropzone-bench-") as tmp:
        for kind in ("tiny", "llama3"):
            for gib in sizes:
                path = Path(tmp) / f"{kind}-{gib}g.gguf"
                # Built in a child process so that gguf-py's writer does not inflate our RSS.
                cmd = [sys.executable, __file__, "--build", str(path), kind, str(gib * GIB)]
                subprocess.run(cmd, check=True)
                on_disk = path.stat().st_blocks * 512
                r = measure(path, args.runs)
                rows.append((kind, gib, on_disk, r))
                path.unlink()
    print(
        "| header | file size | on disk | header size | read (median) | peak alloc "
        "| max RSS | gguf-py GGUFReader (1 read) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for kind, gib, on_disk, r in rows:
        print(
            f"| {kind} | {gib} GiB | {on_disk / 2**20:.1f} MiB | {r['header_bytes']:,.0f} B "
            f"| {r['ms']:.2f} ms | {r['peak_kib']:.0f} KiB | {r['maxrss_mib']:.0f} MiB "
            f"| {r['ref_ms']:.0f} ms |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

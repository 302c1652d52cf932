"""``python -m dropzone.testing.tiny PATH [--seed N]``: a tiny valid GGUF model to drop while
trying dropzone with the bundled emulator (the README's walkthrough).

It runs from a plain install: the emulator's own GGUF writer, not gguf-py and numpy (the test
extra, which the tests use to make files as the world makes them)."""

from __future__ import annotations

import argparse
import struct
import tempfile
from pathlib import Path

from dropzone.formats.gguf import TensorInfo, ValueType
from dropzone.testing.emulator.gguf_writer import TensorSource, encode_kv, write_gguf

_F32 = 0  # ggml type
_ELEMENTS = 64


def write_tiny(path: Path, *, seed: int = 0) -> Path:
    """A llama-architecture GGUF with one F32 tensor; ``seed`` changes its digest."""
    path.parent.mkdir(parents=True, exist_ok=True)
    kvs = [
        encode_kv("general.architecture", ValueType.STRING, "llama"),
        encode_kv("general.name", ValueType.STRING, path.stem),
        encode_kv("general.file_type", ValueType.UINT32, 0),
        encode_kv("llama.block_count", ValueType.UINT32, 1),
        encode_kv("llama.context_length", ValueType.UINT32, 128),
        encode_kv("llama.embedding_length", ValueType.UINT32, _ELEMENTS),
    ]
    data = struct.pack(f"<{_ELEMENTS}f", *(float(seed + i) / _ELEMENTS for i in range(_ELEMENTS)))
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "tensor"
        source.write_bytes(data)
        info = TensorInfo("token_embd.weight", (_ELEMENTS,), _F32, 0)
        with path.open("wb") as out:
            write_gguf(out, kvs, [TensorSource(info, source, 0)])
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dropzone.testing.tiny",
        description="Write a tiny valid GGUF model (for trying dropzone with the emulator).",
    )
    parser.add_argument("path", type=Path)
    parser.add_argument("--seed", type=int, default=0, help="another seed, another digest")
    args = parser.parse_args(argv)
    print(write_tiny(args.path, seed=args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

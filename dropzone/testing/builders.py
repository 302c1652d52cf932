"""Builders for small, real test artifacts: GGUF files and safetensors folders.

Files are written with the reference libraries (``gguf``'s writer, ``safetensors``)
so that dropzone's own header readers are checked against an independent writer.
Broken variants are made by damaging a valid file afterwards.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gguf
import numpy as np
from safetensors.numpy import save_file

# GGUF general.file_type values (llama.cpp's LlamaFileType).
FILE_TYPE_F32 = 0
FILE_TYPE_F16 = 1
FILE_TYPE_Q8_0 = 7
FILE_TYPE_Q4_K_M = 15
FILE_TYPE_BF16 = 32


def build_gguf(
    path: Path,
    *,
    arch: str = "llama",
    general_type: str | None = None,
    file_type: int | None = FILE_TYPE_F16,
    n_tensors: int = 3,
    tensor_elems: int = 64,
    split: tuple[int, int] | None = None,
    chat_template: str | None = None,
    extra: Mapping[str, Any] | None = None,
    tensor_prefix: str = "blk.0",
    seed: int = 0,
) -> Path:
    """Write a small valid GGUF (v3) file and return its path.

    ``split`` is ``(split_no, split_count)`` with ``split_no`` 0-based, as llama.cpp writes it.
    ``seed`` varies tensor contents so two builds can differ in digest. ``file_type=None``
    writes no ``general.file_type`` (F16 tensors), as some converters do.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), arch)
    if general_type is not None:
        writer.add_type(general_type)
    if file_type is not None:
        writer.add_file_type(file_type)
    writer.add_name(path.stem)
    if split is not None:
        writer.add_uint16("split.no", split[0])
        writer.add_uint16("split.count", split[1])
        writer.add_int32("split.tensors.count", n_tensors * split[1])
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    for key, value in (extra or {}).items():
        _add_value(writer, key, value)
    rng = np.random.default_rng(seed)
    dtype = np.float32 if file_type == FILE_TYPE_F32 else np.float16
    for i in range(n_tensors):
        data = rng.standard_normal(tensor_elems).astype(dtype)
        writer.add_tensor(f"{tensor_prefix}.t{i}.weight", data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def build_padded_gguf(path: Path, **kwargs: Any) -> Path:
    """A GGUF whose last tensor's data is not a multiple of the alignment (32), so gguf-py
    pads after it, as it does after every tensor: the file is longer than the end of its last
    tensor's data. 63 F16 elements are 126 bytes, followed by 2 bytes of padding."""
    return build_gguf(path, **{"tensor_elems": 63, "file_type": FILE_TYPE_F16, **kwargs})


def tensor_data_end(path: Path) -> int:
    """Where the last tensor's data ends, by gguf-py's reader (independent of dropzone's)."""
    tensors = gguf.GGUFReader(str(path)).tensors
    return max((int(t.data_offset) + int(t.n_bytes) for t in tensors), default=0)


def _add_value(writer: gguf.GGUFWriter, key: str, value: Any) -> None:
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], gguf.GGUFValueType):
        writer.add_key_value(key, value[1], value[0])  # an explicit type: (GGUFValueType.INT32, 1)
    elif isinstance(value, bool):
        writer.add_bool(key, value)
    elif isinstance(value, int):
        writer.add_uint32(key, value) if value >= 0 else writer.add_int32(key, value)
    elif isinstance(value, float):
        writer.add_float32(key, value)
    elif isinstance(value, str):
        writer.add_string(key, value)
    else:
        writer.add_array(key, list(value))


def build_adapter_gguf(path: Path, *, arch: str = "llama", seed: int = 1) -> Path:
    """A LoRA adapter GGUF (``general.type = adapter``)."""
    return build_gguf(
        path, arch=arch, general_type="adapter", extra={"adapter.type": "lora"}, seed=seed
    )


def build_mmproj_gguf(path: Path, *, seed: int = 2, projector_type: str | None = None) -> Path:
    """A vision projector GGUF (``general.type = mmproj``, ``v.*`` tensors); without a
    ``projector_type`` a llava-style one, which the server gives the type "mlp"."""
    extra: dict[str, Any] = {"clip.has_vision_encoder": True}
    if projector_type is not None:
        extra["clip.projector_type"] = projector_type
    return build_gguf(
        path,
        arch="clip",
        general_type="mmproj",
        extra=extra,
        tensor_prefix="v.blk.0",
        seed=seed,
    )


def build_split_gguf(folder: Path, stem: str, count: int, **kwargs: Any) -> list[Path]:
    """``stem-00001-of-0000N.gguf`` … shards, each a valid GGUF with split metadata."""
    paths = []
    for no in range(count):
        name = f"{stem}-{no + 1:05d}-of-{count:05d}.gguf"
        # Each shard holds its own tensors: a merging server refuses duplicate tensor names.
        shard_kwargs = {"tensor_prefix": f"blk.{no}", **kwargs}
        paths.append(build_gguf(folder / name, split=(no, count), seed=no, **shard_kwargs))
    return paths


LLAMA_CONFIG: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 16,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "vocab_size": 32,
}


def build_safetensors_model(
    folder: Path,
    *,
    architecture: str | None = "LlamaForCausalLM",
    shards: int = 1,
    tokenizer: str | None = "tokenizer.json",
    with_config: bool = True,
    dtype: str = "float16",
    seed: int = 0,
) -> Path:
    """A Hugging Face style safetensors model folder.

    ``shards > 1`` writes ``model-0000K-of-0000N.safetensors`` and ``model.safetensors.index.json``.
    ``tokenizer`` is ``tokenizer.json``, ``tokenizer.model`` or None (no tokenizer).
    """
    folder.mkdir(parents=True, exist_ok=True)
    if with_config:
        config = dict(LLAMA_CONFIG)
        config["architectures"] = [architecture] if architecture else []
        (folder / "config.json").write_text(json.dumps(config, indent=2))
    if tokenizer == "tokenizer.json":
        (folder / "tokenizer.json").write_text(
            json.dumps(
                {"version": "1.0", "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}
            )
        )
    elif tokenizer == "tokenizer.model":
        (folder / "tokenizer.model").write_bytes(b"\x0a\x05\x0a\x01a\x15\x00\x00\x00\x00")
    (folder / "tokenizer_config.json").write_text(json.dumps({"add_bos_token": True}))
    rng = np.random.default_rng(seed)
    tensors = {
        f"model.layers.{i}.weight": rng.standard_normal((4, 4)).astype(dtype) for i in range(4)
    }
    if shards == 1:
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
        return folder
    names = sorted(tensors)
    weight_map: dict[str, str] = {}
    for k in range(shards):
        shard = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: tensors[n] for n in names[k::shards]}
        save_file(part, str(folder / shard), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, shard))
    index = {
        "metadata": {"total_size": sum(t.nbytes for t in tensors.values())},
        "weight_map": weight_map,
    }
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return folder


def build_safetensors_adapter(folder: Path, *, seed: int = 3) -> Path:
    """A PEFT LoRA adapter folder: ``adapter_config.json`` + ``adapter_model.safetensors``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(
        json.dumps(
            {
                "peft_type": "LORA",
                "r": 2,
                "lora_alpha": 4,
                "target_modules": ["q_proj"],
                "base_model_name_or_path": "llama",
            }
        )
    )
    rng = np.random.default_rng(seed)
    save_file(
        {
            "base_model.model.layers.0.q_proj.lora_A.weight": rng.standard_normal((2, 4)).astype(
                "float16"
            )
        },
        str(folder / "adapter_model.safetensors"),
    )
    return folder


# --- broken variants -------------------------------------------------------------------------


def truncate(path: Path, length: int) -> Path:
    """Cut a file to ``length`` bytes (negative: remove that many bytes from the end)."""
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.truncate(length if length >= 0 else size + length)
    return path


def corrupt_magic(path: Path) -> Path:
    """Overwrite the first four bytes (the GGUF magic)."""
    with path.open("r+b") as f:
        f.write(b"GGUX")
    return path


def corrupt_safetensors_header(path: Path) -> Path:
    """Replace the JSON header with bytes of the same length that are not JSON."""
    with path.open("r+b") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        f.write(b"{" + b"\xff" * (n - 1))
    return path


def write_random(path: Path, size: int, *, seed: int = 0) -> Path:
    """A file of random bytes (a ``garbage.gguf``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(seed).bytes(size))
    return path


def lfs_pointer(path: Path, size: int = 4_920_734_016) -> Path:
    """A git-LFS pointer file where weights should be."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:" + "a" * 64 + f"\nsize {size}\n"
    )
    return path


def tensor_file_names(paths: Sequence[Path]) -> list[str]:
    return [p.name for p in paths]


def cp_p_same_size_over(source: Path, target: Path) -> None:
    """Copy ``source`` over the existing ``target`` with the real ``cp -p``, as an operator
    restoring a same-size version does: the inode, size and mtime of ``target`` stay what they
    were (``source`` is given ``target``'s mtime first); only the content and ctime change."""
    old = target.stat()
    assert source.stat().st_size == old.st_size, "a same-size version"
    os.utime(source, ns=(old.st_atime_ns, old.st_mtime_ns))
    subprocess.run(["cp", "-p", str(source), str(target)], check=True)  # noqa: S603, S607
    after = target.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        old.st_ino,
        old.st_size,
        old.st_mtime_ns,
    )

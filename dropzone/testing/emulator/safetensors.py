"""Safetensors sources of ``/api/create``: model conversion and PEFT adapters
(ollama-api.md §4.4.3b, §4.4.4).

The conversion is a stand-in: it writes a deterministic GGUF whose metadata (architecture,
``general.file_type`` F16, parameter count, context and embedding length) is derived from
``config.json`` and the safetensors headers, and whose tensors are the source tensors copied
byte for byte under their Hugging Face names and dtypes. A GGUF header reader can load it;
llama.cpp could not.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

from dropzone.formats.gguf import TensorInfo
from dropzone.testing.emulator.gguf_view import decode_gguf, n_elements
from dropzone.testing.emulator.gguf_writer import (
    T_BOOL,
    T_FLOAT32,
    T_STRING,
    T_UINT32,
    T_UINT64,
    TensorSource,
    encode_kv,
)
from dropzone.testing.emulator.request import valid_path
from dropzone.testing.emulator.sources import (
    Context,
    CreateFailureError,
    WeightLayer,
    blob,
    write_temp_gguf,
)
from dropzone.testing.emulator.store import ADAPTER, MODEL

SUPPORTED_ARCHITECTURES = frozenset(
    "LlamaForCausalLM MllamaForConditionalGeneration Llama4ForConditionalGeneration "  # noqa: SIM905
    "Mistral3ForConditionalGeneration Ministral3ForCausalLM MixtralForCausalLM GemmaForCausalLM "
    "Gemma2ForCausalLM Gemma3ForCausalLM Gemma3ForConditionalGeneration Gemma3TextModel "
    "Gemma3nForConditionalGeneration Gemma4ForCausalLM Gemma4ForConditionalGeneration "
    "Phi3ForCausalLM Qwen2ForCausalLM Qwen2_5_VLForConditionalGeneration "
    "Qwen3VLForConditionalGeneration Qwen3VLMoeForConditionalGeneration Olmo3ForCausalLM BertModel "
    "NomicBertModel NomicBertMoEModel CohereForCausalLM GptOssForCausalLM DeepseekOCRForCausalLM "
    "DeepseekV3ForCausalLM Glm4MoeLiteForCausalLM LagunaForCausalLM GlmOcrForConditionalGeneration "
    "Lfm2ForCausalLM Lfm2MoeForCausalLM Lfm2VlForConditionalGeneration Qwen3NextForCausalLM "
    "Qwen3_5ForConditionalGeneration Qwen3_5MoeForConditionalGeneration NemotronH_Nano_VL_V2 "
    "NemotronH_Nano_Omni_Reasoning_V3 NemotronHForCausalLM".split()
)
ADAPTER_BASE_ARCHITECTURES = ("llama", "gemma2")
SAFETENSORS_DTYPES = {
    "F32": 0, "F16": 1, "BF16": 30, "F64": 28, "I8": 24, "I16": 25, "I32": 26, "I64": 27,
    "U8": 24, "BOOL": 24, "F8_E4M3": 24, "F8_E5M2": 24,
}  # fmt: skip


def read_safetensors(path: Path, key: str) -> list[TensorSource]:
    """Tensor infos of one safetensors file (GGUF dimension order), with absolute offsets."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CreateFailureError("unexpected EOF")
        (length,) = struct.unpack("<Q", head)
        if length > size - 8:
            raise CreateFailureError("unexpected EOF")
        try:
            meta = json.loads(f.read(length))
        except ValueError as exc:
            raise CreateFailureError(f"parse safetensors header of {key}: {exc}") from None
    if not isinstance(meta, dict):
        raise CreateFailureError(f"parse safetensors header of {key}: not an object")
    sources = []
    for name, info in sorted(meta.items()):
        if name == "__metadata__":
            continue
        try:
            ggml_type = SAFETENSORS_DTYPES[info["dtype"]]
            shape = tuple(int(d) for d in reversed(info["shape"]))
            begin, end = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise CreateFailureError(f"invalid tensor {name!r} in {key}") from None
        tensor = TensorInfo(name, shape, ggml_type, 0)
        if tensor.nbytes != end - begin:
            raise CreateFailureError(f"invalid tensor {name!r} in {key}")
        if 8 + length + end > size:
            raise CreateFailureError("unexpected EOF")
        sources.append(TensorSource(tensor, path, 8 + length + begin))
    return sources


def _root_safetensors(files: dict[str, str]) -> list[str]:
    return sorted(k for k in files if "/" not in k and k.endswith(".safetensors"))


def _tensors(ctx: Context, files: dict[str, str], status: int) -> list[TensorSource]:
    keys = _root_safetensors(files)
    if not keys:
        raise CreateFailureError("unknown tensor format", status)
    sources, seen = [], set()
    for key in keys:
        path = blob(ctx.store, files[key], status)
        if not path.exists():
            raise CreateFailureError(f"open {key}: no such file or directory", status)
        try:
            found = read_safetensors(path, key)
        except CreateFailureError as exc:
            raise CreateFailureError(exc.message, status) from None
        for src in found:
            if src.info.name in seen:
                message = f"duplicate tensor name '{src.info.name}' was found for this model"
                raise CreateFailureError(message, status)
            seen.add(src.info.name)
            sources.append(src)
    return sources


def _json_file(ctx: Context, files: dict[str, str], name: str, status: int) -> Any:
    digest = files.get(name)
    path = blob(ctx.store, digest, status) if digest else None
    if path is None or not path.exists():
        raise CreateFailureError(f"open {name}: no such file or directory", status)
    try:
        return json.loads(path.read_bytes())
    except ValueError as exc:
        raise CreateFailureError(f"parse {name}: {exc}", status) from None


def _chat_template(ctx: Context, files: dict[str, str]) -> str:
    """``tokenizer_config.json``'s ``chat_template`` as convert/tokenizer.go reads it: a
    string, or a list of named templates of which ``default`` is taken; absent is fine."""
    digest = files.get("tokenizer_config.json")
    if not digest or not blob(ctx.store, digest, 500).exists():
        return ""
    config = _json_file(ctx, files, "tokenizer_config.json", 500)
    value = config.get("chat_template") if isinstance(config, dict) else None
    if value is None or isinstance(value, str):
        return value or ""
    if isinstance(value, list) and all(isinstance(e, dict) for e in value):
        chosen = (e.get("template") for e in value if e.get("name") == "default")
        return str(next(chosen, "") or "")
    raise CreateFailureError(f"invalid chat_template: cannot unmarshal {type(value).__name__}")


def _fingerprint(files: dict[str, str]) -> str:
    text = "".join(f"{key}\0{files[key]}\n" for key in sorted(files))
    return hashlib.sha256(text.encode()).hexdigest()


def safetensors_model(ctx: Context, files: dict[str, str]) -> list[WeightLayer]:
    for key in sorted(files):
        blob(ctx.store, files[key], 500)  # a malformed digest fails before any output
    ctx.emit({"status": "converting model"})
    config = _json_file(ctx, files, "config.json", 500)
    architectures = config.get("architectures") if isinstance(config, dict) else None
    if not isinstance(architectures, list) or not architectures:
        raise CreateFailureError("unknown architecture")
    arch = str(architectures[0])
    if arch not in SUPPORTED_ARCHITECTURES:
        raise CreateFailureError(f'unsupported architecture "{arch}"')
    if not any(
        name in files and ctx.store.has_blob(files[name])
        for name in ("tokenizer.model", "tokenizer.json")
    ):
        raise CreateFailureError("unknown tokenizer format")
    sources = _tensors(ctx, files, 500)
    family = config.get("model_type")
    if not isinstance(family, str) or not family:
        family = arch.split("For", 1)[0].lower()
    kvs: list[bytes] = [
        encode_kv("general.architecture", T_STRING, family),
        encode_kv("general.file_type", T_UINT32, 1),
        encode_kv("general.parameter_count", T_UINT64, sum(n_elements(s.info) for s in sources)),
    ]
    for gguf_key, config_key in (
        ("block_count", "num_hidden_layers"),
        ("context_length", "max_position_embeddings"),
        ("embedding_length", "hidden_size"),
    ):
        value = config.get(config_key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            kvs.append(encode_kv(f"{family}.{gguf_key}", T_UINT32, value))
    chat_template = _chat_template(ctx, files)
    if chat_template and arch != "LagunaForCausalLM":  # convert_laguna.go drops it
        kvs.append(encode_kv("tokenizer.chat_template", T_STRING, chat_template))
    kvs.append(encode_kv("emulator.stand_in", T_STRING, "safetensors conversion"))
    kvs.append(encode_kv("emulator.source", T_STRING, _fingerprint(files)))
    temp = write_temp_gguf(ctx.store, "converted-", kvs, sources)
    layer = ctx.store.file_layer(temp, MODEL)
    header = decode_gguf(ctx.store.blob_path(layer.digest))
    return [WeightLayer(layer, header, from_files=True)]


def safetensors_adapter(
    ctx: Context, files: dict[str, str], base: list[WeightLayer]
) -> list[WeightLayer]:
    """A PEFT LoRA folder → a stand-in adapter GGUF; every error is a 400."""
    for key in sorted(files):
        blob(ctx.store, files[key], 400)
    ctx.emit({"status": "converting adapter"})
    for key in sorted(files):
        if not valid_path(key):
            raise CreateFailureError(f"file path must be relative: {key}", 400)
    model = next((w for w in base if w.header and w.layer.media_type == MODEL), None)
    if model is None or model.header is None:
        raise CreateFailureError("no base model was found", 400)
    arch = model.header.architecture
    if arch in ("", "unknown"):
        raise CreateFailureError("architecture not set for the base model", 400)
    if arch not in ADAPTER_BASE_ARCHITECTURES:
        raise CreateFailureError("unsupported architecture", 400)
    adapter_config = _json_file(ctx, files, "adapter_config.json", 400)
    sources = _tensors(ctx, files, 400)
    kvs = [
        encode_kv("general.architecture", T_STRING, arch),
        encode_kv("general.type", T_STRING, "adapter"),
        encode_kv("adapter.type", T_STRING, "lora"),
        encode_kv("emulator.stand_in", T_BOOL, True),
        encode_kv("emulator.source", T_STRING, _fingerprint(files)),
    ]
    alpha = adapter_config.get("lora_alpha") if isinstance(adapter_config, dict) else None
    if isinstance(alpha, int | float) and not isinstance(alpha, bool):
        kvs.append(encode_kv("adapter.lora.alpha", T_FLOAT32, float(alpha)))
    temp = write_temp_gguf(ctx.store, "converted-", kvs, sources)
    layer = ctx.store.file_layer(temp, ADAPTER)
    return [WeightLayer(layer, decode_gguf(ctx.store.blob_path(layer.digest)), from_files=True)]

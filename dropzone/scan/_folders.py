"""Classify safetensors folders: models (``config.json``) and LoRA adapters
(``adapter_config.json``), with the file set the Ollama CLI would send (ollama-api.md §7.5).

A folder is a candidate when ``*.safetensors`` files lie directly in it; a candidate one
level below another belongs to it (sentence-transformers' ``2_Dense/``). The pre-checks
are the server's conversion failures (§4.4.3b/§4.4.4) caught before any upload.
"""

from __future__ import annotations

import fnmatch

from dropzone.errors import Problem
from dropzone.formats.completeness import Expected, Fit, as_is, for_safetensors
from dropzone.formats.headers import CorruptHeaderError
from dropzone.formats.safetensors import SafetensorsHeader
from dropzone.recipes.types import ArtifactKind
from dropzone.scan._gguf_files import FOLDER_SIDECARS
from dropzone.scan._tree import REFETCH, Tree
from dropzone.scan.values import Draft, Entry

# LoadModelMetadata's converters (ollama-api.md §4.4.3b, v0.33).
SUPPORTED_ARCHITECTURES = frozenset(
    {
        "LlamaForCausalLM",
        "MllamaForConditionalGeneration",
        "Llama4ForConditionalGeneration",
        "Mistral3ForConditionalGeneration",
        "Ministral3ForCausalLM",
        "MixtralForCausalLM",
        "GemmaForCausalLM",
        "Gemma2ForCausalLM",
        "Gemma3ForCausalLM",
        "Gemma3ForConditionalGeneration",
        "Gemma3TextModel",
        "Gemma3nForConditionalGeneration",
        "Gemma4ForCausalLM",
        "Gemma4ForConditionalGeneration",
        "Phi3ForCausalLM",
        "Qwen2ForCausalLM",
        "Qwen2_5_VLForConditionalGeneration",
        "Qwen3VLForConditionalGeneration",
        "Qwen3VLMoeForConditionalGeneration",
        "Olmo3ForCausalLM",
        "BertModel",
        "NomicBertModel",
        "NomicBertMoEModel",
        "CohereForCausalLM",
        "GptOssForCausalLM",
        "DeepseekOCRForCausalLM",
        "DeepseekV3ForCausalLM",
        "Glm4MoeLiteForCausalLM",
        "LagunaForCausalLM",
        "GlmOcrForConditionalGeneration",
        "Lfm2ForCausalLM",
        "Lfm2MoeForCausalLM",
        "Lfm2VlForConditionalGeneration",
        "Qwen3NextForCausalLM",
        "Qwen3_5ForConditionalGeneration",
        "Qwen3_5MoeForConditionalGeneration",
        "NemotronH_Nano_VL_V2",
        "NemotronH_Nano_Omni_Reasoning_V3",
        "NemotronHForCausalLM",
    }
)
BESIDE_SIDECAR_SUFFIXES = (".Modelfile", ".toml", ".yaml", ".yml", ".json")
CONVERT = "convert it with llama.cpp's convert_hf_to_gguf.py and drop the .gguf instead"


def classify(tree: Tree, taken: set[str]) -> tuple[list[Draft], list[Problem]]:
    """Safetensors folder artifacts; ``taken`` are files already claimed as sidecars."""
    folders = sorted(
        {e.parent for e in tree.entries.values() if _is_weights(e)},
        key=lambda f: (f.count("/"), f),
    )
    chosen: set[str] = set()
    drafts: list[Draft] = []
    problems: list[Problem] = []
    for folder in folders:
        if folder == "":
            for e in tree.files(""):
                if _is_weights(e):
                    problems.append(
                        Problem(
                            str(tree.abs(e.path)),
                            "is a safetensors file directly in the drop folder",
                            "put each model's files in a folder of its own",
                        )
                    )
            continue
        parent = folder.rsplit("/", 1)[0] if "/" in folder else ""
        if parent in chosen:
            continue  # part of the folder above, one level down
        chosen.add(folder)
        drafts.append(_folder(tree, folder, taken))
    return drafts, problems


def _is_weights(e: Entry) -> bool:
    return not e.is_dir and e.name.endswith(".safetensors")


def _folder(tree: Tree, folder: str, taken: set[str]) -> Draft:
    root_files = {e.name: e for e in tree.files(folder) if e.path not in taken}
    subs = tree.subdirs(folder)
    sub_files = [e for s in subs for e in tree.files(s.path) if e.path not in taken]
    adapter = "adapter_config.json" in root_files
    parent, _, name = folder.rpartition("/")
    beside = f"{parent}/{name}" if parent else name
    draft = Draft(
        kind=ArtifactKind.SAFETENSORS_ADAPTER if adapter else ArtifactKind.SAFETENSORS,
        rel_path=folder,
        sidecar_candidates=tuple(f"{folder}/{n}" for n in FOLDER_SIDECARS)
        + tuple(beside + s for s in BESIDE_SIDECAR_SUFFIXES),
        side_dir=folder,
    )
    weights = _weights(root_files, sub_files, adapter)
    extras = _extras(root_files, sub_files)
    _add_index_shards(tree, draft, folder, root_files, weights)
    for e in sorted(weights, key=lambda e: e.path):
        _add_weights(tree, draft, folder, e)
    docs: dict[str, object] = {}
    for e in sorted(extras, key=lambda e: e.path):
        doc = _add_extra(tree, draft, folder, e)
        if doc is not None:
            docs[e.path[len(folder) + 1 :]] = doc
    if adapter:
        return draft
    if "config.json" not in root_files:
        tree.problem(
            draft,
            folder,
            "has no config.json",
            "copy config.json from the model's repository into the folder",
            soft=True,
        )
    elif "config.json" in docs:
        _check_config(tree, draft, f"{folder}/config.json", docs["config.json"])
    if "tokenizer.json" not in root_files and "tokenizer.model" not in root_files:
        tree.problem(
            draft,
            folder,
            "has no tokenizer (tokenizer.json or tokenizer.model)",
            "copy the tokenizer files from the model's repository",
            soft=True,
        )
    return draft


def _weights(root: dict[str, Entry], sub: list[Entry], adapter: bool) -> list[Entry]:
    """The CLI's first matching group (§7.5); adapters and odd names: every root file."""
    every = [e for n, e in root.items() if n.endswith(".safetensors")]
    if adapter:
        return every
    model = [e for n, e in root.items() if fnmatch.fnmatchcase(n, "model*.safetensors")]
    model += [e for e in sub if fnmatch.fnmatchcase(e.name, "model*.safetensors")]
    if model:
        return model
    consolidated = [
        e for n, e in root.items() if fnmatch.fnmatchcase(n, "consolidated*.safetensors")
    ]
    return consolidated or every


def _extras(root: dict[str, Entry], sub: list[Entry]) -> list[Entry]:
    """``*.json``, ``*/*.json``, ``chat_template.jinja``, ``tokenizer.model`` (root or one
    level down), never a dropzone sidecar."""
    picked = [
        e
        for n, e in root.items()
        if (n.endswith(".json") and n != "dropzone.json")
        or n in ("chat_template.jinja", "tokenizer.model")
    ]
    picked += [e for e in sub if e.name.endswith(".json") or e.name == "tokenizer.model"]
    return picked


def _add_index_shards(
    tree: Tree, draft: Draft, folder: str, root: dict[str, Entry], weights: list[Entry]
) -> None:
    """Shards an index names must all be there, and all be sent."""
    for name, e in sorted(root.items()):
        if not name.endswith(".safetensors.index.json") or e.unsafe_link:
            continue
        shards = tree.index(e)
        if not isinstance(shards, tuple):
            if isinstance(shards, CorruptHeaderError) and not isinstance(tree.json(e), Exception):
                # Valid JSON, bad content (a ".." shard path…); JSON faults are reported
                # when the index is added as a companion file.
                tree.problem(draft, e.path, f"is not a valid index: {shards}", REFETCH)
            continue
        for shard in shards:
            entry = tree.file(f"{folder}/{shard}")
            if entry is None:
                draft.missing.append(f"{folder}/{shard}")
            elif entry not in weights:
                weights.append(entry)


def _add_weights(tree: Tree, draft: Draft, folder: str, e: Entry) -> None:
    key = e.path[len(folder) + 1 :]
    if not tree.safe_to_read(draft, e):
        draft.add(tree.root, key, e, as_is(e.size))
        return
    header = tree.accept(
        draft,
        key,
        e,
        tree.safetensors(e),
        label="safetensors file",
        expect=_expected,
    )
    if header is not None and _expected(header).fit(e.size) is Fit.LONG:
        tree.problem(
            draft,
            e.path,
            f"is {e.size - header.expected_length} bytes longer than its header describes",
            REFETCH,
        )


def _expected(header: SafetensorsHeader) -> Expected:
    return for_safetensors(header.expected_length)


def _add_extra(tree: Tree, draft: Draft, folder: str, e: Entry) -> object | None:
    """Add a companion file; for JSON, its parsed content (None if unreadable)."""
    key = e.path[len(folder) + 1 :]
    if not tree.safe_to_read(draft, e):
        draft.add(tree.root, key, e, as_is(e.size))
        return None
    if not e.name.endswith(".json"):
        draft.add(tree.root, key, e, as_is(e.size))
        tree.lfs_problem(draft, e)
        return None
    # A JSON file that parses is complete as it is: its size is what it must reach.
    return tree.accept(
        draft, key, e, tree.json(e), label="JSON file", expect=lambda _: as_is(e.size)
    )


def _check_config(tree: Tree, draft: Draft, rel: str, config: object) -> None:
    archs = config.get("architectures") if isinstance(config, dict) else None
    if not isinstance(archs, list) or not archs or not isinstance(archs[0], str):
        tree.problem(
            draft,
            rel,
            "names no architecture (config.json 'architectures')",
            "use the config.json from the model's repository",
        )
        return
    draft.architecture = archs[0]
    if archs[0] not in SUPPORTED_ARCHITECTURES:
        tree.problem(
            draft,
            rel,
            f"has architecture {archs[0]!r}, which Ollama cannot convert from safetensors",
            CONVERT,
        )

"""Classify the GGUF files of a listing: single models, split-shard groups, adapters, and
vision projectors attached to the model(s) of their folder (design §4.1).

The checks here are the ones the server would fail on after a long upload (ollama-api.md
§4.4.3a): split metadata that disagrees with the shard file names, shards with missing
metadata, a ``split.count`` on a file not named like a shard, a split adapter.
"""

from __future__ import annotations

import re
from collections import defaultdict

from dropzone.formats.completeness import as_is, for_gguf
from dropzone.formats.gguf import GGUFHeader
from dropzone.recipes.types import ArtifactKind
from dropzone.scan._tree import Tree
from dropzone.scan.values import Draft, Entry

SHARD_RE = re.compile(r"^(?P<prefix>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
SIDECAR_SUFFIXES = (".Modelfile", ".toml", ".yaml", ".yml", ".json")
FOLDER_SIDECARS = ("Modelfile", "dropzone.toml", "dropzone.yaml", "dropzone.yml", "dropzone.json")
RESPLIT = "split the model again with llama-gguf-split (or merge it with --merge)"


def is_gguf_name(name: str) -> bool:
    return name.lower().endswith(".gguf")


def classify(tree: Tree) -> tuple[list[Draft], set[str]]:
    """GGUF artifacts of the whole tree, and the relative paths of projectors no model took."""
    drafts: list[Draft] = []
    orphans: set[str] = set()
    by_folder: defaultdict[str, list[Entry]] = defaultdict(list)
    for e in tree.entries.values():
        if not e.is_dir and is_gguf_name(e.name):
            by_folder[e.parent].append(e)
    for folder, files in sorted(by_folder.items()):
        folder_drafts, left = _classify_folder(tree, folder, sorted(files, key=lambda e: e.path))
        drafts += folder_drafts
        orphans |= left
    return drafts, orphans


def _header(tree: Tree, e: Entry) -> GGUFHeader | None:
    if e.unsafe_link:
        return None
    outcome = tree.gguf(e)
    return outcome if isinstance(outcome, GGUFHeader) else None


def _classify_folder(tree: Tree, folder: str, files: list[Entry]) -> tuple[list[Draft], set[str]]:
    models: list[Draft] = []
    adapters: list[Draft] = []
    projectors: list[Entry] = []
    shards: defaultdict[str, list[tuple[int, int, Entry]]] = defaultdict(list)
    for e in files:
        match = SHARD_RE.match(e.name)
        header = _header(tree, e)
        if match:
            shards[match["prefix"]].append((int(match["no"]), int(match["count"]), e))
        elif e.name.lower().startswith("mmproj") or (header is not None and header.is_projector):
            projectors.append(e)
        else:
            draft = _single(tree, e, header)
            (adapters if draft.kind is ArtifactKind.GGUF_ADAPTER else models).append(draft)
    for prefix, members in sorted(shards.items()):
        draft = _split_group(tree, folder, prefix, members)
        (adapters if draft.kind is ArtifactKind.GGUF_ADAPTER else models).append(draft)
    if not models:
        return adapters, {p.path for p in projectors}
    for draft in models:
        if len(projectors) == 1:
            _add(tree, draft, projectors[0])
        elif projectors:
            names = ", ".join(p.name for p in projectors)
            tree.problem(
                draft,
                draft.rel_path,
                f"has several vision projectors beside it ({names})",
                "keep one mmproj*.gguf per folder: give each model and its projector a folder",
            )
    if len(models) == 1 and folder and not any(_is_safetensors(e) for e in tree.files(folder)):
        # The folder holds one model: its Modelfile (as for ``ollama create`` run there) or
        # dropzone.* sidecar is that model's, like a safetensors folder's.
        inside = tuple(f"{folder}/{n}" for n in FOLDER_SIDECARS)
        models[0].sidecar_candidates += inside
    return models + adapters, set()


def _is_safetensors(e: Entry) -> bool:
    return e.name.endswith(".safetensors")


def _new_draft(kind: ArtifactKind, folder: str, rel_path: str, stem: str) -> Draft:
    base = f"{folder}/{stem}" if folder else stem
    return Draft(
        kind=kind,
        rel_path=rel_path,
        sidecar_candidates=tuple(base + s for s in SIDECAR_SUFFIXES),
        side_dir=folder or None,  # Ollama side files count in a model's own folder only
    )


def _add(tree: Tree, draft: Draft, e: Entry) -> GGUFHeader | None:
    """Add one GGUF file (its key is its base name) and check what its header says."""
    if not tree.safe_to_read(draft, e):
        draft.add(tree.root, e.name, e, as_is(e.size))
        return None
    header = tree.accept(
        draft,
        e.name,
        e,
        tree.gguf(e),
        label="GGUF file",
        expect=lambda h: for_gguf(h.expected_length),
    )
    if header is not None and header.byte_order == "big":
        tree.problem(
            draft,
            e.path,
            "is a big-endian GGUF, which llama.cpp on the server cannot load",
            "convert it with gguf-py's gguf_convert_endian.py to little-endian",
        )
    return header


def _single(tree: Tree, e: Entry, header: GGUFHeader | None) -> Draft:
    adapter = header is not None and header.is_adapter
    kind = ArtifactKind.GGUF_ADAPTER if adapter else ArtifactKind.GGUF
    draft = _new_draft(kind, e.parent, e.path, e.name[: -len(".gguf")])
    header = _add(tree, draft, e)
    if header is not None:
        draft.architecture = header.architecture
        draft.file_type = header.file_type_name
        if (header.split_count or 0) > 1:
            tree.problem(
                draft,
                e.path,
                f"says it is one of {header.split_count} split shards, but its name lacks the "
                "-0000K-of-0000N.gguf shard suffix the server requires",
                "keep llama-gguf-split's shard file names",
            )
    return draft


def _split_group(
    tree: Tree, folder: str, prefix: str, members: list[tuple[int, int, Entry]]
) -> Draft:
    count = max(c for _, c, _ in members)

    def shard_rel(k: int) -> str:
        name = f"{prefix}-{k:05d}-of-{count:05d}.gguf"
        return f"{folder}/{name}" if folder else name

    first = next((e for no, _, e in members if no == 1), None)
    first_header = _header(tree, first) if first else None
    adapter = first_header is not None and first_header.is_adapter
    kind = ArtifactKind.GGUF_ADAPTER if adapter else ArtifactKind.GGUF_SPLIT
    draft = _new_draft(kind, folder, shard_rel(1), prefix)
    if adapter:
        tree.problem(
            draft,
            draft.rel_path,
            "is a split adapter GGUF; the server takes one adapter file",
            "merge the shards with llama-gguf-split --merge",
        )
    if len({c for _, c, _ in members}) > 1:
        names = ", ".join(e.name for _, _, e in members)
        tree.problem(
            draft,
            draft.rel_path,
            f"shards disagree on the shard count ({names})",
            "remove the shards of the other split",
        )
    headers: dict[int, GGUFHeader | None] = {}
    for no, _, e in sorted(members, key=lambda m: m[0]):
        header = _add(tree, draft, e)
        if not 1 <= no <= count:
            tree.problem(draft, e.path, f"has shard number {no}, outside 1-{count}", RESPLIT)
            continue
        headers[no] = header
        if header is not None:
            _check_shard_metadata(tree, draft, e, header, no=no, count=count)
    draft.missing = [shard_rel(k) for k in range(1, count + 1) if k not in headers]
    if first_header is not None:
        draft.architecture = first_header.architecture
        draft.file_type = first_header.file_type_name
        declared = first_header.get_int("split.tensors.count")
        parsed = [h for h in headers.values() if h is not None]
        total = sum(len(h.tensors) for h in parsed)
        if declared is not None and len(parsed) == count and total != declared:
            tree.problem(
                draft,
                draft.rel_path,
                f"shards hold {total} tensors, but split.tensors.count says {declared}",
                RESPLIT,
            )
    return draft


def _check_shard_metadata(
    tree: Tree, draft: Draft, e: Entry, header: GGUFHeader, *, no: int, count: int
) -> None:
    if header.split_count is None or header.split_no is None:
        tree.problem(
            draft, e.path, "is named as a shard but lacks split.count/split.no metadata", RESPLIT
        )
    elif header.split_count != count:
        tree.problem(
            draft,
            e.path,
            f"says split.count = {header.split_count}, but its name says {count} shards",
            RESPLIT,
        )
    elif header.split_no != no - 1:  # split.no is 0-based, file names are 1-based
        tree.problem(
            draft,
            e.path,
            f"says split.no = {header.split_no}, but its name says shard {no} (split.no {no - 1})",
            RESPLIT,
        )

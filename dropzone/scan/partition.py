"""The drop folder in units: each top-level folder is one unit, the top-level files another.

Artifacts never span units (a GGUF, its shards, projector and sidecar share a folder; a
safetensors folder is one subtree), so a hint about one path needs a rescan of its unit only:
a copy into one folder of a 10,000-file drop folder costs a walk of that folder, not of all.
A sidecar beside a top-level folder (``D.toml`` next to ``D/``) belongs to both units.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

from dropzone.scan.scanner import Entry, list_tree

ROOT = ""  # the unit of the files directly in the drop folder
FOLDER_SIDECAR_SUFFIXES = (".modelfile", ".toml", ".yaml", ".yml", ".json")


def _beside_folder(name: str, folders: set[str]) -> str | None:
    """The top-level folder a top-level file is a sidecar of (``D.toml`` → ``D``), if any."""
    stem, dot, suffix = name.rpartition(".")
    if dot and f".{suffix.lower()}" in FOLDER_SIDECAR_SUFFIXES and stem in folders:
        return stem
    return None


def split_units(entries: Iterable[Entry]) -> dict[str, list[Entry]]:
    """Group a full listing by unit (entries keep their drop-folder-relative paths)."""
    entries = list(entries)
    folders = {e.path for e in entries if e.is_dir and "/" not in e.path}
    units: defaultdict[str, list[Entry]] = defaultdict(list)
    for e in entries:
        if "/" in e.path:
            units[e.path.split("/", 1)[0]].append(e)
        elif e.is_dir:
            units[e.path].append(e)
        else:
            units[ROOT].append(e)
            owner = _beside_folder(e.path, folders)
            if owner is not None:
                units[owner].append(e)
    return dict(units)


def list_units(
    drop_dir: Path,
    units: set[str],
    prune: Callable[[str], bool],
    unreadable: list[str] | None = None,
) -> dict[str, list[Entry]]:
    """List just ``units``: the top level once, then each folder unit's subtree."""
    top = list_tree(drop_dir, prune=lambda _rel: True, unreadable=unreadable)
    listing = split_units(top)
    found: dict[str, list[Entry]] = {}
    for unit in units:
        entries = listing.get(unit, [])
        is_folder = unit != ROOT and any(
            e.is_dir and not e.is_symlink and e.path == unit for e in entries
        )
        if is_folder and not prune(unit):
            entries = entries + list_tree(
                drop_dir, prune=prune, under=unit, unreadable=unreadable
            )
        found[unit] = sorted(entries, key=lambda e: e.path)
    return found


def units_of(drop_dir: Path, path: Path) -> set[str]:
    """The units a hint about ``path`` concerns."""
    try:
        rel = path.relative_to(drop_dir).as_posix()
    except ValueError:
        return set()
    if rel in ("", "."):
        return {ROOT}
    head, slash, _ = rel.partition("/")
    if slash:
        return {head}
    if os.path.isdir(path):
        return {rel}
    stem = rel.rpartition(".")[0]
    # A top-level file: its own unit, and the folder's it may be the sidecar of. A deleted
    # folder (no longer a dir) must still be looked at, so its name is always a candidate.
    return {ROOT, rel, stem} if stem else {ROOT, rel}

"""What the drop folder holds now: a listing (the edge) and its classification (pure).

``list_tree(root)`` walks the folder once with ``os.scandir``. ``scan(root, entries)`` turns
a listing into artifacts, each with its sidecar, its files (``files`` keys as the server
wants them), and its structural completeness: COMPLETE, INCOMPLETE (bytes present and
expected per file, shards missing) or INVALID (problems naming file, reason and fix).
``scan`` reads file headers only through ``open_file``; tests pass in-memory files.
"""

from __future__ import annotations

import os
import stat
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

import structlog

from dropzone.errors import Problem
from dropzone.fs.safeopen import open_verified
from dropzone.scan import _folders as scan_folders
from dropzone.scan import _gguf_files as scan_gguf
from dropzone.scan import _weightless as scan_recipes
from dropzone.scan._tree import HeaderCache, Opener, Tree
from dropzone.scan.ignore import DEFAULT_RULES, IgnoreRules
from dropzone.scan.values import (
    Draft,
    Entry,
    FileProgress,
    ScannedArtifact,
    ScanResult,
    Status,
)

__all__ = [
    "Entry",
    "FileProgress",
    "HeaderCache",
    "Opener",
    "ScanResult",
    "ScannedArtifact",
    "Status",
    "list_tree",
    "open_under",
    "scan",
]

log = structlog.get_logger(__name__)
SIDE_FILES = ("template", "system", "params")
# ``os.scandir``'s shape: tests pass a listing that fails midway, as NFS or FUSE can.
Scandir = Callable[[str], AbstractContextManager[Iterator[os.DirEntry[str]]]]


# --- the edge: listing and opening ----------------------------------------------------------


def list_tree(
    root: str | os.PathLike[str],
    *,
    prune: Callable[[str], bool] | None = None,
    under: str = "",
    scandir: Scandir | None = None,
    unreadable: list[str] | None = None,
) -> list[Entry]:
    """Every regular file and folder under ``root``, sorted by relative path.

    Symlinks are listed with what they point to (stat through the link) and are never
    descended; ``target``/``outside`` say whether they stay inside ``root``. Sockets, FIFOs
    and devices are listed with ``special`` set and are never opened (a FIFO would block):
    ``scan`` refuses those named like artifacts or sidecars. Folders for which
    ``prune(rel_path)`` is true are listed but not descended. Files that vanish during the
    walk are skipped; unreadable folders are skipped with a ``scan.unreadable`` event, also
    when the listing fails midway (EIO on NFS or FUSE): nothing of a half-listed folder, whose
    half could pass for an incomplete artifact.
    ``under`` lists only that folder's subtree (paths and symlink checks stay relative to
    ``root``), so a hint about one folder costs a walk of that folder alone. ``unreadable``
    receives the relative paths of the folders that could not be listed ("" for ``root``):
    what lies there is unknown, not removed.
    """
    real_root = os.path.realpath(root)
    out: list[Entry] = []
    start = os.path.join(os.fspath(root), under) if under else os.fspath(root)
    if under and os.path.realpath(start) != os.path.join(real_root, under):
        # A unit that is (or lies under) a symlink now: the listing of the top level reports
        # the link itself, and nothing behind it is walked.
        return out
    stack = [(under, start)]
    while stack:
        rel_dir, abs_dir = stack.pop()
        found: list[Entry] = []
        below: list[tuple[str, str]] = []
        try:
            with (scandir or os.scandir)(abs_dir) as it:
                for de in it:  # each step reads the folder and may fail too (issue 13)
                    rel = f"{rel_dir}/{de.name}" if rel_dir else de.name
                    try:
                        entry = _entry(de, rel, real_root)
                    except OSError:  # vanished between readdir and stat
                        continue
                    if entry is None:
                        continue
                    found.append(entry)
                    if entry.is_dir and not entry.is_symlink and not (prune and prune(rel)):
                        below.append((rel, de.path))
        except OSError as e:
            log.warning("scan.unreadable", path=abs_dir, error=str(e))
            if unreadable is not None:
                unreadable.append(rel_dir)
            continue
        out += found
        stack += below
    out.sort(key=lambda e: e.path)
    return out


def _entry(de: os.DirEntry[str], rel: str, real_root: str) -> Entry | None:
    if not de.is_symlink():
        return _from_stat(rel, de.stat(follow_symlinks=False))
    real = os.path.realpath(de.path)
    inside = real == real_root or real.startswith(real_root + os.sep)
    try:
        entry = _from_stat(rel, os.stat(de.path))
    except OSError:  # dangling, or a loop: listed so that the scanner can refuse it
        lst = de.stat(follow_symlinks=False)
        return Entry(rel, 0, lst.st_mtime_ns, lst.st_dev, lst.st_ino, False, is_symlink=True)
    if entry is None:
        return None
    target = Path(os.path.relpath(real, real_root)).as_posix() if inside else None
    return replace(entry, is_symlink=True, target=target, outside=not inside)


def _from_stat(rel: str, st: os.stat_result) -> Entry | None:
    is_dir = stat.S_ISDIR(st.st_mode)
    special = "" if is_dir or stat.S_ISREG(st.st_mode) else _special_kind(st.st_mode)
    size = 0 if is_dir or special else st.st_size
    return Entry(
        rel,
        size,
        st.st_mtime_ns,
        st.st_dev,
        st.st_ino,
        is_dir,
        ctime_ns=st.st_ctime_ns,
        special=special,
    )


def _special_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "device"


def open_under(root: str | os.PathLike[str]) -> Opener:
    """The default ``open_file``: open ``root/rel`` for reading through ``open_verified``:
    never a link out of ``root``, never anything but a regular file, never blocking."""
    base = Path(root)

    def open_file(rel: str) -> BinaryIO:
        return os.fdopen(open_verified(base, rel), "rb")

    return open_file


# --- the pure part: classification ----------------------------------------------------------


def scan(
    root: str | os.PathLike[str],
    entries: Iterable[Entry],
    *,
    open_file: Opener | None = None,
    rules: IgnoreRules = DEFAULT_RULES,
    cache: HeaderCache | None = None,
) -> ScanResult:
    """Classify a listing of ``root`` (from ``list_tree``) into artifacts.

    ``open_file(rel_path)`` is the only way file contents are read (default:
    ``open_under(root)``); ``cache`` memoises header reads across scans.
    """
    root = Path(root)
    tree = Tree(root, entries, open_file or open_under(root), rules, cache)
    gguf_drafts, orphans = scan_gguf.classify(tree)
    taken = {c for d in gguf_drafts for c in d.sidecar_candidates if tree.file(c)}
    folder_drafts, problems = scan_folders.classify(tree, taken)
    drafts = gguf_drafts + folder_drafts
    problems += _links_out(tree)
    problems += _specials(tree)
    sidecar_claims = Counter(c for d in drafts for c in d.sidecar_candidates if tree.file(c))
    artifacts = [_finish(tree, d, sidecar_claims) for d in drafts]
    claimed = {p.path for a in artifacts for p in a.progress}
    claimed |= {a.sidecar_rel for a in artifacts if a.sidecar_rel}
    claimed |= {c for d in drafts for c in d.sidecar_candidates}
    claimed |= {
        Path(p).relative_to(root).as_posix() for a in artifacts for p in a.side_files.values()
    }
    unclaimed = sorted(
        e.path for e in tree.entries.values() if not e.is_dir and e.path not in claimed
    )
    # What no weights claim may be a recipe of its own: a model made from a model (issue 12).
    recipes = [d.finish(tree.root, d.rel_path, {}) for d in scan_recipes.classify(tree, unclaimed)]
    artifacts += recipes
    unclaimed = [rel for rel in unclaimed if rel not in {r.rel_path for r in recipes}]
    return ScanResult(
        artifacts=tuple(sorted(artifacts, key=lambda a: a.rel_path)),
        problems=tuple(problems),
        ignored=tree.ignored,
        unclaimed=tuple(sorted(set(unclaimed) | orphans)),
    )


def _finish(tree: Tree, draft: Draft, claims: Counter[str]) -> ScannedArtifact:
    present = [c for c in draft.sidecar_candidates if tree.file(c)]
    sidecar: str | None = None
    if len(present) > 1:
        names = ", ".join(present)
        tree.problem(draft, draft.rel_path, f"has more than one sidecar ({names})", "keep one")
    elif present:
        sidecar = present[0]
        if claims[sidecar] > 1:
            tree.problem(
                draft,
                sidecar,
                "is the sidecar of more than one artifact",
                "rename it after the one artifact it is for",
            )
        elif (e := tree.file(sidecar)) and not tree.safe_to_read(draft, e):
            sidecar = None
    side: dict[str, str] = {}
    if draft.side_dir is not None:
        for name in SIDE_FILES:
            rel = f"{draft.side_dir}/{name}"
            if tree.file(rel):
                side[name] = rel
    return draft.finish(tree.root, sidecar, side)


# Names a special file must not have: what the scanner would read as weights or a recipe.
_READ_SUFFIXES = (".gguf", ".safetensors", ".json", ".toml", ".yaml", ".yml", ".modelfile")


def _specials(tree: Tree) -> list[Problem]:
    """FIFOs, sockets and devices named like artifacts or sidecars: one problem each (the
    daemon's ``artifact.invalid``), never an open."""
    return [
        Problem(
            str(tree.abs(e.path)),
            f"is a {e.special}, not a regular file: it is never read",
            "remove it, and copy the real file in under this name",
        )
        for e in tree.specials
        if e.name.lower().endswith(_READ_SUFFIXES) or e.name == "Modelfile"
    ]


def _links_out(tree: Tree) -> list[Problem]:
    """Symlinked folders leading out of the drop folder (files are refused per artifact)."""
    return [
        Problem(
            str(tree.abs(e.path)),
            "is a symlinked folder that leads out of the drop folder",
            "copy the folder into the drop folder instead of linking to it",
        )
        for e in tree.entries.values()
        if e.is_dir and e.is_symlink and e.outside
    ]

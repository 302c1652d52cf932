"""What the last looks found in the drop folder, unit by unit (see ``dropzone.scan.partition``): the
scan result and the listing of each, refreshed for the units a look is about."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import BinaryIO

from dropzone.errors import StoppedError
from dropzone.fs.identity import FileKey
from dropzone.imports.policies import owned_files
from dropzone.recipes.types import Recipe
from dropzone.scan.ignore import IgnoreRules
from dropzone.scan.partition import list_units, split_units
from dropzone.scan.scanner import (
    Entry,
    HeaderCache,
    ScannedArtifact,
    ScanResult,
    list_tree,
    open_under,
    scan,
)

HEADER_CACHE_ENTRIES = 200_000
# The header cache's bound in estimated bytes (``scan_tree.estimated_cost``), whatever the
# files: a GGUF with 131,072 long tensor names once held 155 MiB, each hard link as much again.
HEADER_CACHE_BYTES = 64 << 20

_NO_KEY = FileKey(0, 0, 0, 0, 0)
Files = list[tuple[str, int, int]]  # (rel, size, mtime_ns) of an artifact's files and sidecar


class FolderView:
    def __init__(
        self, drop_dir: Path, rules: IgnoreRules, *, stopping: Callable[[], bool] = lambda: False
    ) -> None:
        self.drop_dir = drop_dir
        self.rules = rules
        self._opener = open_under(drop_dir)
        self._stopping = stopping
        # Big enough for every file of a large drop folder: a rescan visits files in the same
        # order each time, so a smaller LRU evicts each header just before it is needed again.
        self.headers = HeaderCache(capacity=HEADER_CACHE_ENTRIES, max_bytes=HEADER_CACHE_BYTES)
        self._units: dict[str, ScanResult] = {}  # unit → what its last scan found
        self._stats: dict[str, dict[str, Entry]] = {}  # unit → its listing by rel path

    def refresh(self, *, full: bool, units: Iterable[str]) -> tuple[set[str], bool]:
        """List and scan the units a look is about (all of them when ``full``). Returns the
        units looked at, and whether an artifact known before is gone."""
        unreadable: list[str] = []
        if full:
            listing = split_units(
                list_tree(self.drop_dir, prune=self.rules.prune_dir, unreadable=unreadable)
            )
            affected = set(listing) | set(self._units)
        else:
            affected = set(units)
            listing = list_units(self.drop_dir, affected, self.rules.prune_dir, unreadable)
        vanished = False
        for unit in list(affected):
            if unreadable and _under_any(unit, unreadable):
                # Could not be listed (EIO on a share): what was there is unknown, not gone;
                # the last look at it stands, and nothing of it is judged now.
                affected.discard(unit)
                continue
            old = self._units.pop(unit, None)
            self._stats.pop(unit, None)
            entries = listing.get(unit, [])
            if entries:
                self._units[unit] = scan(
                    self.drop_dir,
                    entries,
                    open_file=self._open,
                    rules=self.rules,
                    cache=self.headers,
                )
                self._stats[unit] = {e.path: e for e in entries}
            if old is not None:
                kept = {sa.rel_path for sa in self._units[unit].artifacts} if entries else set()
                vanished |= any(sa.rel_path not in kept for sa in old.artifacts)
        return affected & set(self._units), vanished

    def _open(self, rel: str) -> BinaryIO:
        # Asked before every header read: a folder of 100,000 files takes many seconds to
        # read, and a stop must not wait for it (the look is abandoned, the daemon exits).
        if self._stopping():
            raise StoppedError("stop requested during a look at the drop folder")
        return self._opener(rel)

    def unit(self, unit: str) -> tuple[ScanResult, Mapping[str, Entry]]:
        return self._units[unit], self._stats[unit]

    def stats_of(self, rel: str) -> Mapping[str, Entry]:
        return self._stats.get(self.unit_of(rel), {})

    def live(self) -> set[str]:
        """Every path the last looks listed."""
        return {rel for stats in self._stats.values() for rel in stats}

    def present(self) -> set[str]:
        """The artifacts the last looks found, and the refused paths that are no artifact (a
        FIFO named x.gguf): those have a status note too, and are not removed while there."""
        present = {sa.rel_path for r in self._units.values() for sa in r.artifacts}
        return present | {self.rel(Path(p.path)) for r in self._units.values() for p in r.problems}

    def sharers(self, rel: str, recipe: Recipe) -> dict[Path, list[ScannedArtifact]]:
        """The other artifacts of the current scan that use a file of ``recipe`` (a projector
        beside two models, shards named by two sidecars); read on the main loop, where the
        scan results live."""
        mine = set(owned_files(recipe, dict.fromkeys(recipe.blob_paths(), _NO_KEY)))
        found: dict[Path, list[ScannedArtifact]] = {}
        for result in self._units.values():
            for other in result.artifacts:
                if other.rel_path == rel:
                    continue
                for f in other.artifact.files:
                    if f.path in mine:
                        found.setdefault(f.path, []).append(other)
        return found

    def rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.drop_dir).as_posix()
        except ValueError:
            return str(path)

    def unit_of(self, rel: str) -> str:
        head, slash, _ = rel.partition("/")
        return head if slash or head in self._stats else ""


def _under_any(rel: str, folders: list[str]) -> bool:
    """True when ``rel`` is one of ``folders``, lies under one, or holds one ("" is the root)."""
    return any(
        f in ("", rel) or rel.startswith(f + "/") or f.startswith(rel + "/") for f in folders
    )


def sidecar_stat(sa: ScannedArtifact, stats: Mapping[str, Entry]) -> Files:
    if sa.sidecar_rel is None or sa.sidecar_rel not in stats:
        return []
    entry = stats[sa.sidecar_rel]
    return [(sa.sidecar_rel, entry.size, entry.mtime_ns)]


def signature(files: Files, stats: Mapping[str, Entry]) -> tuple[object, ...]:
    """What the files looked like when last handled: with their ctime, which ``cp -p`` of a
    same-size version with its mtime set back cannot hide."""
    return tuple((*f, stats[f[0]].ctime_ns if f[0] in stats else 0) for f in files)


def identities(sa: ScannedArtifact, stats: Mapping[str, Entry]) -> frozenset[FileKey]:
    """The identities of the artifact's files and sidecar as the last listing saw them."""
    rels = [p.path for p in sa.progress] + ([sa.sidecar_rel] if sa.sidecar_rel else [])
    return frozenset(
        FileKey(e.dev, e.inode, e.size, e.mtime_ns, e.ctime_ns)
        for e in (stats.get(r) for r in rels)
        if e is not None
    )

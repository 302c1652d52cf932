"""The scanner's view of one listing: visible entries by folder, and header reads.

All reading goes through one injected ``open_file(rel_path) -> binary file`` callable, so
classification is tested with in-memory files and the daemon can memoise header reads in
a ``HeaderCache`` keyed by file identity and stat.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Callable, Hashable, Iterable
from pathlib import Path
from typing import BinaryIO, TypeAlias, TypeVar

from dropzone import gguf, safetensors
from dropzone.completeness import Expected, as_is
from dropzone.errors import Problem
from dropzone.filters import IgnoreRules
from dropzone.headers import (
    LFS_POINTER_MAX_SIZE,
    CorruptHeaderError,
    HeaderError,
    TruncatedHeaderError,
    is_lfs_pointer,
    load_json,
)
from dropzone.scan_values import Draft, Entry

Opener = Callable[[str], BinaryIO]
T = TypeVar("T")
Outcome: TypeAlias = T | HeaderError | OSError  # what a read gives: the value, or why there is none
MAX_JSON_BYTES = 16 << 20

REFETCH = "copy the file again (from a download: download it again)"
LFS_FIX = "fetch the real file (git lfs pull, or huggingface-cli download) and copy that"


class HeaderCache:
    """Memo of header reads: one entry per (reader, path), valid while the file's (dev,
    inode, size, mtime_ns) is unchanged, so a growing file replaces its entry instead of
    piling up versions. Least recently used paths beyond ``capacity`` are dropped. Read
    errors other than HeaderError are never cached. Not thread-safe: one scanner owns it."""

    def __init__(self, capacity: int = 4096) -> None:
        self._items: OrderedDict[Hashable, tuple[Hashable, object]] = OrderedDict()
        self.capacity = capacity

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable, version: Hashable) -> object | None:
        item = self._items.get(key)
        if item is None or item[0] != version:
            return None
        self._items.move_to_end(key)
        return item[1]

    def put(self, key: Hashable, version: Hashable, value: object) -> None:
        self._items[key] = (version, value)
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)


class Tree:
    def __init__(
        self,
        root: Path,
        entries: Iterable[Entry],
        open_file: Opener,
        rules: IgnoreRules,
        cache: HeaderCache | None,
    ) -> None:
        self.root = root
        self._open = open_file
        # Without a cache from the caller, still read each header once per scan.
        self._cache = cache if cache is not None else HeaderCache()
        listed = list(entries)
        # Never opened, never part of an artifact: only reported (``scanner._specials``).
        self.specials = tuple(e for e in listed if e.special)
        all_entries = [e for e in listed if not e.special]
        paths = {e.path for e in all_entries}
        self.ignored = tuple(sorted(e.path for e in all_entries if rules.is_ignored(e.path, paths)))
        hidden = set(self.ignored)
        self.entries = {e.path: e for e in all_entries if e.path not in hidden}
        self.children: defaultdict[str, list[Entry]] = defaultdict(list)
        for e in sorted(self.entries.values(), key=lambda e: e.path):
            self.children[e.parent].append(e)

    def files(self, folder: str) -> list[Entry]:
        return [e for e in self.children.get(folder, []) if not e.is_dir]

    def subdirs(self, folder: str) -> list[Entry]:
        return [e for e in self.children.get(folder, []) if e.is_dir and not e.is_symlink]

    def file(self, rel: str) -> Entry | None:
        e = self.entries.get(rel)
        return e if e is not None and not e.is_dir else None

    def abs(self, rel: str) -> Path:
        return self.root / rel

    # --- reading ---------------------------------------------------------------------------

    def _read(self, reader: Callable[[BinaryIO], T], tag: str, e: Entry) -> Outcome[T]:
        key, version = (tag, e.path), (e.dev, e.inode, e.size, e.mtime_ns, e.ctime_ns)
        if (hit := self._cache.get(key, version)) is not None:
            return hit  # type: ignore[return-value]  # stored by this method, same tag
        try:
            with self._open(e.path) as f:
                result: T | HeaderError = reader(f)
        except HeaderError as err:
            result = err
        except OSError as err:  # vanished or unreadable: worth another look, never cached
            return err
        self._cache.put(key, version, result)
        return result

    def read_with(self, reader: Callable[[BinaryIO], T], tag: str, e: Entry) -> Outcome[T]:
        """``reader`` over the file's content, memoised under ``tag`` like the header reads."""
        return self._read(reader, tag, e)

    def gguf(self, e: Entry) -> Outcome[gguf.GGUFHeader]:
        return self._read(gguf.read_header, "gguf", e)

    def safetensors(self, e: Entry) -> Outcome[safetensors.SafetensorsHeader]:
        return self._read(safetensors.read_header, "safetensors", e)

    def index(self, e: Entry) -> Outcome[tuple[str, ...]]:
        return self._read(safetensors.read_index, "index", e)

    def json(self, e: Entry) -> Outcome[object]:
        def read(f: BinaryIO) -> object:
            data = f.read(MAX_JSON_BYTES + 1)
            if len(data) > MAX_JSON_BYTES:
                raise CorruptHeaderError(
                    0, f"a JSON file of at most {MAX_JSON_BYTES} bytes", "more"
                )
            return load_json(data, "a JSON document")

        return self._read(read, "json", e)

    def head(self, e: Entry, n: int = 64) -> bytes:
        try:
            with self._open(e.path) as f:
                return f.read(n)
        except OSError:
            return b""

    # --- checks shared by the classifiers ---------------------------------------------------

    def problem(
        self, draft: Draft, rel: str, message: str, fix: str, *, soft: bool = False
    ) -> None:
        (draft.soft if soft else draft.hard).append(Problem(str(self.abs(rel)), message, fix))

    def safe_to_read(self, draft: Draft, e: Entry) -> bool:
        """Refuse symlinks out of the drop folder (or dangling) and unreadable files; True if
        the file may be opened. Adds the problem to ``draft`` otherwise."""
        if e.is_symlink and e.outside:
            self.problem(
                draft,
                e.path,
                "is a symlink that leads out of the drop folder",
                "copy the file into the drop folder instead of linking to it",
            )
            return False
        if e.unsafe_link:
            self.problem(draft, e.path, "is a dangling symlink", "remove it or fix its target")
            return False
        return True

    def lfs_problem(self, draft: Draft, e: Entry) -> bool:
        """True (and a problem added) if ``e`` is a git-LFS pointer instead of content."""
        if e.size > LFS_POINTER_MAX_SIZE or not is_lfs_pointer(self.head(e)):
            return False
        self.problem(draft, e.path, "is a git-LFS pointer file, not the real content", LFS_FIX)
        return True

    def accept(
        self,
        draft: Draft,
        key: str,
        e: Entry,
        outcome: Outcome[T],
        *,
        label: str,
        expect: Callable[[T], Expected],
    ) -> T | None:
        """Add ``e`` to ``draft`` according to how reading it went; the value if it was read.

        Cut short or vanished: added with an unknown expected length (still arriving).
        Corrupt, an LFS pointer or unreadable: added, with a problem. Read: added with the
        length the format says the complete file has, ``expect(value)``.
        """
        if isinstance(outcome, TruncatedHeaderError | FileNotFoundError):
            draft.add(self.root, key, e, None)
            return None
        if isinstance(outcome, OSError):
            draft.add(self.root, key, e, as_is(e.size))
            reason = outcome.strerror or str(outcome)
            self.problem(
                draft, e.path, f"cannot be read ({reason})", "make it readable by the dropzone user"
            )
            return None
        if isinstance(outcome, HeaderError):
            draft.add(self.root, key, e, as_is(e.size))
            if not self.lfs_problem(draft, e):
                self.problem(draft, e.path, f"is not a valid {label}: {outcome}", REFETCH)
            return None
        draft.add(self.root, key, e, expect(outcome))
        return outcome
